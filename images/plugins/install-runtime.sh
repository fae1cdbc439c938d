#!/bin/sh
# Install what plugins of the given kinds (python, js) need to run, from the
# distribution's own packages, and only what is missing: a base that already
# has it (the Debian kong-sim variant) needs no network. Kong's images come on
# Ubuntu and Debian (apt-get), RHEL and Amazon Linux (dnf, microdnf or yum);
# the package names are the same in each for what we install. An image with
# none of these managers stops here, saying so and what it lacks.
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

manager=""
for candidate in apt-get dnf microdnf yum; do
  if command -v "$candidate" >/dev/null 2>&1; then manager=$candidate; break; fi
done

# shellcheck disable=SC2086 # one word per package
case "$manager" in
  apt-get)
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $packages
    rm -rf /var/lib/apt/lists/* ;;
  dnf|microdnf|yum)
    quiet=-q
    [ "$manager" = microdnf ] && quiet=""  # microdnf has no -q
    "$manager" install -y $quiet $packages || {
      echo "install-runtime.sh: $manager could not install:$packages (on RHEL, python3-msgpack" \
           "and python3-gevent come from EPEL): use an image that has them, or the Ubuntu tag" >&2
      exit 3
    }
    "$manager" clean all >/dev/null ;;
  *)
    echo "install-runtime.sh: this image has no package manager we know (apt-get, dnf," \
         "microdnf, yum), and it lacks:$packages. Use a Kong image on Ubuntu, Debian, RHEL or" \
         "Amazon Linux, or one that already has them" >&2
    exit 3 ;;
esac
