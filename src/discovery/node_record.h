// What a worker says about itself in its `_meshlm._tcp` TXT records, and the robust reading of
// them on the other side. Keys: txtvers, id, version, proto, mem (available bytes), memtotal,
// cores, backend. Never the cluster secret: a coordinator learns nothing here it could not
// learn by connecting, and still authenticates every worker it uses.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "discovery/discovery.h"

namespace meshlm::discovery {

inline constexpr size_t kMaxRecordText = 64;  // bytes kept of each string field on parse

struct NodeRecord {
  std::string id;                     // random per worker process, stable while it runs
  std::string version;                // meshlm version
  std::optional<uint32_t> proto;      // wire protocol version (transport::kProtocolVersion)
  std::optional<uint64_t> mem;        // available memory, bytes
  std::optional<uint64_t> mem_total;  // bytes
  std::optional<uint32_t> cores;
  std::string backend;  // e.g. "cpu/AVX2"
};

TxtRecords node_txt(const NodeRecord& record);
// Fields that are missing or malformed (non-numeric mem, proto past 2^32, ...) stay empty /
// nullopt; strings are cleaned with printable(). Never throws.
NodeRecord parse_node_txt(const TxtRecords& txt);

// 16 random hex digits (core/hex.h random_hex).
std::string random_node_id();

}  // namespace meshlm::discovery
