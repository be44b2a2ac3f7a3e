// Constructors of the host backends (backend.cpp's create() picks one by name).
#pragma once

#include <memory>

#include "backend/backend.h"

namespace meshlm::backend {

std::unique_ptr<Backend> make_cpu_backend(int threads);
std::unique_ptr<Backend> make_ref_backend();

}  // namespace meshlm::backend
