#include "remote/worker.h"

#include "model/kv_cache.h"
#include "model/model_files.h"

#include <poll.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "backend/read_speed.h"
#include "core/log.h"
#include "core/trace.h"
#include "formats/activation_type.h"
#include "model/stage.h"
#include "remote/fingerprint.h"
#include "remote/model_sync.h"
#include "remote/tensor_cache.h"
#include "runtime/stage_runner.h"
#include "transport/handshake.h"
#include "transport/messages.h"
#include "transport/mpi_transport.h"
#include "transport/tcp_transport.h"
#include "transport/tp_reducer.h"

namespace meshlm::remote {

using namespace transport;  // the layer below: connections, frames, messages

struct Worker::Impl {
  WorkerOptions options;
  std::unique_ptr<TcpListener> listener;  // null when attached to ready-made connections
  bool attached = false;
  std::string own_fingerprint;  // of options.model_dir, "" without one
  std::atomic<bool> stopping{false};

  std::unique_ptr<Connection> session;     // the coordinator
  std::string session_fingerprint;         // what the coordinator said it serves
  std::string session_client_id;           // which coordinator instance
  std::unique_ptr<Connection> upstream;    // the previous stage
  std::unique_ptr<Connection> downstream;  // the next stage ("" next: we are last)
  std::string next_address;

  // Heartbeats (TCP): a thread sends a pong on the session once a second while a stage is loaded,
  // whatever the main thread is computing. session_mutex guards `session` against it being
  // replaced during a heartbeat; only the main thread changes it.
  std::mutex session_mutex;
  bool session_loaded = false;  // under session_mutex: heartbeats may go out
  std::thread heartbeat;
  std::condition_variable heartbeat_cv;
  std::chrono::steady_clock::time_point session_heard{};  // last frame from the coordinator
  bool session_pinged = false;  // the coordinator pings: its silence means it is gone

  std::unique_ptr<model::Stage> stage;
  LoadMsg loaded;  // the assignment `stage` was built for
  std::string loaded_dir;  // the folder it was loaded from
  std::string cache_dir;   // for model sync
  std::string loaded_fingerprint;
  std::unique_ptr<runtime::StageRunner> runner;  // runs `stage`; samples when it is the last
  // Tensor parallelism (tp_pipeline.h): `stage` is member loaded.tp_rank of the group whose
  // collectives go through tp_group; forwards and releases come on the session. Connections
  // with role "tp" that arrive before their load frame wait in tp_pending (with their client id).
  // A worker of rank 0 (tp_lead: the group computes layers after the first, hybrid layouts) is
  // also a pipeline stage: forwards come from the previous group's rank 0 (or the coordinator)
  // and go on to `next`; it hands each forward's activations to its members through tp_group.
  bool tp_member = false, tp_lead = false;
  std::shared_ptr<Group> tp_group;
  std::vector<std::pair<std::string, std::unique_ptr<Connection>>> tp_pending;
  std::vector<float> tp_hidden, tp_logits;
  runtime::StageOutput out;
  // Where a micro-batch's time goes in this stage (issue 19): when the frame being handled
  // finished arriving, and the time spent sending frames on (forwards and results) since the
  // stage loaded. Both travel in every forward and result frame.
  std::chrono::steady_clock::time_point arrived_at{};
  double send_seconds = 0;

  // This node's weight-read speed (backend/read_speed.h), measured once on a thread of its own
  // when a probe first asks (`meshlm plan --predict`); 0 until then.
  std::atomic<uint64_t> read_speed{0};
  std::once_flag read_speed_once;
  std::thread read_speed_thread;

  void measure_read_speed_once() {
    std::call_once(read_speed_once, [this] {
      read_speed_thread = std::thread([this] {
        try {
          read_speed.store(uint64_t(backend::measure_read_speed(options.stage_backend, options.threads)));
        } catch (const std::exception& e) {
          log::warn("[worker] could not measure the read speed: {}", e.what());
        }
      });
    });
  }

  explicit Impl(const WorkerOptions& o) : options(o) {
    if (!o.model_dir.empty()) own_fingerprint = fingerprint(o.model_dir);
    cache_dir = o.cache_dir;  // the default is looked up when first needed
  }
  ~Impl() {
    stopping.store(true);
    heartbeat_cv.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
    if (read_speed_thread.joinable()) read_speed_thread.join();
  }

  std::string name() const {
    if (!options.name.empty()) return options.name;
    return "worker " + (listener ? listener->address() : session ? session->peer() : "");
  }

  std::string stage_name() const {
    if (!stage) return name();
    return name() + " (layers " + std::to_string(stage->layer_begin()) + "-" +
           std::to_string(stage->layer_end()) + ")";
  }

  HandshakeOptions handshake_options(const std::string& fp) const {
    HandshakeOptions h;
    h.secret = options.secret;
    h.fingerprint = fp;
    h.name = "coordinator";
    h.timeout_ms = options.handshake_timeout_ms;
    h.info = this_node_info(options.threads, options.backend);
    h.info.read_bytes_per_s = read_speed.load();
    return h;
  }

  // ---- connections ----

  void end_session(const std::string& why) {
    if (session) log::info("[worker] coordinator {} gone: {}", session->peer(), why);
    {
      std::lock_guard lock(session_mutex);
      session.reset();
      session_loaded = false;
    }
    session_pinged = false;
    if (tp_member || tp_lead) {  // the member's stage belongs to the group, which ends with the session
      runner.reset();
      stage.reset();
      tp_member = tp_lead = false;
    }
    tp_group.reset();
    tp_pending.clear();
    upstream.reset();
    downstream.reset();
    next_address.clear();
    if (runner) runner->clear();
    if (stage) stage->release_all();
  }

  void accept_one() {
    auto conn = listener->accept(0);
    if (!conn) return;
    std::string fp = session ? loaded_fingerprint : own_fingerprint;
    if (session && fp.empty()) fp = session_fingerprint;
    HandshakeResult hs;
    try {
      hs = handshake_server(*conn, handshake_options(fp));
    } catch (const std::exception& e) {
      log::warn("[worker] refused {}: {}", conn->peer(), e.what());
      return;
    }
    if (hs.role == "probe") {  // `meshlm plan` asking what this node offers: done
      measure_read_speed_once();  // for the next probe (plan --predict asks again)
      return;
    }
    if (hs.role == "tp") {  // a member of a group this worker is about to be told to join
      if (!session || tp_pending.size() >= 64) {
        send_error_quietly(*conn, name() + " is not joining a tensor-parallel group");
        return;
      }
      tp_pending.emplace_back(hs.client_id, std::move(conn));
      return;
    }
    if (hs.role == "coordinator") {
      // The same coordinator reconnecting (after a failure it noticed first) takes over.
      bool same = session && !hs.client_id.empty() && hs.client_id == session_client_id;
      if (session && !same) {
        send_error_quietly(*conn, name() + " is busy serving coordinator " + session->peer());
        log::warn("[worker] refused coordinator {}: busy", conn->peer());
        return;
      }
      log::info("[worker] coordinator {} connected", conn->peer());
      end_session("replaced");
      {
        std::lock_guard lock(session_mutex);
        session = std::move(conn);
      }
      session_heard = std::chrono::steady_clock::now();
      session_fingerprint = hs.peer_fingerprint;
      session_client_id = hs.client_id;
    } else {  // upstream
      if (!session || !stage) {
        send_error_quietly(*conn, name() + " has no stage loaded");
        return;
      }
      log::info("[worker] previous stage {} connected", conn->peer());
      upstream = std::move(conn);
    }
  }

  // ---- frames ----

  // The folder and fingerprint a load uses (see worker.h); "" dir = sync into the cache.
  std::pair<std::string, std::string> choose_model_dir(const LoadMsg& m) {
    const std::string& want = session_fingerprint;
    auto mismatch = [&](const std::string& dir, const std::string& fp) {
      return Error("worker", "model fingerprint mismatch: " + dir + " on " + name() + " is " +
                                 fp.substr(0, 16) + "..., the coordinator serves " +
                                 want.substr(0, 16) + "...");
    };
    if (!m.sync) {  // the coordinator's path must hold its model
      std::string fp = fingerprint(m.model_dir);
      if (!want.empty() && fp != want) throw mismatch(m.model_dir, fp);
      return {m.model_dir, fp};
    }
    std::error_code ec;
    const std::filesystem::path given(m.model_dir);
    const bool looks_like_model =
        !m.model_dir.empty() && (std::filesystem::exists(given / "config.json", ec) ||
                                 model::detect_model_format(m.model_dir) == model::ModelFormat::Gguf);
    if (looks_like_model) {
      std::string fp = fingerprint(m.model_dir);
      if (fp == want) return {m.model_dir, fp};
      log::info("[worker] {} is not the coordinator's model; syncing instead", m.model_dir);
    }
    if (!options.model_dir.empty() && own_fingerprint == want) {
      return {options.model_dir, own_fingerprint};
    }
    if (!is_hex_fingerprint(want)) {
      throw Error("worker", name() + " has no copy of the model and the coordinator sent no "
                                     "usable fingerprint to sync it by");
    }
    return {"", want};
  }

  void handle_load(const Frame& f) {
    {
      std::lock_guard lock(session_mutex);
      session_loaded = false;  // no heartbeat may come between the load and the loaded frame
    }
    LoadMsg m = decode_load(f.payload);
    send_seconds = 0;
    if (!m.tp_shares.empty()) {
      handle_tp_load(m);
      return;
    }
    if (tp_member || tp_lead) {  // a pipeline stage after a group: the member stage cannot be reused
      runner.reset();
      stage.reset();
      tp_member = tp_lead = false;
      tp_group.reset();
    }
    if (is_mpi_address(m.next) && !attached) {
      throw Error("worker", name() + " is not an MPI rank: it cannot pass activations to " + m.next);
    }
    auto [dir, fp] = choose_model_dir(m);
    const bool from_cache = dir.empty();
    if (from_cache && attached) {  // the session's reader thread owns its receiving side
      throw Error("worker", name() + " has no copy of the model at '" + m.model_dir +
                                "'; model sync is not available over MPI: every rank needs the "
                                "model at the same path");
    }
    if (from_cache) {
      if (cache_dir.empty()) cache_dir = default_cache_dir();
      dir = (std::filesystem::path(cache_dir) / fp).string();
    }
    bool same = stage && loaded_dir == dir && loaded.layers == m.layers && loaded.max_context == m.max_context &&
                loaded.kv_type == m.kv_type &&
                loaded_fingerprint == fp;
    if (same) {
      stage->release_all();
    } else {
      runner.reset();
      stage.reset();  // free (and unmap) the old weights first
      model::StageOptions so;
      so.threads = options.threads;
      so.max_context = m.max_context;
      so.kv_type = *model::kv_type_from_name(m.kv_type);  // checked when the frame was decoded
      so.lock_memory = options.lock_memory;
      so.backend = options.stage_backend;
      std::unique_ptr<CacheLock> lock;
      if (from_cache) {
        auto synced = sync_stage_to_cache(*session, cache_dir, fp, m.layers.begin, m.layers.end,
                                          options.sync_timeout_ms);
        lock = std::move(synced.lock);  // held until the files are mapped
      }
      log::info("[worker] loading layers {}-{} of {}", m.layers.begin, m.layers.end, dir);
      stage = std::make_unique<model::Stage>(dir, m.layers, so);
      runner = std::make_unique<runtime::StageRunner>(*stage);
    }
    loaded = m;
    loaded_dir = dir;
    loaded_fingerprint = fp;
    runner->clear();
    downstream.reset();
    next_address = m.next;
    if (stage->is_last() != m.next.empty()) {
      throw Error("worker", stage->is_last() ? "the last stage cannot have a next stage"
                                             : "layers " + std::to_string(m.layers.end) +
                                                   "... need a next stage");
    }
    if (!next_address.empty()) connect_downstream();
    reply_loaded(fp);
  }

  // Tells the coordinator the stage (or tensor-parallel member) is loaded.
  void reply_loaded(const std::string& fingerprint) {
    LoadedMsg reply;
    reply.n_layers = stage->config().n_layers;
    reply.weight_bytes = stage->weight_bytes();
    reply.fingerprint = fingerprint;
    std::lock_guard lock(session_mutex);
    session->send(FrameType::Loaded, encode_loaded(reply));
    session_loaded = true;
  }

  // ---- tensor parallelism ----

  static constexpr int kTpFormMs = 60000;    // forming the group: each connection and handshake
  static constexpr int kTpGroupMs = 60000;   // the group's collectives (GroupOptions::timeout_ms)

  // Who a "tp" connection is, for which group and coordinator (transport/messages.h).
  std::string tp_client_id(int rank, int64_t layer_begin) const {
    return tp_member_id(rank, layer_begin, session_client_id);
  }

  // The connection from member r (< rank) of this session's group: a pending one, else the next
  // "tp" connection accepted; other connections are refused meanwhile (busy).
  void accept_tp_members(std::vector<std::unique_ptr<Connection>>& peers, int rank,
                         int64_t layer_begin, const std::string& fp) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTpFormMs);
    auto missing = [&] {
      for (int r = 0; r < rank; ++r) {
        if (!peers[size_t(r)]) return true;
      }
      return false;
    };
    auto take = [&](const std::string& id, std::unique_ptr<Connection> conn) {
      int r = 0;
      while (r < rank && id != tp_client_id(r, layer_begin)) ++r;
      if (r >= rank || peers[size_t(r)]) {
        send_error_quietly(*conn, name() + ": not a member of this tensor-parallel group");
        log::warn("[worker] refused tensor-parallel connection '{}' from {}", id, conn->peer());
        return;
      }
      peers[size_t(r)] = std::move(conn);
    };
    auto pending = std::move(tp_pending);
    tp_pending.clear();
    for (auto& [id, conn] : pending) take(id, std::move(conn));
    while (missing()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                            deadline - std::chrono::steady_clock::now()).count();
      if (left <= 0) {
        throw Error("worker", name() + ": the tensor-parallel group did not form within " +
                                  std::to_string(kTpFormMs / 1000) + " s");
      }
      auto conn = listener->accept(int(left));
      if (!conn) continue;
      HandshakeResult hs;
      try {
        hs = handshake_server(*conn, handshake_options(fp));
      } catch (const std::exception& e) {
        log::warn("[worker] refused {}: {}", conn->peer(), e.what());
        continue;
      }
      if (hs.role == "probe") continue;
      if (hs.role != "tp") {
        send_error_quietly(*conn, name() + " is busy forming a tensor-parallel group");
        continue;
      }
      take(hs.client_id, std::move(conn));
    }
  }

  // A load with a tensor-parallel part: form the group (connect to the members after this one,
  // accept those before it), then load this member's slice of the layers.
  void handle_tp_load(const LoadMsg& m) {
    if (attached || !listener) {
      throw Error("worker", name() + ": tensor parallelism needs a listening (TCP) worker");
    }
    auto [dir, fp] = choose_model_dir(m);
    if (dir.empty()) {
      throw Error("worker", name() + " has no copy of the model at '" + m.model_dir +
                                "'; tensor-parallel members do not sync the model yet");
    }
    runner.reset();
    stage.reset();
    tp_member = tp_lead = false;
    tp_group.reset();
    const int n = int(m.tp_shares.size());
    const int rank = m.tp_rank;
    std::vector<std::unique_ptr<Connection>> peers(static_cast<size_t>(n));
    for (int j = rank + 1; j < n; ++j) {
      const std::string& address = m.tp_addresses[size_t(j)];
      try {
        auto conn = connect_address(address, kMpiUpstreamTag, kTpFormMs);
        HandshakeOptions h = handshake_options(fp);
        h.role = "tp";
        h.name = "tensor-parallel member " + std::to_string(j);
        h.client_id = tp_client_id(rank, m.layers.begin);
        h.timeout_ms = kTpFormMs;
        handshake_client(*conn, h);
        peers[size_t(j)] = std::move(conn);
      } catch (const std::exception& e) {
        throw Error("worker", name() + ": cannot reach tensor-parallel member " +
                                  std::to_string(j) + " (" + address + "): " + e.what());
      }
    }
    accept_tp_members(peers, rank, m.layers.begin, fp);
    GroupOptions go;
    go.timeout_ms = kTpGroupMs;
    tp_group = std::make_shared<Group>(rank, std::move(peers), go);
    model::StageOptions so;
    so.threads = options.threads;
    so.max_context = m.max_context;
    so.kv_type = *model::kv_type_from_name(m.kv_type);  // checked when the frame was decoded
    so.lock_memory = options.lock_memory;
    so.backend = options.stage_backend;
    so.tensor_parallel = model::StageOptions::TensorParallel{
        std::vector<double>(m.tp_shares.begin(), m.tp_shares.end()), rank,
        std::make_shared<GroupReducer>(tp_group, *formats::activation_type_from_name(m.wire))};
    log::info("[worker] loading member {} of {} of layers {}-{} of {}", rank, n, m.layers.begin,
              m.layers.end, dir);
    stage = std::make_unique<model::Stage>(dir, m.layers, so);
    loaded = m;
    loaded_dir = dir;
    loaded_fingerprint = fp;
    downstream.reset();
    next_address.clear();
    if (rank == 0) {  // a later group's rank 0: a pipeline stage too (connects on at first use)
      if (stage->is_last() != m.next.empty())
        throw Error("worker", stage->is_last() ? "the last stage cannot have a next stage"
                                               : "layers " + std::to_string(m.layers.end) +
                                                     "... need a next stage");
      runner = std::make_unique<runtime::StageRunner>(*stage);
      next_address = m.next;
      tp_lead = true;
    } else {
      tp_member = true;
    }
    reply_loaded(fp);
  }

  // A member's forward: the same call as every other member's (the collectives pair them up);
  // the output is rank 0's to use. A failure (a member gone: the group broke) is reported to
  // the coordinator and ends the session.
  void handle_tp_forward(const Frame& f) {
    ForwardMsg m = decode_forward(f.payload);
    try {
      tp_hidden.clear();
      // A later group: rank 0 hands every member the activations it received (only it
      // contributes to this all_gather).
      if (!stage->is_first()) tp_hidden = tp_group->all_gather({});
      stage->apply_kv_ops(m.kv_ops, false);
      stage->forward(m.chunks, m.tokens, tp_hidden, tp_logits);
      stage->apply_kv_ops(m.kv_ops, true);
    } catch (const std::exception& e) {
      const std::string why = stage_name() + ": " + e.what();
      log::warn("[worker] {}", why);
      ResultMsg r;
      r.id = m.id;
      r.error = why;
      try {
        send_result(r);
      } catch (const std::exception&) {
      }
      end_session(why);
    }
  }

  void send_heartbeats() {
    std::unique_lock lock(session_mutex);
    while (!stopping.load()) {
      heartbeat_cv.wait_for(lock, std::chrono::milliseconds(kHeartbeatIntervalMs));
      if (stopping.load()) break;
      if (!session || !session_loaded) continue;
      try {
        session->send(FrameType::Pong);
      } catch (const std::exception&) {
        // the main thread sees the broken connection
      }
    }
  }

  void connect_downstream() {
    auto conn = connect_address(next_address, kMpiUpstreamTag, 5000);
    if (is_mpi_address(next_address)) {  // ranks of one mpirun job: no handshake (worker.h)
      downstream = std::move(conn);
      return;
    }
    HandshakeOptions h = handshake_options(loaded_fingerprint);
    h.role = "upstream";
    h.name = "next stage";
    handshake_client(*conn, h);
    downstream = std::move(conn);
  }

  void send_result(ResultMsg& r) {
    if (!session) return;
    const auto start = std::chrono::steady_clock::now();
    session->send(FrameType::Result, encode_result(r));
    send_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    trace::event("worker.sent", r.id);
  }

  // Appends this stage's times to a micro-batch's lists (compute, queue, send so far).
  void add_stage_times(ForwardMsg& m, std::chrono::steady_clock::time_point started) {
    m.stage_us.push_back(int64_t(out.seconds * 1e6));
    m.stage_queue_us.push_back(std::max<int64_t>(
        0, std::chrono::duration_cast<std::chrono::microseconds>(started - arrived_at).count()));
    m.stage_send_us.push_back(int64_t(send_seconds * 1e6));
  }

  // A forward frame's arrival, for MESHLM_TRACE: its micro-batch id is the payload's first
  // field (little-endian u64).
  static void trace_arrival(const Frame& f) {
    if (!trace::enabled() || f.payload.size() < 8) return;
    uint64_t id = 0;
    for (int i = 7; i >= 0; --i) id = (id << 8) | f.payload[size_t(i)];
    trace::event("worker.recv", id);
  }

  void handle_forward(const Frame& f) {
    const auto started = std::chrono::steady_clock::now();
    ForwardMsg m = decode_forward(f.payload);
    trace::event("worker.start", m.id);
    ResultMsg result;
    result.id = m.id;
    bool pass_on = false;
    std::vector<uint8_t> wire_bytes;  // the activations in a --wire type other than f32
    if (!stage) {
      result.error = name() + " has no stage loaded";
      send_result(result);
      return;
    }
    try {
      const auto& cfg = stage->config();
      if (!stage->is_first() && m.hidden_dim != cfg.hidden) {
        throw Error("worker", "activations have hidden size " + std::to_string(m.hidden_dim) +
                                  ", the model has " + std::to_string(cfg.hidden));
      }
      if (tp_lead) {
        if (m.hidden.size() != m.tokens.size() * size_t(cfg.hidden))
          throw Error("worker", "activations have " + std::to_string(m.hidden.size()) +
                                    " values for " + std::to_string(m.tokens.size()) + " positions");
        tp_group->all_gather(m.hidden);  // to the group's other members (handle_tp_forward)
      }
      runner->run({m.chunks, m.tokens, m.new_sequences, m.return_logits, m.masks, m.kv_ops},
                  m.hidden, out);
      trace::event("worker.computed", m.id);
      add_stage_times(m, started);
      result.stage_us = m.stage_us;
      result.stage_queue_us = m.stage_queue_us;
      result.stage_send_us = m.stage_send_us;
      if (!out.last) {
        m.hidden_dim = cfg.hidden;
        // --wire: the activations cross the next link in the coordinator's type (load frame;
        // checked when it was decoded). An f32 frame is sent from m.hidden as it is.
        m.hidden_type = *formats::activation_type_from_name(loaded.wire);
        if (m.hidden_type != WeightType::F32)
          wire_bytes = encode_activations(m.hidden_type, m.hidden_dim, m.hidden);
        pass_on = true;
      } else {
        result.sampled = std::move(out.sampled);
        result.logits = std::move(out.logits);
      }
    } catch (const std::exception& e) {
      result.error = stage_name() + ": " + e.what();
      pass_on = false;
      if (tp_lead) {  // the group is out of step (or broken): its members must not wait on it
        log::warn("[worker] {}", result.error);
        try {
          send_result(result);
        } catch (const std::exception&) {
        }
        end_session(result.error);
        return;
      }
    }
    if (pass_on) {
      forward_downstream(m, wire_bytes);  // ends the session when the next stage is gone
      return;
    }
    send_result(result);
  }

  // encoded: the activations' bytes in m.hidden_type when that is not f32.
  void forward_downstream(const ForwardMsg& m, std::span<const uint8_t> encoded) {
    auto head = encode_forward_head(m);
    std::span<const uint8_t> pieces[2] = {
        head, m.hidden_type == WeightType::F32
                  ? std::span<const uint8_t>{reinterpret_cast<const uint8_t*>(m.hidden.data()),
                                             m.hidden.size() * 4}
                  : encoded};
    try {
      if (!downstream) connect_downstream();
      const auto start = std::chrono::steady_clock::now();
      downstream->send_pieces(FrameType::Forward, pieces);
      send_seconds +=
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      trace::event("worker.sent", m.id);
    } catch (const std::exception& e) {
      downstream.reset();
      std::string why =
          "next stage " + next_address + " is unreachable from " + name() + ": " + e.what();
      if (attached) {  // MPI: the job does not reconnect; the coordinator gets the error
        ResultMsg r;
        r.id = m.id;
        r.error = why;
        send_result(r);
        return;
      }
      // The pipeline is broken past this stage: ending the session tells the coordinator, which
      // reconnects every stage (and replays its sequences) once the next one is back.
      log::warn("[worker] {}", why);
      if (session) send_error_quietly(*session, why);
      end_session(why);
    }
  }

  void handle_release(const Frame& f) {
    ReleaseMsg m = decode_release(f.payload);
    for (int64_t seq : m.seq_ids) {
      if (stage) stage->release(seq);
      if (runner) runner->release(seq);
    }
    if (downstream && !tp_lead) {  // the coordinator tells every group member itself
      try {
        downstream->send(FrameType::Release, f.payload);
      } catch (const std::exception& e) {
        log::warn("[worker] cannot pass a release on to {}: {}", next_address, e.what());
        downstream.reset();
      }
    }
  }

  // Handles one frame from the coordinator (from_session) or the previous stage.
  void handle(const Frame& f, bool from_session) {
    switch (f.type()) {
      case FrameType::Forward:
        if (tp_member) {
          if (!from_session) break;
          handle_tp_forward(f);
        } else {
          handle_forward(f);
        }
        return;
      case FrameType::Release: handle_release(f); return;
      case FrameType::Ping:
        (from_session ? session : upstream)->send(FrameType::Pong, f.payload);
        return;
      case FrameType::Load:
        if (from_session) {
          handle_load(f);
          return;
        }
        break;
      case FrameType::Shutdown:
        if (attached) {
          finish_attached();
          return;
        }
        if (from_session) {
          end_session("shut down by the coordinator");
          return;
        }
        break;
      default: break;
    }
    throw Error("protocol", "unexpected " + frame_type_name(f.header.type) + " frame");
  }

  // Reads and handles one frame from `conn`; a failure closes only that connection.
  void serve(std::unique_ptr<Connection>& conn, bool from_session) {
    try {
      Frame f = recv_checked(*conn, options.frame_timeout_ms);
      arrived_at = std::chrono::steady_clock::now();
      if (f.type() == FrameType::Forward) trace_arrival(f);
      if (from_session) {
        session_heard = std::chrono::steady_clock::now();
        if (f.type() == FrameType::Ping) session_pinged = true;
      }
      handle(f, from_session);
    } catch (const std::exception& e) {
      if (!conn) return;  // a shutdown already ended the session
      std::string why = e.what();
      if (dynamic_cast<const ConnectionError*>(&e) == nullptr) send_error_quietly(*conn, why);
      if (from_session) {
        end_session(why);
      } else {
        log::warn("[worker] dropped previous stage {}: {}", conn->peer(), why);
        conn.reset();
      }
    }
  }

  // Attached: the shutdown came after every frame before it on the forwards' path. Passes it on,
  // tells the coordinator, and ends run().
  void finish_attached() {
    if (downstream) {
      try {
        downstream->send(FrameType::Shutdown);
      } catch (const std::exception& e) {
        log::warn("[worker] cannot pass the shutdown on to {}: {}", next_address, e.what());
      }
    }
    try {
      session->send(FrameType::Shutdown);
    } catch (const std::exception& e) {
      log::warn("[worker] cannot acknowledge the shutdown: {}", e.what());
    }
    stopping.store(true);
  }

  // ---- attached: one reader thread per connection feeds the handling thread ----

  struct Event {
    bool from_session = false;
    std::chrono::steady_clock::time_point arrived{};
    std::optional<Frame> frame;  // empty: the connection failed with `error`
    std::string error;
  };
  std::mutex events_mutex;
  std::condition_variable events_cv;
  std::deque<Event> events;

  void read_into_queue(Connection* conn, bool from_session) {
    for (;;) {
      Event ev;
      ev.from_session = from_session;
      try {
        ev.frame = recv_checked(*conn, -1);
        ev.arrived = std::chrono::steady_clock::now();
        if (ev.frame->type() == FrameType::Forward) trace_arrival(*ev.frame);
      } catch (const std::exception& e) {
        ev.error = e.what();
      }
      bool failed = !ev.frame;
      {
        std::lock_guard lock(events_mutex);
        events.push_back(std::move(ev));
      }
      events_cv.notify_one();
      if (failed) return;
    }
  }

  void run_attached() {
    // The coordinator may load its own stage for a long time before it connects.
    HandshakeOptions h = handshake_options(own_fingerprint);
    h.timeout_ms = -1;
    HandshakeResult hs;
    try {
      hs = handshake_server(*session, h);
    } catch (const std::exception& e) {
      log::error("[worker] {}: handshake with the coordinator failed: {}", name(), e.what());
      return;
    }
    session_fingerprint = hs.peer_fingerprint;
    session_client_id = hs.client_id;
    log::info("[worker] {}: coordinator {} connected", name(), session->peer());
    std::vector<std::thread> readers;
    readers.emplace_back([this] { read_into_queue(session.get(), true); });
    if (upstream) readers.emplace_back([this] { read_into_queue(upstream.get(), false); });
    while (!stopping.load()) {
      Event ev;
      {
        std::unique_lock lock(events_mutex);
        if (!events_cv.wait_for(lock, std::chrono::milliseconds(200),
                                [&] { return !events.empty(); })) {
          continue;
        }
        ev = std::move(events.front());
        events.pop_front();
      }
      Connection& conn = ev.from_session ? *session : *upstream;
      if (!ev.frame) {
        if (ev.from_session) {
          log::warn("[worker] {}: lost the coordinator: {}", name(), ev.error);
          break;
        }
        log::warn("[worker] {}: previous stage {} failed: {}", name(), conn.peer(), ev.error);
        continue;
      }
      try {
        arrived_at = ev.arrived;
        handle(*ev.frame, ev.from_session);
      } catch (const std::exception& e) {
        send_error_quietly(conn, e.what());
        if (ev.from_session) {
          log::warn("[worker] {}: ending the session: {}", name(), e.what());
          break;
        }
        log::warn("[worker] {}: bad frame from the previous stage: {}", name(), e.what());
      }
    }
    session->close();
    if (upstream) upstream->close();
    for (auto& t : readers) t.join();
    end_session("session over");
  }

  void run() {
    if (attached) {
      run_attached();
      return;
    }
    log::info("[worker] listening on {}{}", listener->address(),
              own_fingerprint.empty() ? "" : " (model " + own_fingerprint.substr(0, 16) + "...)");
    heartbeat = std::thread([this] { send_heartbeats(); });
    while (!stopping.load()) {
      pollfd fds[3] = {{listener->fd(), POLLIN, 0}, {-1, POLLIN, 0}, {-1, POLLIN, 0}};
      if (session) fds[1].fd = session->poll_fd();
      if (upstream) fds[2].fd = upstream->poll_fd();
      int r = ::poll(fds, 3, 200);
      // Silence is judged only when nothing from the coordinator is waiting to be read: after a
      // long computation its pings are in the socket, not missing.
      if (session && session_pinged && fds[1].revents == 0 && options.coordinator_timeout_ms > 0 &&
          std::chrono::steady_clock::now() - session_heard >
              std::chrono::milliseconds(options.coordinator_timeout_ms)) {
        end_session("nothing heard from it for " +
                    std::to_string(options.coordinator_timeout_ms / 1000) + " s");
        continue;
      }
      if (r <= 0) continue;
      // Upstream first: it carries the forwards that keep the pipeline moving.
      if (upstream && fds[2].revents) serve(upstream, false);
      const bool session_had_data = session && fds[1].revents;
      if (session_had_data) serve(session, true);
      // A connection waits while the session still has frames to read: a coordinator that has
      // just said goodbye (releases, then shutdown) has freed this worker only once those frames
      // are read, and its successor must not be refused as "busy" for arriving in between.
      if (fds[0].revents && !session_had_data) accept_one();
    }
    if (session) send_error_quietly(*session, name() + " is shutting down");
    end_session("worker stopped");
    heartbeat_cv.notify_all();
    if (heartbeat.joinable()) heartbeat.join();
  }
};

Worker::Worker(const WorkerOptions& options) : impl_(std::make_unique<Impl>(options)) {
  impl_->listener = std::make_unique<TcpListener>(options.listen);
}

Worker::Worker(const WorkerOptions& options, std::unique_ptr<Connection> session,
               std::unique_ptr<Connection> upstream)
    : impl_(std::make_unique<Impl>(options)) {
  if (!session) throw Error("worker", "an attached worker needs a session connection");
  impl_->attached = true;
  impl_->session = std::move(session);
  impl_->upstream = std::move(upstream);
}

Worker::~Worker() = default;
std::string Worker::address() const {
  return impl_->listener ? impl_->listener->address() : std::string();
}
void Worker::run() { impl_->run(); }
void Worker::stop() { impl_->stopping.store(true); }

void run_mpi_worker(const WorkerOptions& options) {
  const int rank = mpi_rank();
  if (rank < 1) throw Error("worker", "rank 0 is the coordinator, not a worker");
  WorkerOptions o = options;
  if (o.name.empty()) o.name = "worker rank " + std::to_string(rank);
  auto session = mpi_connect(0, kMpiSessionTag);
  std::unique_ptr<Connection> upstream;
  if (rank > 1) upstream = mpi_connect(rank - 1, kMpiUpstreamTag);
  log::info("[worker] rank {} of {} (MPI thread level {})", rank, mpi_size(), mpi_thread_level());
  Worker worker(o, std::move(session), std::move(upstream));
  worker.run();
}

}  // namespace meshlm::remote
