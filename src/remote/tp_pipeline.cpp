#include "remote/tp_pipeline.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "core/error.h"
#include "core/hex.h"
#include "core/log.h"
#include "formats/activation_type.h"
#include "model/kv_cache.h"
#include "remote/fingerprint.h"
#include "runtime/stage_runner.h"
#include "transport/collective.h"
#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"
#include "transport/tcp_transport.h"
#include "transport/tp_reducer.h"

namespace meshlm::remote {

using namespace transport;

namespace {

struct Member {
  std::string address;
  int group = 0, rank = 1;  // which pipeline stage's group, and the rank in it
  std::shared_ptr<Connection> session;
  std::thread reader;
  std::string state = "connecting";
  uint64_t weight_bytes = 0;
};

class TpPipeline final : public runtime::Pipeline {
 public:
  explicit TpPipeline(const TpPipelineOptions& options) : options_(options) {
    if (options_.peers.empty()) throw Error("pipeline", "a tensor-parallel group needs workers");
    const size_t n = options_.peers.size() + 1;
    for (const auto& g : options_.later_groups) {
      if (g.size() != n)
        throw Error("pipeline", "every tensor-parallel group needs " + std::to_string(n) +
                                    " members; one has " + std::to_string(g.size()));
    }
    auto all_addresses = options_.peers;
    for (const auto& g : options_.later_groups) all_addresses.insert(all_addresses.end(), g.begin(), g.end());
    for (size_t i = 0; i < all_addresses.size(); ++i) {
      if (is_mpi_address(all_addresses[i]))
        throw Error("pipeline", "tensor parallelism over MPI ranks is not available yet");
      for (size_t j = 0; j < i; ++j)
        if (all_addresses[j] == all_addresses[i])
          throw Error("pipeline", "worker " + all_addresses[i] + " is given twice: each member is one worker");
    }
    if (options_.shares.empty()) options_.shares.assign(n, 1.0);
    if (options_.shares.size() != n) {
      throw Error("pipeline", std::to_string(options_.shares.size()) + " tensor-parallel shares for " +
                                  std::to_string(n) + " members");
    }
    // The workers get the shares as f32 (the load frame): every member must split alike.
    for (double& s : options_.shares) {
      if (!(s > 0)) throw Error("pipeline", "tensor-parallel shares must be > 0");
      s = double(float(s));
    }
    if (options_.worker_model_dir.empty()) options_.worker_model_dir = options_.model_dir;
    auto cfg = model::ModelConfig::from_dir(options_.model_dir);
    const size_t groups = options_.later_groups.size() + 1;
    if (options_.ranges.empty()) {
      if (groups > 1) throw Error("pipeline", "tensor-parallel groups in a pipeline need their layer ranges");
      options_.ranges = {{0, cfg.n_layers}};
    }
    if (options_.ranges.size() != groups)
      throw Error("pipeline", std::to_string(options_.ranges.size()) + " layer ranges for " +
                                  std::to_string(groups) + " tensor-parallel groups");
    model::check_partition(options_.ranges, cfg.n_layers, "pipeline");
    fingerprint_ = fingerprint(options_.model_dir);
    client_id_ = random_hex(16);
    for (const auto& p : options_.peers) {
      auto m = std::make_unique<Member>();
      m->address = p;
      m->rank = int(members_.size()) + 1;
      members_.push_back(std::move(m));
    }
    for (size_t g = 1; g < groups; ++g) {
      for (size_t r = 0; r < n; ++r) {
        auto m = std::make_unique<Member>();
        m->address = options_.later_groups[g - 1][r];
        m->group = int(g);
        m->rank = int(r);
        if (g + 1 == groups && r == 0) last_lead_ = members_.size();
        members_.push_back(std::move(m));
      }
    }
    try {
      form_and_load();
    } catch (const std::exception& e) {
      teardown();
      throw Error("pipeline", e.what());
    }
    for (size_t k = 0; k < members_.size(); ++k) {
      members_[k]->reader = std::thread([this, k] { read_session(k); });
    }
  }

  ~TpPipeline() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    for (auto& m : members_) {
      if (!m->session) continue;
      try {
        m->session->send(FrameType::Shutdown);
      } catch (const std::exception&) {
      }
    }
    runner0_.reset();
    stage0_.reset();  // and with it the group (its connections)
    teardown();
  }

  const model::ModelConfig& config() const override { return stage0_->config(); }
  WeightType kv_type() const override { return stage0_->kv_type(); }
  int depth() const override { return 1; }

  void launch(runtime::MicroBatch batch) override {
    std::lock_guard op(op_mutex_);
    runtime::MicroBatchResult r;
    r.id = batch.id;
    r.error = broken();
    if (batch.return_logits)  // whole rows wanted: no member may send its top values alone
      for (auto& c : batch.chunks) {
        c.top_logits = 0;
        c.top_log_z = false;
      }
    const bool chained = members_.size() > 0 && options_.ranges.size() > 1;
    if (r.error.empty()) {
      ForwardMsg m;
      m.id = batch.id;
      m.chunks = batch.chunks;
      m.tokens = batch.tokens;
      m.return_logits = true;  // the members' outputs are not used; each group's rank 0's are
      m.kv_ops = batch.kv_ops;
      auto payload = encode_forward(m);
      std::string send_error;
      for (size_t k = 0; k < members_.size(); ++k) {
        if (members_[k]->rank == 0) continue;  // a later group's rank 0: its forward comes below
        try {
          members_[k]->session->send(FrameType::Forward, payload);
        } catch (const std::exception& e) {
          if (send_error.empty()) send_error = member_label(k) + " is down: " + e.what();
        }
      }
      // Even when a send failed: the other members are in the forward and must see the group
      // break (a dead member's connections are closed) rather than wait for their timeout.
      try {
        runner0_->run({batch.chunks, batch.tokens, batch.new_sequences, batch.return_logits,
                       batch.masks, batch.kv_ops},
                      hidden_, out0_);
        if (!send_error.empty()) throw Error("pipeline", send_error);
        if (chained) {
          // The activations to the next group's rank 0, with what the last one samples by.
          ForwardMsg next;
          next.id = batch.id;
          next.chunks = std::move(batch.chunks);
          next.tokens = std::move(batch.tokens);
          next.new_sequences = std::move(batch.new_sequences);
          next.return_logits = batch.return_logits;
          next.masks = std::move(batch.masks);
          next.kv_ops = std::move(batch.kv_ops);
          next.hidden_type = options_.wire;
          next.hidden_dim = stage0_->config().hidden;
          next.hidden = std::move(hidden_);
          {
            std::lock_guard lock(mutex_);
            pending_.push_back(batch.id);
          }
          const size_t lead = first_lead();
          try {
            members_[lead]->session->send(FrameType::Forward, encode_forward(next));
          } catch (const std::exception& e) {
            throw Error("pipeline", member_label(lead) + " is down: " + e.what());
          }
          hidden_ = std::move(next.hidden);
        } else {
          r.sampled = std::move(out0_.sampled);
          r.logits = std::move(out0_.logits);
        }
        std::lock_guard lock(mutex_);
        busy_seconds_ += out0_.seconds;
        collectives_ = group_->stats();
        if (chained) return;  // the last group's rank 0 answers (read_session)
      } catch (const std::exception& e) {
        r.error = "tensor-parallel group: " + std::string(e.what());
        if (!send_error.empty() && r.error.find(send_error) == std::string::npos) {
          r.error += " (" + send_error + ")";
        }
        set_broken(r.error);
        std::lock_guard lock(mutex_);
        if (!pending_.empty() && pending_.back() == batch.id) pending_.pop_back();
      }
    }
    std::lock_guard lock(mutex_);
    done_.push_back(std::move(r));
  }

  runtime::MicroBatchResult wait() override {
    std::unique_lock lock(mutex_);
    if (done_.empty() && pending_.empty())
      throw Error("pipeline", "wait() with no micro-batch in flight");
    if (done_.empty()) {
      // Layouts of several groups: the last group's rank 0 answers, or a member reports an
      // error (set_broken), or nothing comes within the group timeout.
      const auto deadline =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(options_.group_timeout_ms);
      done_cv_.wait_until(lock, deadline, [&] { return !done_.empty() || !broken_.empty(); });
      if (done_.empty()) {
        runtime::MicroBatchResult r;
        r.id = pending_.front();
        pending_.pop_front();
        const bool timed_out = broken_.empty();
        r.error = timed_out ? "tensor-parallel pipeline: no result from " + member_label(last_lead_) +
                                  " within " + std::to_string(options_.group_timeout_ms / 1000) + " s"
                            : broken_;
        lock.unlock();
        if (timed_out) set_broken(r.error);
        return r;
      }
    }
    runtime::MicroBatchResult r = std::move(done_.front());
    done_.pop_front();
    if (!pending_.empty() && pending_.front() == r.id) pending_.pop_front();
    return r;
  }

  void release(int64_t seq_id) override {
    std::lock_guard op(op_mutex_);
    runner0_->release(seq_id);
    if (!broken().empty()) return;  // the members' stages are gone
    stage0_->release(seq_id);
    ReleaseMsg m;
    m.seq_ids = {seq_id};
    auto payload = encode_release(m);
    for (size_t k = 0; k < members_.size(); ++k) {
      try {
        members_[k]->session->send(FrameType::Release, payload);
      } catch (const std::exception& e) {
        set_broken(member_label(k) + " is down: " + e.what());
      }
    }
  }

  std::vector<runtime::StageInfo> stages() const override {
    std::lock_guard lock(mutex_);
    std::vector<runtime::StageInfo> out;
    const std::string state = broken_.empty() ? "ready" : "down";
    // Member 0's compute is its stage's time minus the collectives (which are the links plus
    // waiting for slower members); the workers' rows repeat member 0's figures.
    runtime::StageInfo row{"local (tp 0)", options_.ranges[0], state, stage0_->weight_bytes(),
                           busy_seconds_ - collectives_.seconds, 0.0};
    row.collectives = collectives_.calls;
    row.collective_bytes = collectives_.bytes_sent;
    row.collective_seconds = collectives_.seconds;
    out.push_back(row);
    for (size_t k = 0; k < members_.size(); ++k) {
      const Member& m = *members_[k];
      row.node = m.address + " (" + (options_.ranges.size() > 1 ? "stage " + std::to_string(m.group) + " " : "") +
                 "tp " + std::to_string(m.rank) + ")";
      row.layers = options_.ranges[size_t(m.group)];
      row.state = m.state;
      row.memory_bytes = m.weight_bytes;
      out.push_back(row);
    }
    return out;
  }

 private:
  std::string member_label(size_t k) const {
    const Member& m = *members_[k];
    return "tensor-parallel member " + std::to_string(m.rank) +
           (options_.ranges.size() > 1 ? " of stage " + std::to_string(m.group) : "") + " (" + m.address + ")";
  }

  // The member that takes the coordinator's activations: rank 0 of the second group.
  size_t first_lead() const { return options_.peers.size(); }

  std::string broken() const {
    std::lock_guard lock(mutex_);
    return broken_;
  }

  void set_broken(const std::string& why) {
    std::lock_guard lock(mutex_);
    if (!broken_.empty()) return;
    broken_ = why;
    for (auto& m : members_) m->state = "down";
    done_cv_.notify_all();
    if (!closing_) log::warn("[pipeline] {}", why);
  }

  void form_and_load() {
    const int n = int(options_.peers.size()) + 1;
    const size_t groups = options_.ranges.size();
    // Sessions first, then every load, so that the workers can connect among themselves.
    for (size_t k = 0; k < members_.size(); ++k) {
      Member& m = *members_[k];
      try {
        m.session = tcp_connect(m.address, options_.connect_timeout_ms);
        HandshakeOptions h;
        h.secret = options_.secret;
        h.fingerprint = fingerprint_;
        h.role = "coordinator";
        h.name = "worker";
        h.client_id = client_id_;
        h.timeout_ms = options_.connect_timeout_ms;
        handshake_client(*m.session, h);
      } catch (const std::exception& e) {
        throw Error("pipeline", member_label(k) + " is down: " + e.what());
      }
    }
    for (size_t k = 0; k < members_.size(); ++k) {
      const Member& m = *members_[k];
      const size_t g = size_t(m.group);
      LoadMsg load;
      load.model_dir = options_.worker_model_dir;
      load.layers = options_.ranges[g];
      load.max_context = options_.stage.max_context;
      load.kv_type = std::string(model::kv_type_name(options_.stage.kv_type));
      load.wire = std::string(formats::activation_type_name(options_.wire));
      load.sync = false;
      load.tp_shares.assign(options_.shares.begin(), options_.shares.end());
      if (g == 0) {
        load.tp_addresses.push_back("");  // rank 0 is this process, which does not listen
        for (const auto& a : options_.peers) load.tp_addresses.push_back(a);
      } else {
        load.tp_addresses = options_.later_groups[g - 1];
      }
      // A later group's rank 0 passes its activations on to the next group's rank 0.
      if (g > 0 && m.rank == 0 && g + 1 < groups) load.next = options_.later_groups[g][0];
      load.tp_rank = int32_t(m.rank);
      try {
        members_[k]->session->send(FrameType::Load, encode_load(load));
      } catch (const std::exception& e) {
        throw Error("pipeline", member_label(k) + " is down: " + e.what());
      }
    }
    // Member 0's connections of the mesh: one to every worker.
    std::vector<std::unique_ptr<Connection>> peers(static_cast<size_t>(n));
    for (size_t k = 0; k < options_.peers.size(); ++k) {
      try {
        auto conn = tcp_connect(members_[k]->address, options_.connect_timeout_ms);
        HandshakeOptions h;
        h.secret = options_.secret;
        h.fingerprint = fingerprint_;
        h.role = "tp";
        h.name = "tensor-parallel member " + std::to_string(k + 1);
        h.client_id = tp_member_id(0, 0, client_id_);
        h.timeout_ms = options_.load_timeout_ms;  // it first joins the members after it
        handshake_client(*conn, h);
        peers[k + 1] = std::move(conn);
      } catch (const std::exception& e) {
        throw Error("pipeline", member_label(k) + " did not join the group: " + e.what() +
                                    session_error(k));
      }
    }
    GroupOptions go;
    go.timeout_ms = options_.group_timeout_ms;
    group_ = std::make_shared<Group>(0, std::move(peers), go);
    model::StageOptions so = options_.stage;
    so.tensor_parallel = model::StageOptions::TensorParallel{options_.shares, 0,
                                                             std::make_shared<GroupReducer>(group_, options_.wire)};
    stage0_ = std::make_unique<model::Stage>(options_.model_dir, options_.ranges[0], so);
    runner0_ = std::make_unique<runtime::StageRunner>(*stage0_);
    for (size_t k = 0; k < members_.size(); ++k) {
      Member& m = *members_[k];
      try {
        Frame f = recv_checked(*m.session, options_.load_timeout_ms);
        if (f.type() != FrameType::Loaded) {
          throw Error("protocol", "expected loaded, got " + frame_type_name(f.header.type));
        }
        LoadedMsg loaded = decode_loaded(f.payload);
        m.weight_bytes = loaded.weight_bytes;
        m.state = "ready";
        const auto& r = options_.ranges[size_t(m.group)];
        log::info("[pipeline] {} loaded its share of layers {}-{} ({:.1f} MiB of weights)",
                  member_label(k), r.begin, r.end, loaded.weight_bytes / 1048576.0);
      } catch (const std::exception& e) {
        throw Error("pipeline", member_label(k) + " failed to load: " + e.what());
      }
    }
  }

  // What a worker said on its session before it failed to join (an Error frame), if anything.
  std::string session_error(size_t k) {
    try {
      Frame f = recv_checked(*members_[k]->session, 1000);
      return " (" + frame_type_name(f.header.type) + ")";
    } catch (const std::exception& e) {
      return std::string(" (") + e.what() + ")";
    }
  }

  // Drains a worker's session: heartbeats, and the error a member reports when its forward
  // failed. A closed session is a member down.
  void read_session(size_t k) {
    Connection& conn = *members_[k]->session;
    for (;;) {
      try {
        Frame f = recv_checked(conn, -1);
        if (f.type() == FrameType::Pong) continue;
        if (f.type() == FrameType::Result) {
          ResultMsg m = decode_result(f.payload);
          if (!m.error.empty()) {
            set_broken(member_label(k) + ": " + m.error);
          } else if (k == last_lead_ && options_.ranges.size() > 1) {
            deliver(std::move(m));
          }
          continue;
        }
        throw Error("protocol", "unexpected " + frame_type_name(f.header.type) + " frame");
      } catch (const std::exception& e) {
        {
          std::lock_guard lock(mutex_);
          if (closing_) return;
        }
        set_broken(member_label(k) + " is down: " + e.what());
        return;
      }
    }
  }

  // The last group's answer to the oldest micro-batch in flight (ignored once the pipeline is
  // broken: its micro-batches have failed already).
  void deliver(ResultMsg&& m) {
    std::lock_guard lock(mutex_);
    if (!broken_.empty()) return;
    runtime::MicroBatchResult r;
    r.id = m.id;
    r.sampled = std::move(m.sampled);
    r.logits = std::move(m.logits);
    done_.push_back(std::move(r));
    done_cv_.notify_all();
  }

  void teardown() {
    for (auto& m : members_) {
      if (m->session) m->session->close();
    }
    for (auto& m : members_) {
      if (m->reader.joinable()) m->reader.join();
    }
  }

  TpPipelineOptions options_;
  size_t last_lead_ = 0;  // members_ index of the last group's rank 0 (several groups)
  std::string fingerprint_, client_id_;
  std::vector<std::unique_ptr<Member>> members_;
  std::unique_ptr<model::Stage> stage0_;
  std::unique_ptr<runtime::StageRunner> runner0_;
  runtime::StageOutput out0_;
  std::vector<float> hidden_;

  std::mutex op_mutex_;  // launch() and release()
  mutable std::mutex mutex_;
  std::deque<runtime::MicroBatchResult> done_;
  std::deque<uint64_t> pending_;  // sent down the groups' chain, not answered yet
  std::condition_variable done_cv_;
  std::string broken_;
  double busy_seconds_ = 0;  // member 0's stage runs, collectives included
  std::shared_ptr<Group> group_;
  Group::Stats collectives_;  // group_'s, copied after each micro-batch (for stages())
  bool closing_ = false;
};

}  // namespace

std::unique_ptr<runtime::Pipeline> make_tp_pipeline(const TpPipelineOptions& options) {
  return std::make_unique<TpPipeline>(options);
}

}  // namespace meshlm::remote
