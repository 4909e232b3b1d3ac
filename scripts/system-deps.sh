#!/bin/sh
# Install the Debian packages that `make test` and `make demo` call as commands.
# Root with apt: installs what is missing and says so. Otherwise: names what to
# install and goes on (the tests that need a missing command skip with the reason).
# The list is the one place that says which commands the project runs; the test
# tests/unit/test_system_deps.py checks it against the commands the tests call.
set -eu
# command -> Debian package
NEEDED="nginx:nginx-light nft:nftables ip:iproute2 ss:iproute2 ps:procps sysctl:procps setpriv:util-linux docker-compose:docker-compose"
missing=""
for pair in $NEEDED; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ] && [ ! -x "/sbin/$cmd" ]; then
    case " $missing " in *" $pkg "*) ;; *) missing="$missing $pkg" ;; esac
  fi
done
# python3-venv: the Makefile makes a virtual environment
if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then missing="$missing python3-venv"; fi
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages the tests and the demo call:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "note: missing Debian packages:$missing (install them as root: apt-get install$missing);" \
       "tests that need them are skipped with the reason" >&2
fi
