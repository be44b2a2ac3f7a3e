// A Pipeline whose layout can change while the server runs: when a worker joins or leaves the
// cluster, the coordinator builds a new pipeline (new plan, new workers) and this wrapper puts it
// in place of the old one between requests — at a moment when no micro-batch is in flight and no
// sequence holds KV in the old stages, so no request ever sees two layouts.
//
// Threads: the engine thread calls launch/wait/release as with any pipeline; any thread may call
// request_rebuild(), rebuild_if_idle() and stages() (the /health handler). A rebuild runs on the
// thread that finds the pipeline idle (the watcher's, or the engine's at its next launch); a
// launch that arrives meanwhile waits for the new layout, and stages() answers at once with the
// old layout marked "replanning".
//
// The old pipeline is destroyed before the new one is built: workers serve one coordinator at a
// time and the stage-0 weights should not be held twice. If building fails, micro-batches fail
// with the builder's error (a 503 for API clients) and the same build is retried at the next
// launch or rebuild_if_idle(), no more often than retry_interval.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <optional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::runtime {

class ReplanningPipeline final : public Pipeline {
 public:
  using Builder = std::function<std::unique_ptr<Pipeline>()>;

  explicit ReplanningPipeline(std::unique_ptr<Pipeline> initial,
                              std::chrono::milliseconds retry_interval = std::chrono::seconds(5));
  ~ReplanningPipeline() override;

  // Replaces the layout with builder() as soon as the pipeline is idle. A later request replaces
  // a pending one. `reason` goes to the log and to stages() meanwhile.
  void request_rebuild(Builder builder, std::string reason);
  // Runs a pending rebuild now if nothing is in flight or active; true when a new layout is in
  // place afterwards. Never throws (a failed build is logged and kept pending).
  bool rebuild_if_idle();
  bool rebuild_pending() const;
  uint64_t rebuilds() const;  // layouts put in place since construction

  const model::ModelConfig& config() const override { return config_; }
  int depth() const override;
  void launch(MicroBatch batch) override;
  MicroBatchResult wait() override;
  void release(int64_t seq_id) override;
  std::vector<StageInfo> stages() const override;
  uint64_t kv_epoch() const override;  // changes with every re-plan and with the inner one's
  WeightType kv_type() const override { return kv_type_; }  // the first layout's

 private:
  bool idle_locked() const;
  // With the lock held and the pipeline idle: swaps layouts (unlocking while building).
  bool rebuild_locked(std::unique_lock<std::mutex>& lock);
  Pipeline* use_locked() const;  // inner_ with users_ raised (null when there is none)
  void done_using() const;

  model::ModelConfig config_;
  WeightType kv_type_ = WeightType::F32;
  mutable std::mutex mutex_;
  std::condition_variable rebuilt_;
  mutable std::condition_variable users_drained_;
  std::unique_ptr<Pipeline> inner_;  // null while rebuilding or after a failed build
  int depth_ = 1;                    // inner_'s, kept for while there is none
  bool rebuilding_ = false;
  mutable int users_ = 0;            // calls into inner_ in progress outside the lock
  Builder pending_;
  std::string pending_reason_;
  uint64_t requests_ = 0;    // request_rebuild() calls: tells a newer request from the one built
  std::string build_error_;  // last failed build
  std::chrono::steady_clock::time_point last_attempt_{};
  std::chrono::milliseconds retry_interval_;
  mutable std::vector<StageInfo> last_stages_;  // shown while there is no inner pipeline
  std::set<int64_t> active_;            // sequences launched and not released
  // One entry per launch not yet waited for, in launch order: a result for launches answered
  // without an inner pipeline, nullopt for those inner_ will answer.
  std::deque<std::optional<MicroBatchResult>> in_flight_;
  uint64_t rebuilds_ = 0;
};

}  // namespace meshlm::runtime
