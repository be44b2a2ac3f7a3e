#!/bin/sh
# Configures and builds meshlm into build/ (Release). Extra arguments go to cmake.
set -e
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build
