#include "remote/remote_pipeline.h"

#include "model/kv_cache.h"
#include "model/model_files.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "core/hex.h"
#include "core/log.h"
#include "core/trace.h"
#include "formats/activation_type.h"
#include "remote/fingerprint.h"
#include "remote/model_sync.h"
#include "runtime/stage_runner.h"
#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"
#include "transport/tcp_transport.h"

namespace meshlm::remote {

using namespace transport;  // the layer below: connections, frames, messages

namespace {

struct Remote {
  std::string address;
  model::LayerRange layers;
  std::string state = "connecting";
  uint64_t weight_bytes = 0;  // as the worker reported it
  double busy_seconds = 0;    // compute time it reported for its micro-batches
  double queue_seconds = 0;   // hand-off time inside the worker it reported (sum)
  // Send time: the worker reports its total since it loaded; earlier loads' totals are in base.
  double send_base = 0, send_latest = 0;
  // Shared so that the monitor can ping it while the engine thread uses it; replaced only with
  // op_mutex_ held.
  std::shared_ptr<Connection> conn;
  std::thread reader;
  std::chrono::steady_clock::time_point last_heard{};  // any frame from the worker
  std::chrono::steady_clock::time_point last_ping{};
  bool shut_down = false;  // MPI: the worker acknowledged the shutdown and has stopped
};

class RemotePipeline final : public runtime::Pipeline {
 public:
  explicit RemotePipeline(const RemotePipelineOptions& options) : options_(options) {
    for (const auto& p : options_.peers) mpi_ |= is_mpi_address(p);
    if (mpi_) {
      for (const auto& p : options_.peers) {
        if (!is_mpi_address(p)) throw Error("pipeline", "cannot mix MPI ranks and TCP workers");
      }
      if (options_.sync == SyncMode::Always) {
        throw Error("pipeline", "model sync is not available over MPI: every rank needs the "
                                "model at the same path");
      }
      options_.sync = SyncMode::Off;
    }
    sync_ = options_.sync == SyncMode::Always ||
            (options_.sync == SyncMode::Auto && options_.worker_model_dir.empty());
    if (options_.sync == SyncMode::Always) {
      options_.worker_model_dir.clear();
    } else if (options_.worker_model_dir.empty()) {
      options_.worker_model_dir = options_.model_dir;
    }
    auto cfg = model::ModelConfig::from_dir(options_.model_dir);
    const int n_stages = static_cast<int>(options_.peers.size()) + 1;
    auto ranges =
        options_.ranges.empty() ? model::even_partition(cfg.n_layers, n_stages) : options_.ranges;
    if (static_cast<int>(ranges.size()) != n_stages)
      throw Error("pipeline", std::to_string(ranges.size()) + " layer ranges for " +
                                  std::to_string(n_stages) + " stages");
    model::check_partition(ranges, cfg.n_layers, "pipeline");
    formats::check_activation_rows(options_.wire, cfg.hidden, "pipeline", "--wire");
    fingerprint_ = fingerprint(options_.model_dir);
    client_id_ = random_hex(16);
    stage0_ = std::make_unique<model::Stage>(options_.model_dir, ranges[0], options_.stage);
    runner0_ = std::make_unique<runtime::StageRunner>(*stage0_);
    if (sync_ && !options_.peers.empty()) {  // any format: tensors travel as stored
      TensorServerOptions so;
      so.chunk_bytes = options_.sync_chunk_bytes;
      so.stop_after_bytes = options_.sync_stop_after_bytes;
      so.corrupt_byte = options_.sync_corrupt_byte;
      so.counters = options_.sync_counters;
      tensor_server_ = std::make_unique<TensorServer>(options_.model_dir, fingerprint_, so);
    }
    for (size_t k = 0; k < options_.peers.size(); ++k) {
      auto r = std::make_unique<Remote>();
      r->address = options_.peers[k];
      r->layers = ranges[k + 1];
      remotes_.push_back(std::move(r));
    }
    std::string error = connect_all();
    if (!error.empty()) {
      teardown();
      throw Error("pipeline", error);
    }
    if (!mpi_ && !remotes_.empty() && options_.reconnect_in_background) {
      monitor_ = std::thread([this] { monitor(); });
    }
  }

  ~RemotePipeline() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;  // connections closing from here on are expected, not failures
    }
    cv_.notify_all();
    if (monitor_.joinable()) monitor_.join();
    if (mpi_) {
      shut_down_ranks();
      teardown();
      return;
    }
    for (auto& r : remotes_) {
      if (r->conn) {
        try {
          r->conn->send(FrameType::Shutdown);
        } catch (const std::exception&) {
        }
      }
    }
    teardown();
  }

  const model::ModelConfig& config() const override { return stage0_->config(); }
  WeightType kv_type() const override { return stage0_->kv_type(); }
  int depth() const override { return static_cast<int>(remotes_.size()) + 1; }

  void launch(runtime::MicroBatch batch) override {
    trace::event("coord.launch", batch.id);
    std::lock_guard op(op_mutex_);
    {
      std::lock_guard lock(mutex_);
      in_flight_.push_back(batch.id);
    }
    std::string error;
    bool retryable = false;
    if (is_broken()) {
      error = try_reconnect();
      retryable = !mpi_;
    }
    if (error.empty()) error = run_stage0_and_send(batch, retryable);
    if (!error.empty()) {
      std::lock_guard lock(mutex_);
      runtime::MicroBatchResult r;
      r.id = batch.id;
      r.error = error;
      r.retryable = retryable;
      done_[batch.id] = std::move(r);
      cv_.notify_all();
    }
  }

  runtime::MicroBatchResult wait() override {
    std::unique_lock lock(mutex_);
    if (in_flight_.empty()) throw Error("pipeline", "wait() with no micro-batch in flight");
    uint64_t id = in_flight_.front();
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(options_.result_timeout_ms);
    bool ready = cv_.wait_until(lock, deadline,
                                [&] { return done_.count(id) > 0 || !broken_.empty(); });
    runtime::MicroBatchResult r;
    r.id = id;
    if (done_.count(id)) {
      r = std::move(done_[id]);
      done_.erase(id);
    } else if (!broken_.empty()) {
      r.error = broken_;
      r.retryable = !mpi_;
    } else if (!ready) {
      broken_ = "no result for micro-batch " + std::to_string(id) + " within " +
                std::to_string(options_.result_timeout_ms / 1000) + " s; stages " +
                describe_remotes() + " timed out";
      for (auto& rem : remotes_) rem->state = "down";
      r.error = broken_;
      r.retryable = !mpi_;
      cv_.notify_all();
    }
    in_flight_.pop_front();
    trace::event("coord.wake", id);
    return r;
  }

  void release(int64_t seq_id) override {
    std::lock_guard op(op_mutex_);
    stage0_->release(seq_id);
    runner0_->release(seq_id);
    if (remotes_.empty() || is_broken() || !remotes_[0]->conn) return;
    try {
      ReleaseMsg m;
      m.seq_ids = {seq_id};
      remotes_[0]->conn->send(FrameType::Release, encode_release(m));
    } catch (const std::exception& e) {
      mark_down(0, e.what());
    }
  }

  uint64_t kv_epoch() const override { return kv_epoch_.load(); }

  std::vector<runtime::StageInfo> stages() const override {
    std::lock_guard lock(mutex_);
    std::vector<runtime::StageInfo> out;
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    auto waited = [&](const runtime::StageInfo& s) {
      return std::max(0.0, elapsed - s.busy_seconds - s.queue_seconds - s.send_seconds);
    };
    out.push_back({"local", stage0_->layers(), "ready",
                   stage0_->weight_bytes(), stage0_busy_seconds_, transfer_seconds_});
    out.back().send_seconds = stage0_send_seconds_;
    out.back().wait_seconds = waited(out.back());
    for (auto& r : remotes_) {
      out.push_back({r->address, r->layers, r->state, r->weight_bytes,
                     r->busy_seconds, 0.0});
      out.back().queue_seconds = r->queue_seconds;
      out.back().send_seconds = r->send_base + r->send_latest;
      out.back().wait_seconds = waited(out.back());
    }
    return out;
  }

 private:
  bool is_broken() const {
    std::lock_guard lock(mutex_);
    return !broken_.empty();
  }

  std::string stage_label(size_t k) const {
    return "stage " + std::to_string(k + 1) + " (" + remotes_[k]->address + ")";
  }

  std::string describe_remotes() const {
    std::string s;
    for (size_t k = 0; k < remotes_.size(); ++k) s += (k ? ", " : "") + stage_label(k);
    return s;
  }

  // Connects and loads every worker, the last first, so that each worker's next stage is
  // ready when it connects to it. Returns "" or the first failure.
  std::string connect_all() {
    for (size_t i = remotes_.size(); i-- > 0;) {
      Remote& r = *remotes_[i];
      try {
        {
          std::shared_ptr<Connection> c =
              connect_address(r.address, kMpiSessionTag, options_.connect_timeout_ms);
          std::lock_guard lock(mutex_);
          r.conn = std::move(c);
        }
        HandshakeOptions h;
        h.secret = options_.secret;
        h.fingerprint = fingerprint_;
        h.role = "coordinator";
        h.name = "worker";
        h.client_id = client_id_;
        // A worker rank may still be starting (mpirun starts every rank at once).
        h.timeout_ms = mpi_ ? std::max(options_.connect_timeout_ms, kMpiStartMs)
                            : options_.connect_timeout_ms;
        handshake_client(*r.conn, h);
        LoadMsg load;
        load.model_dir = options_.worker_model_dir;
        load.layers = r.layers;
        load.max_context = options_.stage.max_context;
        load.kv_type = std::string(model::kv_type_name(options_.stage.kv_type));
        load.wire = std::string(formats::activation_type_name(options_.wire));
        load.next = i + 1 < remotes_.size() ? remotes_[i + 1]->address : "";
        load.sync = sync_;
        r.conn->send(FrameType::Load, encode_load(load));
        Frame f = recv_checked(*r.conn, options_.load_timeout_ms);
        // A worker without the model syncs it from us before it reports loaded.
        int refused = 0;
        while (tensor_server_ && TensorServer::is_sync_frame(f.type())) {
          if (!tensor_server_->handle(*r.conn, f, stage_label(i)) && ++refused >= kMaxRefusals) {
            throw Error("sync", "the worker made " + std::to_string(refused) +
                                    " refused requests; dropping it");
          }
          f = recv_checked(*r.conn, options_.load_timeout_ms);
        }
        if (f.type() != FrameType::Loaded) {
          throw Error("protocol", "expected loaded, got " + frame_type_name(f.header.type));
        }
        LoadedMsg loaded = decode_loaded(f.payload);
        log::info("[pipeline] {} loaded layers {}-{} ({:.1f} MiB of weights)", stage_label(i),
                  r.layers.begin, r.layers.end, loaded.weight_bytes / 1048576.0);
        std::lock_guard lock(mutex_);
        r.weight_bytes = loaded.weight_bytes;
        r.send_base += r.send_latest;
        r.send_latest = 0;
        r.state = "ready";
        r.last_heard = std::chrono::steady_clock::now();
      } catch (const std::exception& e) {
        std::lock_guard lock(mutex_);
        r.state = "down";
        r.conn.reset();
        return stage_label(i) + " is down: " + e.what();
      }
    }
    for (size_t i = 0; i < remotes_.size(); ++i) {
      remotes_[i]->reader = std::thread([this, i] { read_results(i); });
    }
    return "";
  }

  // Closes every worker connection and joins the readers (workers reset their sessions).
  void teardown() {
    for (auto& r : remotes_) {
      if (r->conn) r->conn->close();
    }
    for (auto& r : remotes_) {
      if (r->reader.joinable()) r->reader.join();
      std::lock_guard lock(mutex_);
      r->conn.reset();
    }
  }

  // The monitor thread (TCP): heartbeats while the pipeline is whole, reconnects when it is not.
  void monitor() {
    using Clock = std::chrono::steady_clock;
    const auto min_backoff = std::chrono::milliseconds(250);
    auto backoff = min_backoff;
    Clock::time_point next_try{};
    std::unique_lock lock(mutex_);
    while (!closing_) {
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      if (closing_) break;
      const auto now = Clock::now();
      if (broken_.empty()) {
        backoff = min_backoff;
        std::vector<std::shared_ptr<Connection>> ping;
        std::string silent;
        size_t silent_k = 0;
        for (size_t k = 0; k < remotes_.size(); ++k) {
          Remote& r = *remotes_[k];
          if (r.state != "ready" || !r.conn) continue;
          if (options_.heartbeat_timeout_ms > 0 &&
              now - r.last_heard > std::chrono::milliseconds(options_.heartbeat_timeout_ms)) {
            silent = "nothing heard from it for " +
                     std::to_string(options_.heartbeat_timeout_ms / 1000.0).substr(0, 4) +
                     " s (heartbeat timeout)";
            silent_k = k;
            break;
          }
          if (now - r.last_ping >= std::chrono::milliseconds(kHeartbeatIntervalMs)) {
            r.last_ping = now;
            ping.push_back(r.conn);
          }
        }
        lock.unlock();
        if (!silent.empty()) mark_down(silent_k, silent);
        for (auto& c : ping) {
          try {
            c->send(FrameType::Ping);
          } catch (const std::exception&) {
            // the reader sees the broken connection and marks the stage down
          }
        }
        lock.lock();
        continue;
      }
      if (!in_flight_.empty() || now < next_try) continue;
      lock.unlock();
      std::string error;
      {
        std::lock_guard op(op_mutex_);
        if (is_broken()) error = try_reconnect();
      }
      lock.lock();
      if (error.empty()) {
        backoff = min_backoff;
        next_try = {};
      } else {
        log::debug("[pipeline] reconnect failed (next try in {} ms): {}", backoff.count(), error);
        next_try = Clock::now() + backoff;
        backoff = std::min<std::chrono::milliseconds>(backoff * 2, std::chrono::seconds(5));
      }
    }
  }

  // MPI: the worker ranks stop for good. The shutdown follows the forwards' path (rank 1, then
  // each rank passes it on), so it reaches every rank after the frames sent before it; each
  // rank acknowledges it on its session. Waiting for every acknowledgement (while the readers
  // still drain results) means no rank sends anything afterwards, so every rank can call
  // MPI_Finalize. A rank that does not answer would leave mpirun hanging: the job is aborted.
  void shut_down_ranks() {
    if (remotes_.empty() || !remotes_[0]->conn) return;
    bool readers_up = true;
    for (auto& r : remotes_) readers_up &= r->reader.joinable();
    try {
      remotes_[0]->conn->send(FrameType::Shutdown);
    } catch (const std::exception& e) {
      log::error("[pipeline] cannot send the shutdown to {}: {}", stage_label(0), e.what());
      mpi_abort(1);
    }
    std::unique_lock lock(mutex_);
    auto all_done = [&] {
      for (auto& r : remotes_) {
        if (!r->shut_down) return false;
      }
      return true;
    };
    if (readers_up && cv_.wait_for(lock, std::chrono::milliseconds(kMpiShutdownMs), all_done)) {
      return;
    }
    std::string missing;
    for (size_t k = 0; k < remotes_.size(); ++k) {
      if (!remotes_[k]->shut_down) missing += (missing.empty() ? "" : ", ") + stage_label(k);
    }
    log::error("[pipeline] {} did not acknowledge the shutdown: aborting the MPI job", missing);
    mpi_abort(1);
  }

  std::string try_reconnect() {
    if (mpi_) {  // MPI ranks cannot be restarted from here
      std::lock_guard lock(mutex_);
      return broken_ + " (an MPI pipeline does not reconnect: restart the mpirun job)";
    }
    {
      std::lock_guard lock(mutex_);
      // Wait until the failed batches drained (launch() counts its own batch).
      if (in_flight_.size() > 1) return broken_;
    }
    teardown();
    stage0_->release_all();
    runner0_->clear();
    kv_epoch_.fetch_add(1);  // the workers' KV goes with their sessions
    {
      std::lock_guard lock(mutex_);
      for (auto& r : remotes_) r->state = "connecting";
    }
    std::string error = connect_all();
    std::lock_guard lock(mutex_);
    if (error.empty()) {
      log::info("[pipeline] reconnected to {}", describe_remotes());
      broken_.clear();
      done_.clear();
    } else {
      broken_ = error;
    }
    return error;
  }

  void mark_down(size_t k, const std::string& why) {
    std::lock_guard lock(mutex_);
    remotes_[k]->state = "down";
    if (broken_.empty()) {
      broken_ = stage_label(k) + " is down: " + why;
      if (!closing_) log::warn("[pipeline] {}", broken_);
    }
    cv_.notify_all();
  }

  // Runs stage 0 and sends its activations to stage 1. Returns "" or the micro-batch's error.
  // `retryable` is set when the failure is a lost stage.
  std::string run_stage0_and_send(runtime::MicroBatch& batch, bool& retryable) {
    ForwardMsg m;
    try {
      runner0_->run({batch.chunks, batch.tokens, batch.new_sequences, batch.return_logits,
                     batch.masks, batch.kv_ops},
                    hidden_, out0_);
      {
        std::lock_guard lock(mutex_);
        stage0_busy_seconds_ += out0_.seconds;
      }
      trace::event("coord.computed", batch.id);
      if (out0_.last) {  // a single stage: finish here
        runtime::MicroBatchResult r;
        r.id = batch.id;
        r.sampled = std::move(out0_.sampled);
        r.logits = std::move(out0_.logits);
        std::lock_guard lock(mutex_);
        done_[batch.id] = std::move(r);
        cv_.notify_all();
        return "";
      }
    } catch (const std::exception& e) {
      return std::string("stage 0 (local): ") + e.what();
    }
    m.id = batch.id;
    m.chunks = std::move(batch.chunks);
    m.tokens = std::move(batch.tokens);
    m.new_sequences = std::move(batch.new_sequences);
    m.return_logits = batch.return_logits;
    m.masks = std::move(batch.masks);
    m.kv_ops = std::move(batch.kv_ops);
    m.hidden_dim = config().hidden;
    m.hidden_type = options_.wire;
    auto head = encode_forward_head_with_count(m, hidden_.size());
    std::vector<uint8_t> encoded;  // the activations in a --wire type other than f32
    if (m.hidden_type != WeightType::F32) {
      try {
        encoded = encode_activations(m.hidden_type, m.hidden_dim, hidden_);
      } catch (const std::exception& e) {
        return std::string("stage 0 (local): ") + e.what();
      }
    }
    std::span<const uint8_t> pieces[2] = {
        head, m.hidden_type == WeightType::F32
                  ? std::span<const uint8_t>{reinterpret_cast<const uint8_t*>(hidden_.data()),
                                             hidden_.size() * sizeof(float)}
                  : std::span<const uint8_t>(encoded)};
    try {
      {
        std::lock_guard lock(mutex_);
        sent_at_[m.id] = std::chrono::steady_clock::now();
      }
      const auto start = std::chrono::steady_clock::now();
      remotes_[0]->conn->send_pieces(FrameType::Forward, pieces);
      const double took =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      trace::event("coord.sent", m.id);
      std::lock_guard lock(mutex_);
      stage0_send_seconds_ += took;
    } catch (const std::exception& e) {
      mark_down(0, e.what());
      retryable = !mpi_;
      return stage_label(0) + " is down: " + e.what();
    }
    return "";
  }

  // encode_forward_head for activations that live outside the message (stage 0's buffer).
  static std::vector<uint8_t> encode_forward_head_with_count(const ForwardMsg& m, size_t count) {
    auto head = encode_forward_head(m);  // ends with u64 count = m.hidden.size() = 0
    PayloadWriter w;
    w.u64(count);
    std::copy(w.bytes().begin(), w.bytes().end(), head.end() - 8);
    return head;
  }

  void read_results(size_t k) {
    Connection& conn = *remotes_[k]->conn;
    for (;;) {
      try {
        Frame f = recv_checked(conn, -1);
        {
          std::lock_guard lock(mutex_);
          remotes_[k]->last_heard = std::chrono::steady_clock::now();
        }
        if (f.type() == FrameType::Pong) continue;
        if (f.type() == FrameType::Shutdown && mpi_) {  // the rank's acknowledgement: its last frame
          std::lock_guard lock(mutex_);
          remotes_[k]->shut_down = true;
          remotes_[k]->state = "stopped";
          cv_.notify_all();
          return;
        }
        if (f.type() != FrameType::Result) {
          throw Error("protocol", "unexpected " + frame_type_name(f.header.type) + " frame");
        }
        ResultMsg m = decode_result(f.payload);
        trace::event("coord.result", m.id);
        runtime::MicroBatchResult r;
        r.id = m.id;
        r.sampled = std::move(m.sampled);
        r.logits = std::move(m.logits);
        r.error = std::move(m.error);
        std::lock_guard lock(mutex_);
        // Per-stage compute as the workers measured it; the rest of the round trip is links and
        // waiting in front of busy stages.
        double compute = 0;
        for (size_t i = 0; i < m.stage_us.size() && i < remotes_.size(); ++i) {
          remotes_[i]->busy_seconds += double(m.stage_us[i]) * 1e-6;
          compute += double(m.stage_us[i]) * 1e-6;
        }
        for (size_t i = 0; i < m.stage_queue_us.size() && i < remotes_.size(); ++i) {
          remotes_[i]->queue_seconds += double(m.stage_queue_us[i]) * 1e-6;
          remotes_[i]->send_latest = double(m.stage_send_us[i]) * 1e-6;
        }
        if (auto it = sent_at_.find(r.id); it != sent_at_.end()) {
          double round_trip =
              std::chrono::duration<double>(std::chrono::steady_clock::now() - it->second).count();
          transfer_seconds_ += std::max(0.0, round_trip - compute);
          sent_at_.erase(it);
        }
        done_[r.id] = std::move(r);
        cv_.notify_all();
      } catch (const std::exception& e) {
        mark_down(k, e.what());
        return;
      }
    }
  }

  static constexpr int kMaxRefusals = 8;  // refused sync requests before a worker is dropped
  static constexpr int kMpiStartMs = 60000;     // MPI: handshake wait for a starting rank
  static constexpr int kMpiShutdownMs = 30000;  // MPI: wait for the ranks' acknowledgements

  bool mpi_ = false;  // the workers are MPI ranks ("mpi:RANK" peers)

  RemotePipelineOptions options_;
  bool sync_ = false;
  std::unique_ptr<TensorServer> tensor_server_;
  std::string fingerprint_;
  std::string client_id_;
  std::unique_ptr<model::Stage> stage0_;
  std::vector<std::unique_ptr<Remote>> remotes_;
  std::unique_ptr<runtime::StageRunner> runner0_;  // over stage0_; samples when it is the only one
  runtime::StageOutput out0_;
  std::vector<float> hidden_;

  // Held by launch(), release() and reconnects: the connections they use stay in place.
  std::mutex op_mutex_;
  std::thread monitor_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<uint64_t> in_flight_;                       // launch order
  std::map<uint64_t, runtime::MicroBatchResult> done_;  // completed, not yet returned
  double stage0_busy_seconds_ = 0;
  double transfer_seconds_ = 0;  // round trips to the workers minus their compute
  double stage0_send_seconds_ = 0;  // in send_pieces to stage 1
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  bool closing_ = false;  // the destructor is shutting the workers down
  std::map<uint64_t, std::chrono::steady_clock::time_point> sent_at_;  // micro-batch -> sent
  std::atomic<uint64_t> kv_epoch_{0};  // try_reconnect() calls (Pipeline::kv_epoch)
  std::string broken_;  // non-empty: a stage is down; the next launch reconnects
};

}  // namespace

std::unique_ptr<runtime::Pipeline> make_remote_pipeline(const RemotePipelineOptions& options) {
  return std::make_unique<RemotePipeline>(options);
}

}  // namespace meshlm::remote
