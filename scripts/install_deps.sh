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
# The aarch64 step of scripts/test.sh (scripts/test_arm64.sh): only on x86-64 machines (native
# aarch64 runs the NEON code in the normal suite) and unless MESHLM_SKIP_ARM64=1.
#   g++-aarch64-linux-gnu  the cross compiler (cmake/toolchain-aarch64-linux-gnu.cmake)
#   qemu-user              runs the aarch64 test binaries (qemu-aarch64)
#   the :arm64 -dev packages: the libraries meshlm links, for arm64 (Debian multiarch; the
#     headers-only ones, nlohmann-json, CLI11 and xxhash (XXH_INLINE_ALL), come from the list
#     above). libhwy-dev (Highway, NEON target), libpcre2-dev, libspdlog-dev + libfmt-dev,
#     libssl-dev, libcpp-httplib-dev (its arm64 .pc and library), libgtest-dev, libgmock-dev
ARM64_PKGS=""
if [ "${MESHLM_SKIP_ARM64:-0}" != 1 ] &&
  [ "$(dpkg --print-architecture 2>/dev/null)" = amd64 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  ARM64_PKGS="g++-aarch64-linux-gnu qemu-user
    libhwy-dev:arm64 libpcre2-dev:arm64 libspdlog-dev:arm64 libfmt-dev:arm64 libssl-dev:arm64
    libcpp-httplib-dev:arm64 libgtest-dev:arm64 libgmock-dev:arm64"
fi
missing=""
for p in $PKGS $ARM64_PKGS; do
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
