// Discovery over <dns_sd.h>: the client API of the system's mDNS responder. On macOS that is
// mDNSResponder (libSystem, nothing to link); on Linux the same API comes from
// libavahi-compat-libdns_sd, a client of avahi-daemon over D-Bus. Either way the daemon owns the
// multicast socket, the host name and its addresses; this process only asks it to register,
// browse, resolve and look up records.
//
// Every DNSServiceRef has a socket; a Loop (one thread per Advertiser or Browser) polls those
// sockets and calls DNSServiceProcessResult, which runs the callbacks. All dns_sd calls happen on
// that thread (dns_sd refs are not thread-safe): public methods hand work to it with Loop::call.
//
// The address of a resolved service is looked up with DNSServiceQueryRecord (A and AAAA of the
// SRV target) rather than DNSServiceGetAddrInfo, which avahi's compatibility library lacks; TXT
// records are built and split by hand (length-prefixed strings, RFC 6763 6) so that untrusted
// bytes are bounded here, not in a library.
#include <arpa/inet.h>
#include <dns_sd.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "discovery/discovery.h"

namespace meshlm::discovery {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kDomain = "local.";
constexpr int kMaxRenames = 32;                        // collisions handled before giving up
constexpr auto kRetryDelay = std::chrono::seconds(2);  // after the daemon went away
constexpr DNSServiceErrorType kErrServiceNotRunning = -65563;  // Apple only
constexpr DNSServiceErrorType kErrDefunctConnection = -65569;  // Apple only
constexpr size_t kMaxHostBytes = 255;
// A service whose host has only answered with IPv6 so far is shown after this long without an
// IPv4 answer (which usually follows within milliseconds): browsers then see it once, with the
// IPv4 address, rather than with a link-local IPv6 one and an update right after.
constexpr auto kIpv4Grace = std::chrono::milliseconds(300);

// Apple's header defines _DNS_SD_H to its version number; avahi's defines it empty. Only the
// native mDNSResponder takes kDNSServiceFlagsNoAutoRename (avahi's library refuses any flag and
// renames by itself, to the same "NAME #2" as here).
#define MESHLM_DNSSD_VERSION_OR_ZERO (_DNS_SD_H + 0)
constexpr bool kNativeMdnsResponder = MESHLM_DNSSD_VERSION_OR_ZERO > 0;

std::string error_text(DNSServiceErrorType code) {
  static constexpr std::pair<DNSServiceErrorType, const char*> kNames[] = {
      {kDNSServiceErr_Unknown, "unknown error"},
      {kDNSServiceErr_NoSuchName, "no such name"},
      {kDNSServiceErr_NoMemory, "out of memory"},
      {kDNSServiceErr_BadParam, "bad parameter"},
      {kDNSServiceErr_BadState, "bad state"},
      {kDNSServiceErr_BadFlags, "bad flags"},
      {kDNSServiceErr_Unsupported, "unsupported"},
      {kDNSServiceErr_NameConflict, "name conflict"},
      {kDNSServiceErr_Invalid, "invalid"},
      {kDNSServiceErr_Incompatible, "client library incompatible with the daemon"},
      {kDNSServiceErr_BadInterfaceIndex, "bad interface index"},
      {kDNSServiceErr_Refused, "refused"},
      {kErrServiceNotRunning, "service not running"},
      {kErrDefunctConnection, "connection to the daemon lost"},
  };
  const char* name = "error";
  for (const auto& [c, n] : kNames)
    if (c == code) name = n;
  return std::string(name) + " (" + std::to_string(code) + ")";
}

// The daemon is absent or went away (as opposed to a bad argument).
bool daemon_gone(DNSServiceErrorType code) {
  return code == kDNSServiceErr_Unknown || code == kErrServiceNotRunning ||
         code == kErrDefunctConnection;
}

Error dnssd_error(const std::string& what, DNSServiceErrorType code) {
  if (daemon_gone(code))
    return Error("discovery",
                 what + ": mDNSResponder / avahi-daemon not reachable (" + error_text(code) + ")");
  return Error("discovery", what + ": " + error_text(code));
}

// ---- the event loop ----

// One thread polling the sockets of its DNSServiceRefs (plus a wake-up pipe for tasks and stop).
class Loop {
 public:
  using FailureHandler = std::function<void(DNSServiceErrorType)>;

  Loop() {
    if (pipe(wake_) != 0) throw Error("discovery", "cannot create a pipe: " + errno_text());
    for (int fd : wake_) {
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
      fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    thread_ = std::thread([this] { run(); });
  }
  ~Loop() {
    call([this] { stopping_ = true; });
    thread_.join();
    close(wake_[0]);
    close(wake_[1]);
  }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;

  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  // Runs `fn` on the loop thread and waits for it; its exception is rethrown here.
  template <typename F>
  auto call(F&& fn) -> decltype(fn()) {
    if (on_loop_thread()) return fn();
    std::packaged_task<decltype(fn())()> task(std::forward<F>(fn));
    auto result = task.get_future();
    post([&task] { task(); });
    return result.get();
  }

  // Queues `fn` for the loop thread (after the callback running now, when called from one).
  void post(std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      tasks_.push_back(std::move(fn));
    }
    char byte = 1;
    [[maybe_unused]] ssize_t n = write(wake_[1], &byte, 1);  // a full pipe is awake anyway
  }

  // Loop thread only. Watches `ref`'s socket; `on_failure` runs when processing fails (the
  // daemon went away), after which the ref is no longer polled.
  uint64_t watch(DNSServiceRef ref, FailureHandler on_failure) {
    uint64_t id = ++next_id_;
    watches_.emplace(id, Watch{ref, std::move(on_failure), false});
    return id;
  }
  void unwatch(uint64_t id) { watches_.erase(id); }

  // Loop thread only: runs `fn` on the loop thread after `delay`.
  void after(Clock::duration delay, std::function<void()> fn) {
    timers_.emplace(Clock::now() + delay, std::move(fn));
  }

 private:
  struct Watch {
    DNSServiceRef ref;
    FailureHandler on_failure;
    bool failed;
  };

  static std::string errno_text() { return std::strerror(errno); }

  void run_tasks() {
    std::deque<std::function<void()>> tasks;
    {
      std::lock_guard lock(mu_);
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) run_guarded(task);
  }

  static void run_guarded(const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      log::warn("[discovery] {}", e.what());
    }
  }

  void run() {
    std::vector<pollfd> fds;
    std::vector<uint64_t> ids;
    while (!stopping_) {
      fds.assign(1, pollfd{wake_[0], POLLIN, 0});
      ids.assign(1, 0);
      for (const auto& [id, w] : watches_) {
        if (w.failed) continue;
        fds.push_back(pollfd{DNSServiceRefSockFD(w.ref), POLLIN, 0});
        ids.push_back(id);
      }
      int timeout_ms = -1;
      if (!timers_.empty()) {
        auto wait = timers_.begin()->first - Clock::now();
        timeout_ms =
            int(std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count()));
      }
      if (poll(fds.data(), nfds_t(fds.size()), timeout_ms) < 0 && errno != EINTR) {
        log::warn("[discovery] poll failed: {}", errno_text());
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      if (fds[0].revents) {
        char buf[64];
        while (read(wake_[0], buf, sizeof buf) > 0) {
        }
      }
      run_tasks();
      if (stopping_) break;
      while (!timers_.empty() && timers_.begin()->first <= Clock::now()) {
        auto fn = std::move(timers_.begin()->second);
        timers_.erase(timers_.begin());
        run_guarded(fn);
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLERR | POLLHUP))) continue;
        // A callback may have released this ref (or others): only refs still watched are
        // processed (ids are never reused, so a new ref at the same address is not mistaken
        // for this one, and DNSServiceProcessResult never blocks on a socket with no data).
        auto it = watches_.find(ids[i]);
        if (it == watches_.end() || it->second.failed) continue;
        DNSServiceErrorType err = DNSServiceProcessResult(it->second.ref);
        if (err == kDNSServiceErr_NoError) continue;
        it = watches_.find(ids[i]);
        if (it == watches_.end()) continue;
        it->second.failed = true;
        FailureHandler handler = it->second.on_failure;
        if (handler) run_guarded([&] { handler(err); });
      }
    }
  }

  int wake_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::deque<std::function<void()>> tasks_;  // guarded by mu_
  // Loop thread only:
  bool stopping_ = false;
  uint64_t next_id_ = 0;
  std::map<uint64_t, Watch> watches_;
  std::multimap<Clock::time_point, std::function<void()>> timers_;
};

// A DNSServiceRef watched by a Loop; deallocated (which ends the operation: a registration's
// goodbye packets, a browse, a query) on reset or destruction. Loop thread only.
class Ref {
 public:
  Ref() = default;
  ~Ref() { reset(); }
  Ref(const Ref&) = delete;
  Ref& operator=(const Ref&) = delete;

  void adopt(Loop* loop, DNSServiceRef ref, Loop::FailureHandler on_failure) {
    reset();
    loop_ = loop;
    ref_ = ref;
    id_ = loop->watch(ref, std::move(on_failure));
  }
  void swap(Ref& other) {
    std::swap(loop_, other.loop_);
    std::swap(ref_, other.ref_);
    std::swap(id_, other.id_);
  }
  // Stops polling the ref but keeps it (deallocated on reset or destruction).
  void detach() {
    if (ref_) loop_->unwatch(id_);
  }
  void reset() {
    if (!ref_) return;
    loop_->unwatch(id_);
    DNSServiceRefDeallocate(ref_);
    ref_ = nullptr;
  }
  explicit operator bool() const { return ref_ != nullptr; }

 private:
  Loop* loop_ = nullptr;
  DNSServiceRef ref_ = nullptr;
  uint64_t id_ = 0;
};

// The interface to register on for a service listening on `host` (0: every interface).
uint32_t publish_interface(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  if (host.empty() || host == "0.0.0.0" || host == "::") return kDNSServiceInterfaceIndexAny;
  bool is_v4 = inet_pton(AF_INET, host.c_str(), &v4) == 1;
  bool is_v6 = !is_v4 && inet_pton(AF_INET6, host.c_str(), &v6) == 1;
  if (!is_v4 && !is_v6) return kDNSServiceInterfaceIndexAny;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return kDNSServiceInterfaceIndexAny;
  uint32_t index = kDNSServiceInterfaceIndexAny;
  for (ifaddrs* a = list; a && index == kDNSServiceInterfaceIndexAny; a = a->ifa_next) {
    if (!a->ifa_addr || !a->ifa_name) continue;
    if (is_v4 && a->ifa_addr->sa_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr == v4.s_addr)
      index = if_nametoindex(a->ifa_name);
    if (is_v6 && a->ifa_addr->sa_family == AF_INET6 &&
        std::memcmp(&reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, &v6, sizeof v6) == 0)
      index = if_nametoindex(a->ifa_name);
  }
  freeifaddrs(list);
  return index;
}

// "NAME" -> "NAME #2", "NAME #2" -> "NAME #3" (the names avahi picks), cut to kMaxInstanceBytes.
std::string alternative_name(const std::string& name) {
  std::string base = name;
  uint64_t n = 2;
  size_t hash = name.rfind(" #");
  if (hash != std::string::npos) {
    if (auto k = parse_u64(std::string_view(name).substr(hash + 2)); k && *k >= 2 && *k < 1000000) {
      base = name.substr(0, hash);
      n = *k + 1;
    }
  }
  std::string suffix = " #" + std::to_string(n);
  if (base.size() + suffix.size() > kMaxInstanceBytes)
    base = printable(base, kMaxInstanceBytes - suffix.size());  // cut at a character boundary
  return base + suffix;
}

// TXT rdata: each entry as a length byte and its bytes (encode_txt() bounded them already).
std::string txt_rdata(const std::vector<std::string>& entries) {
  std::string out;
  for (const std::string& e : entries) {
    out.push_back(char(uint8_t(e.size())));
    out += e;
  }
  return out;
}

// The reverse for untrusted rdata: stops at a truncated entry, skips empty ones.
std::vector<std::string> split_txt(const unsigned char* data, size_t size) {
  std::vector<std::string> entries;
  size_t i = 0;
  while (data && i < size && entries.size() <= kMaxTxtEntries) {
    size_t len = data[i++];
    if (len > size - i) break;
    if (len > 0) entries.emplace_back(reinterpret_cast<const char*>(data + i), len);
    i += len;
  }
  return entries;
}

// "node7.local." -> "node7.local", made printable.
std::string host_text(const char* target) {
  std::string host = printable(target ? target : "", kMaxHostBytes);
  if (!host.empty() && host.back() == '.') host.pop_back();
  return host;
}

}  // namespace

bool discovery_available() {
  return true;
}

// ---- Advertiser ----

struct Advertiser::Impl {
  std::unique_ptr<Loop> loop;  // created on start
  // Loop thread:
  Ref registration;
  std::string name;  // the name being registered
  uint16_t port = 0;
  std::string txt;
  uint32_t interface = kDNSServiceInterfaceIndexAny;
  int renames = 0;
  uint64_t generation = 0;  // bumped by stop(): retries of an earlier start are dropped
  bool retry_logged = false;
  // Any thread:
  std::atomic<bool> established{false};
  mutable std::mutex name_mu;
  std::string shown_name;

  void show_name(const std::string& n) {
    std::lock_guard lock(name_mu);
    shown_name = n;
  }

  // Loop thread. Registers `name`; a conflict reported at once (another service of this host)
  // is handled by renaming.
  DNSServiceErrorType publish() {
    for (;;) {
      DNSServiceRef ref = nullptr;
      DNSServiceFlags flags =
          kNativeMdnsResponder ? DNSServiceFlags(kDNSServiceFlagsNoAutoRename) : DNSServiceFlags(0);
      DNSServiceErrorType err = DNSServiceRegister(
          &ref, flags, interface, name.c_str(), kServiceType, kDomain, nullptr, htons(port),
          uint16_t(txt.size()), txt.empty() ? nullptr : txt.data(), on_register, this);
      if (err == kDNSServiceErr_NameConflict && rename()) continue;
      if (err != kDNSServiceErr_NoError) return err;
      uint64_t gen = generation;
      registration.adopt(loop.get(), ref, [this, gen](DNSServiceErrorType e) {
        loop->post([this, gen, e] {
          if (gen == generation) lost(e);
        });
      });
      return err;
    }
  }

  bool rename() {
    if (++renames > kMaxRenames) {
      log::warn("[discovery] giving up on '{}' after {} name collisions", name, kMaxRenames);
      return false;
    }
    std::string next = alternative_name(name);
    log::info("[discovery] service name '{}' is taken on the LAN; using '{}'", name, next);
    name = next;
    show_name(name);
    return true;
  }

  // Loop thread: the registration failed or the daemon went away. Registers again later.
  void lost(DNSServiceErrorType err) {
    established.store(false);
    registration.reset();
    if (!retry_logged)
      log::warn("[discovery] advertising '{}' stopped: {}; retrying every {} s", name,
                error_text(err), std::chrono::seconds(kRetryDelay).count());
    retry_logged = true;
    schedule_retry();
  }

  void schedule_retry() {
    uint64_t gen = generation;
    loop->after(kRetryDelay, [this, gen] {
      if (gen != generation || registration) return;
      DNSServiceErrorType err = publish();
      if (err == kDNSServiceErr_NoError) return;
      log::debug("[discovery] cannot advertise '{}' yet: {}", name, error_text(err));
      schedule_retry();
    });
  }

  static void DNSSD_API on_register(DNSServiceRef, DNSServiceFlags flags, DNSServiceErrorType err,
                                    const char* registered, const char*, const char*,
                                    void* context) {
    auto* self = static_cast<Impl*>(context);
    if (err == kDNSServiceErr_NoError) {
      if (registered && *registered) {
        std::string n = printable(registered, kMaxInstanceBytes);
        if (n != self->name)
          log::info("[discovery] service name '{}' is taken on the LAN; using '{}'", self->name, n);
        self->name = n;
        self->show_name(n);
      }
      // mDNSResponder flags an established name with Add (and a withdrawn one without);
      // avahi's library reports establishment only, with no flags.
      bool up = !kNativeMdnsResponder || (flags & kDNSServiceFlagsAdd);
      self->established.store(up);
      self->retry_logged = false;
      if (up)
        log::info("[discovery] advertising '{}' ({}, port {})", self->name, kServiceType,
                  self->port);
      return;
    }
    self->established.store(false);
    uint64_t gen = self->generation;
    if (err == kDNSServiceErr_NameConflict) {
      // Another host holds the name: register again under the next one (not from inside the
      // callback of the ref being replaced).
      self->loop->post([self, gen] {
        if (gen != self->generation) return;
        self->registration.reset();
        if (!self->rename()) return;
        DNSServiceErrorType e = self->publish();
        if (e != kDNSServiceErr_NoError) self->lost(e);
      });
      return;
    }
    self->loop->post([self, gen, err] {
      if (gen == self->generation) self->lost(err);
    });
  }

  void stop() {
    if (!loop) return;
    loop->call([this] {
      ++generation;
      registration.reset();  // the daemon sends the goodbye packets
    });
    established.store(false);
  }
};

Advertiser::Advertiser() : impl_(std::make_unique<Impl>()) {}

Advertiser::~Advertiser() {
  try {
    impl_->stop();
  } catch (const std::exception& e) {
    log::warn("[discovery] {}", e.what());
  }
  impl_->loop.reset();
}

void Advertiser::start(const std::string& instance, uint16_t port, const TxtRecords& txt,
                       const std::string& listen_host) {
  if (instance.empty() || instance.size() > kMaxInstanceBytes)
    throw Error("discovery", "instance name must be 1 to " + std::to_string(kMaxInstanceBytes) +
                                 " bytes: '" + printable(instance, 80) + "'");
  if (port == 0) throw Error("discovery", "cannot advertise port 0");
  std::string rdata = txt_rdata(encode_txt(txt));
  uint32_t interface = publish_interface(listen_host);
  impl_->stop();
  Impl& m = *impl_;
  if (!m.loop) m.loop = std::make_unique<Loop>();
  m.show_name(instance);
  DNSServiceErrorType err = m.loop->call([&] {
    m.name = instance;
    m.port = port;
    m.txt = std::move(rdata);
    m.interface = interface;
    m.renames = 0;
    m.retry_logged = false;
    return m.publish();
  });
  if (err != kDNSServiceErr_NoError)
    throw dnssd_error("cannot advertise '" + printable(instance, kMaxInstanceBytes) + "'", err);
}

void Advertiser::stop() {
  impl_->stop();
}

std::string Advertiser::instance() const {
  std::lock_guard lock(impl_->name_mu);
  return impl_->shown_name;
}

bool Advertiser::established() const {
  return impl_->established.load();
}

// ---- Browser ----

struct Browser::Impl {
  // A service seen on one interface: resolved there (host, port, TXT), then its host's A and
  // AAAA records looked up there. The service shown is the best resolved sighting (IPv4 first).
  struct Sighting {
    Impl* owner = nullptr;
    uint64_t serial = 0;  // tells this sighting from a later one under the same key
    uint32_t interface = 0;
    std::string name, type, domain;  // as received (name is the key; instance its printable())
    int adds = 0;                    // avahi reports a service once per IP protocol
    Ref resolver, query_a, query_aaaa;
    bool resolved = false;
    std::string target;  // SRV target, as received
    uint16_t port = 0;
    TxtRecords txt;
    std::vector<std::string> v4, v6;  // addresses of the target, oldest first
    bool ipv6_will_do = false;        // kIpv4Grace has passed since the lookups started

    std::optional<Service> service() const {
      if (!resolved || port == 0 || (v4.empty() && (v6.empty() || !ipv6_will_do)))
        return std::nullopt;
      Service s;
      s.instance = printable(name, kMaxInstanceBytes);
      s.host = host_text(target.c_str());
      s.address = v4.empty() ? v6.front() : v4.front();
      s.port = port;
      s.txt = txt;
      return s;
    }
  };
  using Key = std::pair<uint32_t, std::string>;

  BrowserCallback callback;
  std::unique_ptr<Loop> loop;
  // Loop thread:
  Ref browse;
  std::map<Key, std::unique_ptr<Sighting>> sightings;
  uint64_t next_serial = 0;
  bool retry_logged = false;
  bool closing = false;
  // Any thread:
  mutable std::mutex mu;
  std::map<std::string, Service> visible;  // by received name; guarded by mu

  // Loop thread. Re-derives the shown service for `name` and reports the change.
  void refresh(const std::string& name) {
    std::optional<Service> best;
    for (const auto& [key, s] : sightings) {
      if (key.second != name) continue;
      std::optional<Service> svc = s->service();
      if (svc && (!best || (!s->v4.empty() && best->address.find(':') != std::string::npos)))
        best = std::move(svc);
    }
    std::optional<BrowserEvent> event;
    {
      std::lock_guard lock(mu);
      auto it = visible.find(name);
      if (!best && it != visible.end()) {
        event = BrowserEvent{BrowserEvent::Kind::kRemoved, it->second};
        visible.erase(it);
      } else if (best && it == visible.end()) {
        visible.emplace(name, *best);
        event = BrowserEvent{BrowserEvent::Kind::kAdded, *best};
      } else if (best) {
        const Service& a = it->second;
        if (a.host != best->host || a.address != best->address || a.port != best->port ||
            a.txt != best->txt) {
          it->second = *best;
          event = BrowserEvent{BrowserEvent::Kind::kUpdated, *best};
        }
      }
    }
    if (!event || closing) return;
    log::debug("[discovery] {} '{}' {}:{}",
               event->kind == BrowserEvent::Kind::kRemoved ? "lost" : "found",
               event->service.instance, event->service.address, event->service.port);
    if (!callback) return;
    try {
      callback(*event);
    } catch (const std::exception& e) {
      log::warn("[discovery] browser callback failed: {}", e.what());
    }
  }

  DNSServiceErrorType start_browse() {
    DNSServiceRef ref = nullptr;
    DNSServiceErrorType err = DNSServiceBrowse(&ref, 0, kDNSServiceInterfaceIndexAny, kServiceType,
                                               kDomain, on_browse, this);
    if (err != kDNSServiceErr_NoError) return err;
    browse.adopt(loop.get(), ref, [this](DNSServiceErrorType e) { lost(e); });
    return err;
  }

  // Loop thread: browsing failed (the daemon went away), as reported by any of the refs. What
  // was seen is gone with it; browse again later. No ref is processed after this: avahi's
  // libdns_sd was seen to crash (a call through a stale pointer in libavahi-client) when each
  // of many refs went on to process the disconnect. They are released on the next loop turn
  // (not inside the callback of one of them).
  void lost(DNSServiceErrorType err) {
    if (!browse) return;  // already handled
    if (!retry_logged)
      log::warn("[discovery] browsing for {} stopped: {}; retrying every {} s", kServiceType,
                error_text(err), std::chrono::seconds(kRetryDelay).count());
    retry_logged = true;
    auto dead = std::make_shared<std::vector<std::unique_ptr<Sighting>>>();
    auto dead_browse = std::make_shared<Ref>();
    browse.detach();
    dead_browse->swap(browse);
    std::vector<std::string> names;
    for (auto& [key, s] : sightings) {
      names.push_back(key.second);
      s->resolver.detach();
      s->query_a.detach();
      s->query_aaaa.detach();
      dead->push_back(std::move(s));
    }
    sightings.clear();
    loop->post([dead, dead_browse] {});  // deallocated when this task is dropped
    for (const std::string& n : names) refresh(n);
    schedule_retry();
  }

  void schedule_retry() {
    loop->after(kRetryDelay, [this] {
      if (browse || closing) return;
      DNSServiceErrorType err = start_browse();
      if (err == kDNSServiceErr_NoError) {
        log::info("[discovery] browsing for {} again", kServiceType);
        retry_logged = false;
        return;
      }
      schedule_retry();
    });
  }

  static void DNSSD_API on_browse(DNSServiceRef, DNSServiceFlags flags, uint32_t interface,
                                  DNSServiceErrorType err, const char* name, const char* type,
                                  const char* domain, void* context) {
    auto* self = static_cast<Impl*>(context);
    if (err != kDNSServiceErr_NoError) {
      self->lost(err);
      return;
    }
    if (!name || !type || !domain) return;
    Key key{interface, name};
    auto it = self->sightings.find(key);
    if (flags & kDNSServiceFlagsAdd) {
      if (it != self->sightings.end()) {
        ++it->second->adds;
        return;
      }
      auto s = std::make_unique<Sighting>();
      s->owner = self;
      s->serial = ++self->next_serial;
      s->interface = interface;
      s->name = name;
      s->type = type;
      s->domain = domain;
      s->adds = 1;
      // The resolve stays open and reports changes (new TXT, port) until the service goes.
      DNSServiceRef ref = nullptr;
      DNSServiceErrorType e =
          DNSServiceResolve(&ref, 0, interface, name, type, domain, on_resolved, s.get());
      if (e != kDNSServiceErr_NoError) {
        log::debug("[discovery] cannot resolve '{}': {}", printable(name, kMaxInstanceBytes),
                   error_text(e));
        return;
      }
      Sighting* raw = s.get();
      s->resolver.adopt(self->loop.get(), ref, [raw](DNSServiceErrorType e2) {
        log::debug("[discovery] resolving '{}' failed: {}", printable(raw->name, kMaxInstanceBytes),
                   error_text(e2));
        if (daemon_gone(e2)) raw->owner->lost(e2);
      });
      self->sightings.emplace(std::move(key), std::move(s));
    } else {
      if (it == self->sightings.end() || --it->second->adds > 0) return;
      self->sightings.erase(it);  // deallocates its resolver and queries
      self->refresh(name);
    }
  }

  static void DNSSD_API on_resolved(DNSServiceRef, DNSServiceFlags, uint32_t,
                                    DNSServiceErrorType err, const char*, const char* target,
                                    uint16_t port, uint16_t txt_len, const unsigned char* txt,
                                    void* context) {
    auto* s = static_cast<Sighting*>(context);
    if (daemon_gone(err)) {
      s->owner->lost(err);
      return;
    }
    if (err != kDNSServiceErr_NoError || !target || !*target ||
        std::strlen(target) > kDNSServiceMaxDomainName) {
      log::debug("[discovery] cannot resolve '{}': {}", printable(s->name, kMaxInstanceBytes),
                 error_text(err));
      s->resolved = false;
      s->owner->refresh(s->name);
      return;
    }
    s->resolved = true;
    s->port = ntohs(port);
    s->txt = parse_txt(split_txt(txt, txt_len));
    if (target != s->target || !s->query_a) {
      s->target = target;
      s->v4.clear();
      s->v6.clear();
      s->query_a.reset();
      s->query_aaaa.reset();
      query(s, kDNSServiceType_A, s->query_a);
      query(s, kDNSServiceType_AAAA, s->query_aaaa);
      s->ipv6_will_do = false;
      Impl* owner = s->owner;
      Key key{s->interface, s->name};
      uint64_t serial = s->serial;
      owner->loop->after(kIpv4Grace, [owner, key, serial, target = s->target] {
        auto it = owner->sightings.find(key);
        if (it == owner->sightings.end() || it->second->serial != serial ||
            it->second->target != target)
          return;  // gone, or looking up another host now
        it->second->ipv6_will_do = true;
        owner->refresh(key.second);
      });
    }
    s->owner->refresh(s->name);
  }

  static void query(Sighting* s, uint16_t rrtype, Ref& slot) {
    DNSServiceRef ref = nullptr;
    DNSServiceErrorType err = DNSServiceQueryRecord(&ref, 0, s->interface, s->target.c_str(),
                                                    rrtype, kDNSServiceClass_IN, on_address, s);
    if (err != kDNSServiceErr_NoError) {
      log::debug("[discovery] cannot look up '{}': {}", host_text(s->target.c_str()),
                 error_text(err));
      return;
    }
    slot.adopt(s->owner->loop.get(), ref, [s](DNSServiceErrorType e) {
      if (daemon_gone(e)) s->owner->lost(e);
    });
  }

  static void DNSSD_API on_address(DNSServiceRef, DNSServiceFlags flags, uint32_t interface,
                                   DNSServiceErrorType err, const char*, uint16_t rrtype,
                                   uint16_t rrclass, uint16_t rdlen, const void* rdata, uint32_t,
                                   void* context) {
    auto* s = static_cast<Sighting*>(context);
    if (daemon_gone(err)) {
      s->owner->lost(err);
      return;
    }
    if (err != kDNSServiceErr_NoError || !rdata || rrclass != kDNSServiceClass_IN) return;
    char buf[INET6_ADDRSTRLEN] = {};
    std::vector<std::string>* list = nullptr;
    std::string text;
    if (rrtype == kDNSServiceType_A && rdlen == 4) {
      if (!inet_ntop(AF_INET, rdata, buf, sizeof buf)) return;
      text = buf;
      list = &s->v4;
    } else if (rrtype == kDNSServiceType_AAAA && rdlen == 16) {
      if (!inet_ntop(AF_INET6, rdata, buf, sizeof buf)) return;
      text = buf;
      // An IPv6 link-local address needs its interface to be usable (fe80::1%eth0).
      const auto* b = static_cast<const uint8_t*>(rdata);
      char name[IF_NAMESIZE] = {};
      uint32_t index = interface ? interface : s->interface;
      if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80 && index && if_indextoname(index, name))
        text += "%" + std::string(name);
      list = &s->v6;
    } else {
      return;
    }
    auto it = std::find(list->begin(), list->end(), text);
    if (flags & kDNSServiceFlagsAdd) {
      if (it == list->end() && list->size() < 16) list->push_back(text);
    } else if (it != list->end()) {
      list->erase(it);
    }
    s->owner->refresh(s->name);
  }
};

Browser::Browser(BrowserCallback callback) : impl_(std::make_unique<Impl>()) {
  impl_->callback = std::move(callback);
  impl_->loop = std::make_unique<Loop>();
  DNSServiceErrorType err = impl_->loop->call([this] { return impl_->start_browse(); });
  if (err != kDNSServiceErr_NoError)
    throw dnssd_error("cannot browse for " + std::string(kServiceType), err);
}

Browser::~Browser() {
  try {
    impl_->loop->call([this] {
      impl_->closing = true;
      impl_->sightings.clear();
      impl_->browse.reset();
    });
  } catch (const std::exception& e) {
    log::warn("[discovery] {}", e.what());
  }
  impl_->loop.reset();
}

std::vector<Service> Browser::snapshot() const {
  std::lock_guard lock(impl_->mu);
  std::vector<Service> out;
  for (const auto& [name, svc] : impl_->visible) out.push_back(svc);
  std::sort(out.begin(), out.end(),
            [](const Service& a, const Service& b) { return a.instance < b.instance; });
  return out;
}

}  // namespace meshlm::discovery
