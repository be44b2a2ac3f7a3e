// LAN discovery of meshlm workers by DNS-SD over multicast DNS (RFC 6762/6763), service type
// `_meshlm._tcp`. A worker publishes itself with an Advertiser; a coordinator (or `meshlm cluster
// status`) watches the LAN with a Browser and gets each worker's address, port and TXT records.
//
// The API is backend-neutral on purpose: std types only, no mDNS library in sight. Linux uses
// avahi-core (the mDNS stack embedded in this process, no avahi-daemon needed: avahi_backend.cpp);
// builds without it (or -DMESHLM_WITH_DISCOVERY=OFF) get stub_backend.cpp, where
// discovery_available() is false and starting anything throws. A macOS backend over <dns_sd.h>
// (DNSServiceRegister / DNSServiceBrowse / DNSServiceResolve) would be a third file with the
// same Impl structs; nothing here would change.
//
// Everything received from the network is untrusted: names and TXT values are length-bounded and
// stripped of control characters, and parse_txt() never throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::discovery {

inline constexpr const char* kServiceType = "_meshlm._tcp";
inline constexpr size_t kMaxInstanceBytes = 63;   // DNS label limit for the instance name
inline constexpr size_t kMaxTxtEntryBytes = 255;  // one "key=value" string (length-prefixed)
inline constexpr size_t kMaxTxtBytes = 1300;      // all entries: fits one mDNS packet
inline constexpr size_t kMaxTxtEntries = 64;      // parse_txt() ignores entries past this

using TxtRecords = std::map<std::string, std::string>;

struct Service {
  std::string instance;  // e.g. "meshlm@node7:7070"; unique on the LAN (renamed on collision)
  std::string host;      // mDNS host name, e.g. "node7.local"
  std::string address;   // numeric IP address (IPv6 link-local with "%interface")
  uint16_t port = 0;
  TxtRecords txt;
};

// ---- TXT records (RFC 6763 section 6), shared by every backend ----

// "key=value" strings in key order. Throws Error("discovery", ...) for an empty key, a key with
// '=' or characters outside printable ASCII, an entry over kMaxTxtEntryBytes, or a total over
// kMaxTxtBytes.
std::vector<std::string> encode_txt(const TxtRecords& txt);
// The reverse, for strings off the network: splits at the first '=' (values may contain '='),
// keys lower-cased, the first of duplicate keys wins, "key" without '=' gives an empty value,
// entries with an empty or non-printable key and entries past kMaxTxtEntries are dropped, values
// are cleaned with printable(). Never throws.
TxtRecords parse_txt(const std::vector<std::string>& entries);

// Untrusted text made safe to print: control bytes replaced by '?', cut to max_bytes (at a UTF-8
// character boundary).
std::string printable(std::string_view text, size_t max_bytes);
// A decimal number without sign or spaces that fits in uint64_t; nullopt for anything else.
std::optional<uint64_t> parse_u64(std::string_view text);

// "meshlm@<hostname>:<port>", the host name shortened so the whole fits kMaxInstanceBytes.
std::string default_instance_name(uint16_t port);

// ---- the mDNS backend ----

// False when this build has no mDNS backend (the stub).
bool discovery_available();

// Publishes one service until stop() or destruction (which send mDNS goodbye packets, so
// browsers see the service leave at once instead of when its records expire).
class Advertiser {
 public:
  Advertiser();
  ~Advertiser();
  Advertiser(const Advertiser&) = delete;
  Advertiser& operator=(const Advertiser&) = delete;

  // Publishes `instance` of kServiceType on `port` with `txt`. `listen_host` is the address the
  // service listens on: "" / "0.0.0.0" / "::" publish on every interface, a specific address only
  // on the interface that holds it (so browsers resolve an address that answers). If another
  // host already uses the instance name, the name becomes "<instance> #2" and so on (instance()
  // says the current one). Returns at once; announcing takes about a second. Throws
  // Error("discovery", ...) when the mDNS stack cannot start or the arguments are invalid.
  void start(const std::string& instance, uint16_t port, const TxtRecords& txt,
             const std::string& listen_host = "");
  void stop();
  std::string instance() const;
  bool established() const;  // announced on the network, no collision pending

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct BrowserEvent {
  enum class Kind { kAdded, kUpdated, kRemoved };
  Kind kind;
  Service service;  // for kRemoved: the last known state
};
// Called on the discovery thread. It may call Browser::snapshot() but must not destroy the
// Browser, and should return quickly (hand work to another thread to re-plan).
using BrowserCallback = std::function<void(const BrowserEvent&)>;

// Watches the LAN for kServiceType from construction to destruction; a service appears once it
// is resolved (address, port, TXT) and disappears on its goodbye or when its records expire.
// Throws Error("discovery", ...) when the mDNS stack cannot start.
class Browser {
 public:
  explicit Browser(BrowserCallback callback = {});
  ~Browser();
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  std::vector<Service> snapshot() const;  // sorted by instance name

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Browses for `duration`, then returns what was found.
std::vector<Service> browse_for(std::chrono::milliseconds duration);

}  // namespace meshlm::discovery
