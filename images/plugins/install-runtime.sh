#!/bin/sh
# Install what plugins of the given kinds (python, js) need to run, from the
# distribution's own packages (Debian or Ubuntu), and only what is missing: a
# base that already has it (the Debian kong-sim variant) needs no network.
set -eu
packages=""
for kind in "$@"; do
  case "$kind" in
    python) python3 -c 'import msgpack, gevent' 2>/dev/null \
              || packages="$packages python3 python3-msgpack python3-gevent" ;;
    js) command -v node >/dev/null 2>&1 || packages="$packages nodejs" ;;
    *) echo "install-runtime.sh: unknown plugin kind '$kind' (python, js)" >&2; exit 2 ;;
  esac
done
[ -z "$packages" ] && exit 0
apt-get update -q
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages
rm -rf /var/lib/apt/lists/*
