// Host memory for the backends that compute on the CPU: zeroed heap buffers, and reserved
// buffers whose pages the OS commits only as they are written.
#pragma once

#include "backend/backend.h"

namespace meshlm::backend {

Buffer host_alloc(size_t n);
Buffer host_reserve(size_t n);
// Backend::will_write for host memory: MADV_POPULATE_WRITE over the pages [p, p + n floats)
// touches, where the OS has it; MESHLM_KV_POPULATE=0 in the environment turns it off.
void host_will_write(float* p, size_t n);

}  // namespace meshlm::backend
