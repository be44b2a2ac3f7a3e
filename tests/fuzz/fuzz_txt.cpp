// libFuzzer target: DNS-SD TXT records of `_meshlm._tcp` services (discovery/discovery.h,
// node_record.h), which any host on the LAN can send. The input is the TXT rdata as it comes off
// the wire (RFC 6763: a length byte, then that many bytes, repeated), split the way the dns_sd
// backend does (avahi hands over the same strings), then parse_txt and parse_node_txt, which
// never throw: anything thrown is a crash. Parsed keys and values stay printable and bounded, and
// a parsed node record encodes again (node_txt / encode_txt) within the mDNS limits.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "discovery/discovery.h"
#include "discovery/node_record.h"
#include "fuzz_common.h"

using namespace meshlm::discovery;
using meshlm::fuzz::require;

namespace {

bool printable_ascii_key(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c > 0x7e || c == '=' || (c >= 'A' && c <= 'Z')) return false;
  return !s.empty();
}

bool no_controls(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<std::string> entries;
  for (size_t i = 0; i < size && entries.size() <= kMaxTxtEntries;) {
    size_t len = data[i++];
    if (len > size - i) break;
    if (len > 0) entries.emplace_back(reinterpret_cast<const char*>(data + i), len);
    i += len;
  }
  TxtRecords txt = parse_txt(entries);
  require(txt.size() <= kMaxTxtEntries);
  for (const auto& [k, v] : txt) {
    require(printable_ascii_key(k) && k.size() <= kMaxTxtEntryBytes);
    require(no_controls(v) && v.size() <= kMaxTxtEntryBytes);
  }
  NodeRecord r = parse_node_txt(txt);
  for (const std::string* s : {&r.id, &r.version, &r.backend})
    require(no_controls(*s) && s->size() <= kMaxRecordText);
  // What a worker would announce from this record fits the limits of one mDNS packet.
  auto again = encode_txt(node_txt(r));
  TxtRecords back = parse_txt(again);
  NodeRecord r2 = parse_node_txt(back);
  require(r2.id == r.id && r2.version == r.version && r2.backend == r.backend);
  require(r2.proto == r.proto && r2.mem == r.mem && r2.mem_total == r.mem_total &&
          r2.cores == r.cores);
  // The free-standing helpers on the raw bytes.
  std::string_view raw(reinterpret_cast<const char*>(data), size);
  std::string p = printable(raw, 63);
  require(p.size() <= 63 && no_controls(p));
  if (parse_u64(raw))
    for (char c : raw) require(c >= '0' && c <= '9');
  return 0;
}
