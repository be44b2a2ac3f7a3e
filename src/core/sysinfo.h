// What this machine offers a cluster: memory and cores, read the portable way per OS.
#pragma once

#include <cstdint>

namespace meshlm::sys {

uint64_t total_memory_bytes();
// Memory a new process can use without swapping (Linux MemAvailable; macOS free + inactive +
// purgeable pages). Falls back to total_memory_bytes() when the OS does not say.
uint64_t available_memory_bytes();
int cpu_cores();
// Hands memory the allocator holds but no longer uses back to the OS (glibc malloc_trim, macOS
// malloc_zone_pressure_relief). Called when a server goes idle so its resident size returns to
// where it started after a burst of requests.
void release_free_memory();
// Caps how many malloc arenas the threads of this process share (glibc M_ARENA_MAX; by default
// glibc allows 8 per core, each with its own fragmentation and top chunk that malloc_trim leaves
// resident). No-op on other C libraries, or when MALLOC_ARENA_MAX is set in the environment.
void limit_allocator_arenas(int arenas);

}  // namespace meshlm::sys
