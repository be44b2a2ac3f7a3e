// What this machine offers a cluster: memory and cores, read the portable way per OS.
#pragma once

#include <cstdint>

namespace meshlm::sys {

uint64_t total_memory_bytes();
// Memory a new process can use without swapping (Linux MemAvailable; macOS free + inactive +
// purgeable pages). Falls back to total_memory_bytes() when the OS does not say.
uint64_t available_memory_bytes();
int cpu_cores();

}  // namespace meshlm::sys
