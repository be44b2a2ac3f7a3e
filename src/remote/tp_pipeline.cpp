#include "remote/tp_pipeline.h"

#include <algorithm>
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
  std::shared_ptr<Connection> session;
  std::thread reader;
  std::string state = "connecting";
  uint64_t weight_bytes = 0;
};

class TpPipeline final : public runtime::Pipeline {
 public:
  explicit TpPipeline(const TpPipelineOptions& options) : options_(options) {
    if (options_.peers.empty()) throw Error("pipeline", "a tensor-parallel group needs workers");
    for (const auto& p : options_.peers) {
      if (is_mpi_address(p)) throw Error("pipeline", "tensor parallelism over MPI ranks is not available yet");
    }
    const size_t n = options_.peers.size() + 1;
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
    layers_ = {0, cfg.n_layers};
    fingerprint_ = fingerprint(options_.model_dir);
    client_id_ = random_hex(16);
    for (const auto& p : options_.peers) {
      auto m = std::make_unique<Member>();
      m->address = p;
      members_.push_back(std::move(m));
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
    if (r.error.empty()) {
      ForwardMsg m;
      m.id = batch.id;
      m.chunks = batch.chunks;
      m.tokens = batch.tokens;
      m.return_logits = true;  // the members' outputs are not used; member 0 samples
      m.kv_ops = batch.kv_ops;
      auto payload = encode_forward(m);
      std::string send_error;
      for (size_t k = 0; k < members_.size(); ++k) {
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
        r.sampled = std::move(out0_.sampled);
        r.logits = std::move(out0_.logits);
        std::lock_guard lock(mutex_);
        busy_seconds_ += out0_.seconds;
        collectives_ = group_->stats();
      } catch (const std::exception& e) {
        r.error = "tensor-parallel group: " + std::string(e.what());
        if (!send_error.empty() && r.error.find(send_error) == std::string::npos) {
          r.error += " (" + send_error + ")";
        }
        set_broken(r.error);
      }
    }
    std::lock_guard lock(mutex_);
    done_.push_back(std::move(r));
  }

  runtime::MicroBatchResult wait() override {
    std::lock_guard lock(mutex_);
    if (done_.empty()) throw Error("pipeline", "wait() with no micro-batch in flight");
    runtime::MicroBatchResult r = std::move(done_.front());
    done_.pop_front();
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
    runtime::StageInfo row{"local (tp 0)", layers_, state, stage0_->weight_bytes(),
                           busy_seconds_ - collectives_.seconds, 0.0};
    row.collectives = collectives_.calls;
    row.collective_bytes = collectives_.bytes_sent;
    row.collective_seconds = collectives_.seconds;
    out.push_back(row);
    for (size_t k = 0; k < members_.size(); ++k) {
      row.node = members_[k]->address + " (tp " + std::to_string(k + 1) + ")";
      row.state = members_[k]->state;
      row.memory_bytes = members_[k]->weight_bytes;
      out.push_back(row);
    }
    return out;
  }

 private:
  std::string member_label(size_t k) const {
    return "tensor-parallel member " + std::to_string(k + 1) + " (" + members_[k]->address + ")";
  }

  std::string broken() const {
    std::lock_guard lock(mutex_);
    return broken_;
  }

  void set_broken(const std::string& why) {
    std::lock_guard lock(mutex_);
    if (!broken_.empty()) return;
    broken_ = why;
    for (auto& m : members_) m->state = "down";
    if (!closing_) log::warn("[pipeline] {}", why);
  }

  void form_and_load() {
    const int n = int(members_.size()) + 1;
    LoadMsg load;
    load.model_dir = options_.worker_model_dir;
    load.layers = layers_;
    load.max_context = options_.stage.max_context;
    load.kv_type = std::string(model::kv_type_name(options_.stage.kv_type));
    load.wire = std::string(formats::activation_type_name(options_.wire));
    load.sync = false;
    load.tp_shares.assign(options_.shares.begin(), options_.shares.end());
    load.tp_addresses.push_back("");
    for (const auto& m : members_) load.tp_addresses.push_back(m->address);
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
      try {
        load.tp_rank = int32_t(k + 1);
        members_[k]->session->send(FrameType::Load, encode_load(load));
      } catch (const std::exception& e) {
        throw Error("pipeline", member_label(k) + " is down: " + e.what());
      }
    }
    // Member 0's connections of the mesh: one to every worker.
    std::vector<std::unique_ptr<Connection>> peers(static_cast<size_t>(n));
    for (size_t k = 0; k < members_.size(); ++k) {
      try {
        auto conn = tcp_connect(members_[k]->address, options_.connect_timeout_ms);
        HandshakeOptions h;
        h.secret = options_.secret;
        h.fingerprint = fingerprint_;
        h.role = "tp";
        h.name = "tensor-parallel member " + std::to_string(k + 1);
        h.client_id = "0@" + client_id_;
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
    stage0_ = std::make_unique<model::Stage>(options_.model_dir, layers_, so);
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
        log::info("[pipeline] {} loaded its share of layers {}-{} ({:.1f} MiB of weights)",
                  member_label(k), layers_.begin, layers_.end, loaded.weight_bytes / 1048576.0);
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
          if (!m.error.empty()) set_broken(member_label(k) + ": " + m.error);
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

  void teardown() {
    for (auto& m : members_) {
      if (m->session) m->session->close();
    }
    for (auto& m : members_) {
      if (m->reader.joinable()) m->reader.join();
    }
  }

  TpPipelineOptions options_;
  model::LayerRange layers_;
  std::string fingerprint_, client_id_;
  std::vector<std::unique_ptr<Member>> members_;
  std::unique_ptr<model::Stage> stage0_;
  std::unique_ptr<runtime::StageRunner> runner0_;
  runtime::StageOutput out0_;
  std::vector<float> hidden_;

  std::mutex op_mutex_;  // launch() and release()
  mutable std::mutex mutex_;
  std::deque<runtime::MicroBatchResult> done_;
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
