#include "backend/backend.h"

#include "backend/host_backends.h"
#include "core/error.h"

namespace meshlm::backend {

namespace {
constexpr std::string_view kNames[] = {"cpu", "ref"};
}

std::span<const std::string_view> names() { return kNames; }

std::unique_ptr<Backend> create(std::string_view name, int threads) {
  if (threads < 1) throw Error("backend", "a backend needs at least one thread");
  if (name == "cpu") return make_cpu_backend(threads);
  if (name == "ref") return make_ref_backend();
  std::string choices;
  for (auto n : kNames) choices += (choices.empty() ? "" : ", ") + std::string(n);
  throw Error("backend", "unknown backend '" + std::string(name) + "' (choices: " + choices + ")");
}

}  // namespace meshlm::backend
