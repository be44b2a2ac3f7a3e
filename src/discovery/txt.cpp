// TXT record encoding and parsing, instance names, node records: the backend-neutral half of
// discovery (see discovery.h, node_record.h).
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <climits>
#include <thread>

#include "core/error.h"
#include "core/hex.h"
#include "discovery/discovery.h"
#include "discovery/node_record.h"

namespace meshlm::discovery {
namespace {

bool is_key_char(unsigned char c) {
  return c >= 0x20 && c <= 0x7e && c != '=';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return out;
}

}  // namespace

std::vector<std::string> encode_txt(const TxtRecords& txt) {
  std::vector<std::string> out;
  size_t total = 0;
  for (const auto& [key, value] : txt) {
    if (key.empty()) throw Error("discovery", "TXT record with an empty key");
    if (!std::all_of(key.begin(), key.end(), [](char c) { return is_key_char(c); }))
      throw Error("discovery",
                  "TXT key '" + printable(key, 64) + "' must be printable ASCII without '='");
    std::string entry = key + "=" + value;
    if (entry.size() > kMaxTxtEntryBytes)
      throw Error("discovery", "TXT record '" + key + "' is " + std::to_string(entry.size()) +
                                   " bytes (at most " + std::to_string(kMaxTxtEntryBytes) + ")");
    total += entry.size() + 1;  // length byte
    out.push_back(std::move(entry));
  }
  if (total > kMaxTxtBytes)
    throw Error("discovery", "TXT records total " + std::to_string(total) + " bytes (at most " +
                                 std::to_string(kMaxTxtBytes) + ")");
  return out;
}

TxtRecords parse_txt(const std::vector<std::string>& entries) {
  TxtRecords out;
  size_t n = 0;
  for (const std::string& entry : entries) {
    if (n++ >= kMaxTxtEntries) break;
    if (entry.empty() || entry.size() > kMaxTxtEntryBytes) continue;
    size_t eq = entry.find('=');
    std::string_view key = std::string_view(entry).substr(0, eq);
    if (key.empty()) continue;
    if (!std::all_of(key.begin(), key.end(), [](char c) { return is_key_char(c); })) continue;
    std::string value =
        eq == std::string::npos ? "" : printable(std::string_view(entry).substr(eq + 1), 255);
    out.emplace(lower(key), std::move(value));  // emplace keeps the first of duplicates
  }
  return out;
}

std::string printable(std::string_view text, size_t max_bytes) {
  if (text.size() > max_bytes) {
    size_t cut = max_bytes;
    // Do not split a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
    text = text.substr(0, cut);
  }
  std::string out(text);
  for (char& c : out) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

std::optional<uint64_t> parse_u64(std::string_view text) {
  if (text.empty() || text.size() > 20) return std::nullopt;
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string default_instance_name(uint16_t port) {
  std::array<char, HOST_NAME_MAX + 1> buf{};
  std::string host = "host";
  if (::gethostname(buf.data(), buf.size() - 1) == 0 && buf[0] != '\0') host = buf.data();
  host = host.substr(0, host.find('.'));  // the first label is enough to read
  std::string prefix = "meshlm@";
  std::string suffix = ":" + std::to_string(port);
  size_t room = kMaxInstanceBytes - prefix.size() - suffix.size();
  return prefix + printable(host, room) + suffix;
}

// ---- node records ----

TxtRecords node_txt(const NodeRecord& r) {
  TxtRecords txt{{"txtvers", "1"}, {"id", r.id}, {"version", r.version}, {"backend", r.backend}};
  if (r.proto) txt["proto"] = std::to_string(*r.proto);
  if (r.mem) txt["mem"] = std::to_string(*r.mem);
  if (r.mem_total) txt["memtotal"] = std::to_string(*r.mem_total);
  if (r.cores) txt["cores"] = std::to_string(*r.cores);
  return txt;
}

NodeRecord parse_node_txt(const TxtRecords& txt) {
  NodeRecord r;
  auto text = [&](const char* key) {
    auto it = txt.find(key);
    return it == txt.end() ? std::string() : printable(it->second, kMaxRecordText);
  };
  auto number = [&](const char* key) -> std::optional<uint64_t> {
    auto it = txt.find(key);
    return it == txt.end() ? std::nullopt : parse_u64(it->second);
  };
  r.id = text("id");
  r.version = text("version");
  r.backend = text("backend");
  r.mem = number("mem");
  r.mem_total = number("memtotal");
  if (auto v = number("proto"); v && *v <= UINT32_MAX) r.proto = uint32_t(*v);
  if (auto v = number("cores"); v && *v <= 1u << 20) r.cores = uint32_t(*v);
  return r;
}

std::string random_node_id() {
  return random_hex(8);
}

// Backend-neutral: whichever backend provides Browser (the stub's throws "not built in").
std::vector<Service> browse_for(std::chrono::milliseconds duration) {
  Browser browser;
  std::this_thread::sleep_for(duration);
  return browser.snapshot();
}

}  // namespace meshlm::discovery
