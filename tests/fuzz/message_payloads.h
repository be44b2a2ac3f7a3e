// Every wire message decoder, by frame type, with the invariants a decoded message must keep:
// the encoders are canonical, so what decodes re-encodes to exactly the same bytes. Shared by
// fuzz_frame (behind a frame header) and fuzz_messages (bare payloads).
#pragma once

#include <algorithm>
#include <span>

#include "formats/weight_format.h"
#include "transport/collective.h"
#include "transport/messages.h"
#include "fuzz_common.h"

namespace meshlm::fuzz {

// Decodes `p` as the payload of a frame of `type`; throws meshlm::Error when it is malformed.
inline void decode_payload(transport::FrameType type, std::span<const uint8_t> p) {
  using namespace transport;
  switch (type) {
    case FrameType::Hello: require_same(encode_hello(decode_hello(p)), p); break;
    case FrameType::Challenge: require_same(encode_challenge(decode_challenge(p)), p); break;
    case FrameType::Auth: require_same(encode_auth(decode_auth(p)), p); break;
    case FrameType::Welcome: require_same(encode_node_info(decode_node_info(p)), p); break;
    case FrameType::Load: require_same(encode_load(decode_load(p)), p); break;
    case FrameType::Loaded: require_same(encode_loaded(decode_loaded(p)), p); break;
    case FrameType::ManifestRequest:
      require_same(encode_manifest_request(decode_manifest_request(p)), p);
      break;
    case FrameType::Manifest: {
      ManifestMsg m = decode_manifest(p);
      // Each entry's dtype is one sync carries and its bytes are what dtype and shape make.
      for (const auto& t : m.tensors)
        require(!t.name.empty() && stored_tensor_bytes(t.dtype, t.shape) == t.nbytes);
      require_same(encode_manifest(m), p);
      break;
    }
    case FrameType::TensorRequest: {
      TensorRequestMsg m = decode_tensor_request(p);
      require(!m.ranges.empty());
      require_same(encode_tensor_request(m), p);
      break;
    }
    case FrameType::TensorData: {
      std::span<const uint8_t> data;
      TensorDataHead h = decode_tensor_data(p, data);
      // The data is a non-empty view of the payload's tail, after a canonical head.
      require(!data.empty() && data.data() + data.size() == p.data() + p.size());
      auto head = encode_tensor_data_head(h);
      require(head.size() == kTensorDataHeadSize && head.size() + data.size() == p.size());
      require_same(head, p.first(head.size()));
      break;
    }
    case FrameType::Forward: {
      ForwardMsg m = decode_forward(p);
      int64_t total = 0;
      for (const auto& c : m.chunks) total += c.n_tokens;
      require(!m.chunks.empty() && total == static_cast<int64_t>(m.tokens.size()));
      require(m.hidden.size() == static_cast<size_t>(total * m.hidden_dim));
      require(m.new_sequences.size() <= m.chunks.size());
      // The head alone is what a transport sends before the activations.
      auto head = encode_forward_head(m);
      require_same(head, p.first(std::min(head.size(), p.size())));
      if (m.hidden_type == WeightType::F32) {
        require_same(encode_forward(m), p);
        require(head.size() + m.hidden.size() * sizeof(float) == p.size());
        break;
      }
      // --wire activations: finite (the decoder refuses others), so they encode again, to the
      // same size; bf16 and f16 to the same bytes (exact), q8_0 to blocks whose scale may be
      // chosen anew (a block need not use the full int8 range) that decode to about the same.
      {
        const auto again = encode_forward(m);
        require(again.size() == p.size());
        if (m.hidden_type != WeightType::Q8_0) require_same(again, p);
        require(decode_forward(again).hidden.size() == m.hidden.size());
      }
      break;
    }
    case FrameType::Result: require_same(encode_result(decode_result(p)), p); break;
    case FrameType::Release: require_same(encode_release(decode_release(p)), p); break;
    case FrameType::TensorsDone:
    case FrameType::Ping:
    case FrameType::Pong: require_same(encode_u64(decode_u64(p)), p); break;
    case FrameType::SyncRefused:
    case FrameType::Error: require_same(encode_text(decode_text(p)), p); break;
    case FrameType::Shutdown: break;  // no payload to read
    case FrameType::Collective: {
      // The head is canonical; the elements after it are data of the stated count.
      const CollectiveHead h = decode_collective_head(p);
      const auto head = encode_collective_head(h);
      require_same(head, p.first(kCollectiveHeadSize));
      break;
    }
  }
}

}  // namespace meshlm::fuzz
