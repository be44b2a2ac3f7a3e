// A runtime::Pipeline that runs the whole model as one tensor-parallel group
// (model/tensor_split.h): this process is member 0, `meshlm worker` processes are members
// 1..M-1. Every member holds its share of every layer's weights (KV heads, intermediate,
// vocabulary) and the members sum their partial results twice per layer (after attention and
// after the MLP) over a transport::Group, so that each reads 1/M of the weights per token.
//
// Topology: the coordinator holds a session connection to every worker (handshake role
// "coordinator": load, forwards, releases, heartbeats, shutdown) and the group is a full mesh of
// further connections (role "tp", client id "<rank>@<coordinator id>", authenticated with the
// cluster secret like every other link): member 0 connects to every worker, worker i to worker j
// for i < j. A micro-batch is sent (without activations) to every worker on its session, then
// member 0 runs its own member stage, which does the collectives and returns the full logits;
// member 0 samples. Depth 1: launch() completes the micro-batch before it returns.
//
// Hybrid layouts (--stages N --tp M): `ranges` splits the layers into N pipeline stages, each a
// group of M members. This process is member 0 of the first group; every later group is M
// workers. A micro-batch's head goes on the session to every member of rank >= 1 (as above);
// the coordinator runs its group's layers and sends the activations (in the --wire type) on the
// session of the next group's rank 0, which hands the rows to its members (an all_gather to
// which only it contributes, f32: every member starts from the same bits), runs its group's
// layers and passes them on to the next group's rank 0; the last group's rank 0 samples and
// returns the result on its session. Releases go to every worker on its session.
//
// Failure: a member that dies closes its group connections, a member that stalls makes the
// collectives time out (group_timeout_ms): the micro-batch fails with an error naming the
// group, and so does every later one (the group is broken; it is not re-formed: make a new
// pipeline). The workers end their sessions and can be used again.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/pipeline.h"

namespace meshlm::remote {

struct TpPipelineOptions {
  std::string model_dir;         // the coordinator's copy (member 0 and the fingerprint)
  std::string worker_model_dir;  // the path on the workers; "" = same as model_dir
  std::vector<std::string> peers;  // host:port of members 1..M-1 (TCP workers)
  // Hybrid layouts (above): one layer range per group, in pipeline order (empty: one group of
  // every layer), and for each group after the first the host:port of its M members, rank 0
  // first. Every group splits its layers by the same shares.
  model::LayerPartition ranges;
  std::vector<std::vector<std::string>> later_groups;
  // One share per member (this process first), > 0; empty = equal shares.
  std::vector<double> shares;
  model::StageOptions stage;  // member 0's options (tensor_parallel is set here); max_context
                              // also goes to the workers
  // --wire: the type the members' partial sums cross the links in (transport/tp_reducer.h):
  // F32 (exact), BF16, F16 or Q8_0.
  WeightType wire = WeightType::F32;
  std::string secret;
  int connect_timeout_ms = 5000;
  int load_timeout_ms = 300000;
  int group_timeout_ms = 60000;  // a collective that waits longer for a member fails
};

// Connects, forms the group and waits until every member has loaded its slice. Throws
// Error("pipeline", ...) naming the member that failed.
std::unique_ptr<runtime::Pipeline> make_tp_pipeline(const TpPipelineOptions& options);

}  // namespace meshlm::remote
