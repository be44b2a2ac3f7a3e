// Discovery for builds without an mDNS backend (no avahi-core, or -DMESHLM_WITH_DISCOVERY=OFF):
// nothing is advertised or found, and starting anything says why.
#include "core/error.h"
#include "discovery/discovery.h"

namespace meshlm::discovery {
namespace {

[[noreturn]] void unavailable() {
  throw Error("discovery", "this meshlm was built without LAN discovery (needs avahi-core)");
}

}  // namespace

bool discovery_available() {
  return false;
}

struct Advertiser::Impl {};
Advertiser::Advertiser() = default;
Advertiser::~Advertiser() = default;
void Advertiser::start(const std::string&, uint16_t, const TxtRecords&, const std::string&) {
  unavailable();
}
void Advertiser::stop() {}
std::string Advertiser::instance() const {
  return "";
}
bool Advertiser::established() const {
  return false;
}

struct Browser::Impl {};
Browser::Browser(BrowserCallback) {
  unavailable();
}
Browser::~Browser() = default;
std::vector<Service> Browser::snapshot() const {
  return {};
}

}  // namespace meshlm::discovery
