// Host memory for the backends that compute on the CPU: zeroed heap buffers, and reserved
// buffers whose pages the OS commits only as they are written.
#pragma once

#include "backend/backend.h"

namespace meshlm::backend {

Buffer host_alloc(size_t n);
Buffer host_reserve(size_t n);

}  // namespace meshlm::backend
