#include "backend/host_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>

#include "core/error.h"

namespace meshlm::backend {

namespace {
constexpr size_t kAlign = 64;  // a cache line: SIMD loads of a buffer's start never straddle two

[[noreturn]] void out_of_memory(size_t n, const char* what) {
  throw Error("backend", std::string("cannot ") + what + " " + std::to_string((n * sizeof(float)) >> 20) +
                             " MiB of host memory");
}
}  // namespace

Buffer host_alloc(size_t n) {
  if (n == 0) return {};
  if (n > (SIZE_MAX - kAlign) / sizeof(float)) out_of_memory(n, "allocate");
  const size_t bytes = (n * sizeof(float) + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, bytes);
  if (p == nullptr) out_of_memory(n, "allocate");
  std::memset(p, 0, bytes);
  return Buffer(static_cast<float*>(p), n, [](float* d, size_t) { std::free(d); });
}

Buffer host_reserve(size_t n) {
  if (n == 0) return {};
  if (n > SIZE_MAX / sizeof(float)) out_of_memory(n, "reserve");
  // Anonymous private pages are zero and committed on first touch (Linux and macOS alike);
  // munmap returns them at once.
  void* p = ::mmap(nullptr, n * sizeof(float), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANON, -1, 0);
  if (p == MAP_FAILED) out_of_memory(n, "reserve");
  return Buffer(static_cast<float*>(p), n,
                [](float* d, size_t count) { ::munmap(d, count * sizeof(float)); });
}

void host_will_write(float* p, size_t n) {
#if defined(__linux__)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14; older kernels answer EINVAL and nothing happens
#endif
  static const bool enabled = [] {
    const char* v = std::getenv("MESHLM_KV_POPULATE");
    return v == nullptr || std::string(v) != "0";
  }();
  if (!enabled || n == 0) return;
  static const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p + n) + page - 1) / page * page;
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);  // a hint only
#else
  (void)p;
  (void)n;
#endif
}

}  // namespace meshlm::backend
