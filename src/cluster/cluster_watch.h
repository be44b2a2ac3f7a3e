// Keeps a serving coordinator's layout in step with the workers on the LAN (issue 6: "re-plans
// when a worker joins or leaves between requests").
//
// A thread watches `_meshlm._tcp` with a Browser and, about once a second, works out the workers
// this coordinator should use: the ones that speak its protocol version and accept its secret
// (probed once when they appear), in instance-name order, without the ones it saw fail. A worker
// counts as gone when it says goodbye on mDNS, or when the pipeline reports its stage down and a
// probe confirms it does not answer (a `kill -9` sends no goodbye and its records would linger
// for minutes); it counts again as soon as a probe succeeds. When that set has differed from the
// pipeline's for `settle` (a worker starting announces in bursts), the watch asks the
// ReplanningPipeline for a new layout built by `make(peers)`, which goes in at the next moment
// no request is running (an empty set means one stage on the coordinator).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "discovery/discovery.h"
#include "runtime/replanning_pipeline.h"

namespace meshlm::cluster {

using discovery::Browser;
using discovery::Service;

struct ClusterWatchOptions {
  std::string secret;
  std::chrono::milliseconds poll{1000};
  std::chrono::milliseconds settle{2000};
  int probe_timeout_ms = 3000;
};

// "host:port" of a service ("[v6]:port" for IPv6), as workers are addressed for connecting.
std::string service_address(const Service& svc);

// Workers worth using among `found`: right protocol version, one entry per worker id (a worker
// seen on two interfaces), sorted by instance name; addresses as "host:port" ("[v6]:port").
// `accepts(address)` decides the rest (the secret probe); it is not called for the others.
std::vector<std::string> usable_workers(const std::vector<Service>& found,
                                        const std::function<bool(const std::string&)>& accepts);

class ClusterWatch {
 public:
  using MakePipeline =
      std::function<std::unique_ptr<runtime::Pipeline>(const std::vector<std::string>& peers)>;

  // `current`: the workers `pipeline` uses now. Starts the thread; throws Error("discovery", ...)
  // when the mDNS stack cannot start.
  ClusterWatch(runtime::ReplanningPipeline& pipeline, std::vector<std::string> current,
               MakePipeline make, ClusterWatchOptions options);
  ~ClusterWatch();
  ClusterWatch(const ClusterWatch&) = delete;
  ClusterWatch& operator=(const ClusterWatch&) = delete;

  std::vector<std::string> peers() const;  // the layout asked for last

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::cluster
