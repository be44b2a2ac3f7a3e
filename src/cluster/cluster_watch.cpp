#include "cluster/cluster_watch.h"

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "cluster/node_probe.h"
#include "core/error.h"
#include "core/log.h"
#include "discovery/node_record.h"
#include "transport/frame.h"

namespace meshlm::cluster {

using namespace transport;  // the layer below: connections, frames, messages

using discovery::parse_node_txt;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "(coordinator only)" : out;
}

constexpr int kDeadReprobeEvery = 5;  // polls between probes of a worker seen failing

}  // namespace

std::string service_address(const Service& svc) {
  const bool v6 = svc.address.find(':') != std::string::npos;
  return (v6 ? "[" + svc.address + "]" : svc.address) + ":" + std::to_string(svc.port);
}

std::vector<std::string> usable_workers(const std::vector<Service>& found,
                                        const std::function<bool(const std::string&)>& accepts) {
  std::vector<const Service*> sorted;
  for (const auto& s : found) sorted.push_back(&s);
  std::sort(sorted.begin(), sorted.end(),
            [](const Service* a, const Service* b) { return a->instance < b->instance; });
  std::vector<std::string> out;
  std::set<std::string> ids, addresses;
  for (const Service* svc : sorted) {
    auto rec = parse_node_txt(svc->txt);
    if (rec.proto != transport::kProtocolVersion) continue;
    if (svc->address.empty() || svc->port == 0) continue;
    std::string addr = service_address(*svc);
    if (!rec.id.empty() && ids.count(rec.id)) continue;  // the same worker on another interface
    if (addresses.count(addr)) continue;
    if (!accepts(addr)) continue;
    if (!rec.id.empty()) ids.insert(rec.id);
    addresses.insert(addr);
    out.push_back(addr);
  }
  return out;
}

struct ClusterWatch::Impl {
  runtime::ReplanningPipeline& pipeline;
  MakePipeline make;
  ClusterWatchOptions options;
  std::unique_ptr<Browser> browser;

  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::vector<std::string> current;

  // Owned by the thread.
  std::map<std::string, bool> probed;  // "address#id" -> accepted our secret
  std::set<std::string> dead;          // addresses confirmed not answering
  std::vector<std::string> candidate;
  std::chrono::steady_clock::time_point candidate_since;
  int polls = 0;
  std::thread thread;

  Impl(runtime::ReplanningPipeline& p, std::vector<std::string> cur, MakePipeline m,
       ClusterWatchOptions o)
      : pipeline(p), make(std::move(m)), options(std::move(o)), current(std::move(cur)) {
    browser = std::make_unique<Browser>();
    candidate = current;
    thread = std::thread([this] { run(); });
  }

  bool answers(const std::string& addr) {
    try {
      cluster::probe_node(addr, options.secret, options.probe_timeout_ms);
      return true;
    } catch (const std::exception& e) {
      log::debug("[cluster] probe of {}: {}", addr, e.what());
      return false;
    }
  }

  void poll_once() {
    ++polls;
    auto services = browser->snapshot();
    // Forget probe results of services no longer announced: a return is probed again.
    std::set<std::string> keys;
    std::map<std::string, std::string> id_of;
    for (const auto& s : services) {
      auto rec = parse_node_txt(s.txt);
      keys.insert(service_address(s) + "#" + rec.id);
      id_of[service_address(s)] = rec.id;
    }
    for (auto it = probed.begin(); it != probed.end();)
      it = keys.count(it->first) ? std::next(it) : probed.erase(it);

    std::vector<std::string> cur;
    {
      std::lock_guard lock(mutex);
      cur = current;
    }
    // A stage the pipeline reports down, that does not answer a probe either, is gone.
    for (const auto& st : pipeline.stages()) {
      if (st.state != "down" || dead.count(st.node)) continue;
      if (std::find(cur.begin(), cur.end(), st.node) == cur.end()) continue;
      if (!answers(st.node)) {
        log::warn("[cluster] worker {} is down and does not answer: re-planning without it",
                  st.node);
        dead.insert(st.node);
      }
    }
    if (polls % kDeadReprobeEvery == 0) {
      for (auto it = dead.begin(); it != dead.end();) {
        if (answers(*it)) {
          log::info("[cluster] worker {} answers again", *it);
          it = dead.erase(it);
        } else {
          ++it;
        }
      }
    }

    auto desired = usable_workers(services, [&](const std::string& addr) {
      if (dead.count(addr)) return false;
      std::string key = addr + "#" + id_of[addr];
      auto it = probed.find(key);
      if (it == probed.end()) {
        bool ok = false;
        try {
          auto info = cluster::probe_node(addr, options.secret, options.probe_timeout_ms);
          log::info("[cluster] worker {} available: {} free, {} cores, {}", addr,
                    info.mem_available >> 20, info.cores, info.backend);
          ok = true;
        } catch (const std::exception& e) {
          log::warn("[cluster] worker {} not used: {}", addr, e.what());
        }
        it = probed.emplace(key, ok).first;
      }
      return it->second;
    });

    auto now = std::chrono::steady_clock::now();
    if (desired == cur) {
      candidate = cur;
    } else if (desired != candidate) {
      candidate = desired;
      candidate_since = now;
    } else if (now - candidate_since >= options.settle) {
      log::info("[cluster] workers changed: {} -> {}", join(cur), join(desired));
      {
        std::lock_guard lock(mutex);
        current = desired;
      }
      auto make_fn = make;
      pipeline.request_rebuild([make_fn, desired] { return make_fn(desired); },
                               "workers now " + join(desired));
    }
    pipeline.rebuild_if_idle();
  }

  void run() {
    std::unique_lock lock(mutex);
    while (!stopping) {
      lock.unlock();
      try {
        poll_once();
      } catch (const std::exception& e) {
        log::warn("[cluster] watch: {}", e.what());
      }
      lock.lock();
      wake.wait_for(lock, options.poll, [&] { return stopping; });
    }
  }

  ~Impl() {
    {
      std::lock_guard lock(mutex);
      stopping = true;
    }
    wake.notify_all();
    if (thread.joinable()) thread.join();
  }
};

ClusterWatch::ClusterWatch(runtime::ReplanningPipeline& pipeline, std::vector<std::string> current,
                           MakePipeline make, ClusterWatchOptions options)
    : impl_(std::make_unique<Impl>(pipeline, std::move(current), std::move(make),
                                   std::move(options))) {}

ClusterWatch::~ClusterWatch() = default;

std::vector<std::string> ClusterWatch::peers() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->current;
}

}  // namespace meshlm::cluster
