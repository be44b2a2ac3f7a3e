#include "core/sysinfo.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__APPLE__)
#include <malloc/malloc.h>
#include <mach/mach.h>
#include <sys/sysctl.h>
#endif

namespace meshlm::sys {

uint64_t total_memory_bytes() {
#if defined(__APPLE__)
  uint64_t bytes = 0;
  size_t len = sizeof(bytes);
  if (sysctlbyname("hw.memsize", &bytes, &len, nullptr, 0) == 0) return bytes;
  return 0;
#else
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : 0;
#endif
}

uint64_t available_memory_bytes() {
#if defined(__APPLE__)
  vm_statistics64_data_t vm{};
  mach_msg_type_number_t count = HOST_VM_INFO64_COUNT;
  if (host_statistics64(mach_host_self(), HOST_VM_INFO64, reinterpret_cast<host_info64_t>(&vm),
                        &count) == KERN_SUCCESS) {
    uint64_t page = uint64_t(sysconf(_SC_PAGESIZE));
    return (uint64_t(vm.free_count) + vm.inactive_count + vm.purgeable_count) * page;
  }
#else
  if (FILE* f = std::fopen("/proc/meminfo", "r")) {
    char line[256];
    unsigned long long kb = 0;
    bool found = false;
    while (std::fgets(line, sizeof(line), f)) {
      if (std::sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
        found = true;
        break;
      }
    }
    std::fclose(f);
    if (found) return uint64_t(kb) * 1024;
  }
#endif
  return total_memory_bytes();
}

int cpu_cores() {
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#elif defined(__APPLE__)
  malloc_zone_pressure_relief(nullptr, 0);
#endif
}

void limit_allocator_arenas(int arenas) {
#if defined(__GLIBC__)
  if (arenas > 0 && std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, arenas);
#else
  (void)arenas;
#endif
}

}  // namespace meshlm::sys
