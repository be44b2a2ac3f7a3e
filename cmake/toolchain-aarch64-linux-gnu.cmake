# Cross build for aarch64 Linux with Debian's cross compiler (g++-aarch64-linux-gnu) and the
# arm64 multiarch -dev packages (dpkg --add-architecture arm64; scripts/install_deps.sh installs
# them unless MESHLM_SKIP_ARM64=1). The test binaries run under qemu-user
# (CMAKE_CROSSCOMPILING_EMULATOR), so gtest_discover_tests and ctest work as in a native build.
# Used by scripts/test_arm64.sh:
#   cmake -S . -B build-arm64 -G Ninja \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64-linux-gnu.cmake ...
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(MESHLM_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${MESHLM_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${MESHLM_CROSS_TRIPLE}-g++)

# Debian's multiarch layout: the arm64 libraries live in /usr/lib/aarch64-linux-gnu and their
# arch-specific headers in /usr/include/aarch64-linux-gnu (both searched by the cross compiler
# itself); architecture-independent headers (nlohmann-json, CLI11, httplib) in /usr/include. The
# sysroot stays "/", so find_* must search the arm64 library directory, not the build machine's.
set(CMAKE_LIBRARY_ARCHITECTURE ${MESHLM_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH /usr/${MESHLM_CROSS_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
# CMake package configs (GTest, spdlog, fmt, nlohmann_json) of the arm64 packages first.
list(PREPEND CMAKE_PREFIX_PATH /usr/lib/${MESHLM_CROSS_TRIPLE}/cmake)

# pkg-config (libhwy, libpcre2-8): the arm64 .pc files only.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${MESHLM_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")

# Tests (and gtest_discover_tests) run the aarch64 binaries under qemu-user. -L /: the guest's
# dynamic loader and libraries are the arm64 multiarch ones in / (libc6:arm64, which the :arm64
# -dev packages pull in). Not -L /usr/aarch64-linux-gnu: that gives the cross toolchain's
# ld-linux-aarch64.so.1 (libc6-arm64-cross, a different Debian revision) while the loader still
# finds libc.so.6 in /lib/aarch64-linux-gnu through the ld.so cache; a loader and libc of
# different builds corrupt glibc's private state (pthread_create then loops forever).
# -cpu max: every extension qemu emulates (NEON is in every aarch64 CPU; max adds dotprod, SVE,
# ... so a run-time check for them sees them).
find_program(MESHLM_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(MESHLM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${MESHLM_QEMU_AARCH64} -L / -cpu max)
endif()
