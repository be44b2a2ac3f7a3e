#!/bin/sh
# Installs what meshlm needs to build and test on Debian 12 / Ubuntu 22.04+ (apt), and the npm
# packages the conformance tests compare against. macOS: see README ("Homebrew").
set -e
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
PKGS="build-essential cmake ninja-build pkg-config git ccache
  libhwy-dev nlohmann-json3-dev libcpp-httplib-dev libpcre2-dev libcli11-dev libspdlog-dev
  libxxhash-dev libssl-dev libgtest-dev libgmock-dev libbenchmark-dev
  libopenmpi-dev openmpi-bin libavahi-core-dev
  libavahi-compat-libdnssd-dev avahi-daemon dbus-daemon
  clang-14 libclang-rt-14-dev
  python3 python3-numpy python3-torch
  nodejs npm chromium iproute2"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# A node from elsewhere (nvm, the machine image) is fine: only install Debian's if there is none.
if command -v node >/dev/null 2>&1; then missing=$(echo "$missing" | sed 's/ nodejs//; s/ npm//'); fi
if [ -n "$missing" ]; then
  echo "installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
# Reference implementations and real tokenizer files for the conformance suites.
if [ ! -d tests/js/node_modules ] || [ tests/js/package-lock.json -nt tests/js/node_modules ]; then
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi
