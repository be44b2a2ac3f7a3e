// usable_workers(): which announced workers a coordinator re-plans with.
#include <gtest/gtest.h>

#include "cluster/cluster_watch.h"
#include "discovery/node_record.h"
#include "transport/frame.h"

namespace meshlm::cluster {

using discovery::NodeRecord;
using discovery::node_txt;
using discovery::Service;
namespace {

Service worker(std::string instance, std::string address, uint16_t port, std::string id,
               uint32_t proto = transport::kProtocolVersion) {
  NodeRecord rec;
  rec.id = std::move(id);
  rec.proto = proto;
  rec.mem = 1ull << 30;
  Service s;
  s.instance = std::move(instance);
  s.address = std::move(address);
  s.port = port;
  s.txt = node_txt(rec);
  return s;
}

TEST(UsableWorkers, FiltersDeduplicatesAndOrdersByInstance) {
  std::vector<Service> found = {
      worker("meshlm@c:7070", "10.0.0.3", 7070, "idc"),
      worker("meshlm@a:7070", "10.0.0.1", 7070, "ida"),
      worker("meshlm@a:7070 #2", "fe80::1%eth0", 7070, "ida"),  // same worker, other interface
      worker("meshlm@old:7070", "10.0.0.4", 7070, "idold", transport::kProtocolVersion - 1),
      worker("meshlm@b:7071", "fe80::2%eth0", 7071, "idb"),
      worker("meshlm@wrong-secret:7070", "10.0.0.5", 7070, "idw"),
      worker("meshlm@noport:7070", "10.0.0.6", 0, "idn"),
  };
  std::vector<std::string> asked;
  auto usable = usable_workers(found, [&](const std::string& addr) {
    asked.push_back(addr);
    return addr != "10.0.0.5:7070";
  });
  EXPECT_EQ(usable, (std::vector<std::string>{"10.0.0.1:7070", "[fe80::2%eth0]:7071",
                                              "10.0.0.3:7070"}));
  // Neither the old-protocol worker nor the second interface of a used one is probed.
  EXPECT_EQ(asked, (std::vector<std::string>{"10.0.0.1:7070", "[fe80::2%eth0]:7071",
                                             "10.0.0.3:7070", "10.0.0.5:7070"}));
}

TEST(UsableWorkers, RefusedFirstInterfaceLetsTheSecondTry) {
  std::vector<Service> found = {worker("w", "10.0.0.1", 7070, "x"),
                                worker("w #2", "10.0.1.1", 7070, "x")};
  auto usable = usable_workers(found, [](const std::string& a) { return a == "10.0.1.1:7070"; });
  EXPECT_EQ(usable, (std::vector<std::string>{"10.0.1.1:7070"}));
}

TEST(UsableWorkers, NothingAnnounced) {
  EXPECT_TRUE(usable_workers({}, [](const std::string&) { return true; }).empty());
}

}  // namespace
}  // namespace meshlm::cluster
