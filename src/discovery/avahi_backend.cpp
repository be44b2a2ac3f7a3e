// Discovery over avahi-core: a complete mDNS responder embedded in this process (no avahi-daemon,
// no D-Bus). One AvahiServer runs on an AvahiThreadedPoll (a simple poll loop in a thread of its
// own); every avahi call from another thread takes the poll lock, and every avahi callback runs
// on that thread with the lock held.
//
// Two stacks at most per process, shared by reference count: a publishing one (Advertiser: it
// announces this host's name and addresses, renaming the host "name-2" etc. on collision) and a
// browse-only one (Browser: publishes nothing, so `cluster status` on a worker's host cannot
// collide with it).
#include <arpa/inet.h>
#include <avahi-common/alternative.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/thread-watch.h>
#include <avahi-core/core.h>
#include <avahi-core/log.h>
#include <avahi-core/lookup.h>
#include <avahi-core/publish.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <tuple>

#include "core/error.h"
#include "core/log.h"
#include "discovery/discovery.h"

namespace meshlm::discovery {
namespace {

constexpr int kMaxRenames = 32;  // collisions handled before giving up on a name

std::string avahi_error_text(int code) {
  return avahi_strerror(code);
}

extern "C" void avahi_log_to_meshlm(AvahiLogLevel level, const char* text) {
  // avahi's own errors do not stop meshlm (discovery is best effort): warnings for us.
  if (level == AVAHI_LOG_ERROR)
    log::warn("[discovery] avahi: {}", text);
  else
    log::debug("[discovery] avahi: {}", text);
}

class PollLock {
 public:
  explicit PollLock(AvahiThreadedPoll* poll) : poll_(poll) { avahi_threaded_poll_lock(poll_); }
  ~PollLock() { avahi_threaded_poll_unlock(poll_); }
  PollLock(const PollLock&) = delete;
  PollLock& operator=(const PollLock&) = delete;

 private:
  AvahiThreadedPoll* poll_;
};

// Something that must re-publish when the server (re)enters the running state.
class ServerListener {
 public:
  virtual void on_server_state(AvahiServerState state) = 0;

 protected:
  ~ServerListener() = default;
};

class Stack {
 public:
  static std::shared_ptr<Stack> get(bool publishing) {
    static std::mutex mu;
    static std::weak_ptr<Stack> stacks[2];
    std::lock_guard lock(mu);
    std::weak_ptr<Stack>& slot = stacks[publishing ? 1 : 0];
    if (auto s = slot.lock()) return s;
    auto s = std::shared_ptr<Stack>(new Stack(publishing));
    slot = s;
    return s;
  }

  ~Stack() {
    avahi_threaded_poll_stop(poll_);  // joins the thread
    avahi_server_free(server_);       // withdraws what is still published
    avahi_threaded_poll_free(poll_);
  }
  Stack(const Stack&) = delete;
  Stack& operator=(const Stack&) = delete;

  AvahiThreadedPoll* poll() const { return poll_; }
  AvahiServer* server() const { return server_; }

  // With the poll lock held.
  void add_listener(ServerListener* l) { listeners_.push_back(l); }
  void remove_listener(ServerListener* l) { std::erase(listeners_, l); }

 private:
  explicit Stack(bool publishing) {
    static std::once_flag log_once;
    std::call_once(log_once, [] { avahi_set_log_function(avahi_log_to_meshlm); });
    poll_ = avahi_threaded_poll_new();
    if (!poll_) throw Error("discovery", "cannot create the mDNS poll loop");
    AvahiServerConfig config;
    avahi_server_config_init(&config);
    config.use_ipv4 = 1;
    config.use_ipv6 = 1;
    config.publish_hinfo = 0;
    config.publish_workstation = 0;
    config.publish_domain = 0;
    config.enable_wide_area = 0;
    config.publish_addresses = publishing ? 1 : 0;
    config.disable_publishing = publishing ? 0 : 1;
    int error = 0;
    server_ = avahi_server_new(avahi_threaded_poll_get(poll_), &config, on_server, this, &error);
    avahi_server_config_free(&config);
    if (!server_) {
      avahi_threaded_poll_free(poll_);
      throw Error("discovery", "cannot start the mDNS stack: " + avahi_error_text(error));
    }
    if (avahi_threaded_poll_start(poll_) < 0) {
      avahi_server_free(server_);
      avahi_threaded_poll_free(poll_);
      throw Error("discovery", "cannot start the mDNS thread");
    }
  }

  static void on_server(AvahiServer* s, AvahiServerState state, void* userdata) {
    auto* self = static_cast<Stack*>(userdata);
    if (state == AVAHI_SERVER_COLLISION) {
      // Another host uses our host name: take "name-2" (then -3, ...) as avahi-daemon does.
      char* next = avahi_alternative_host_name(avahi_server_get_host_name(s));
      log::info("[discovery] host name '{}' is taken on the LAN; using '{}'",
                avahi_server_get_host_name(s), next);
      avahi_server_set_host_name(s, next);
      avahi_free(next);
    } else if (state == AVAHI_SERVER_FAILURE) {
      log::warn("[discovery] mDNS stack failed: {}", avahi_error_text(avahi_server_errno(s)));
    } else if (state == AVAHI_SERVER_RUNNING) {
      log::debug("[discovery] mDNS host name {}", avahi_server_get_host_name_fqdn(s));
    }
    for (ServerListener* l : std::vector<ServerListener*>(self->listeners_))
      l->on_server_state(state);
  }

  AvahiThreadedPoll* poll_ = nullptr;
  AvahiServer* server_ = nullptr;
  std::vector<ServerListener*> listeners_;
};

// The interface and protocol to publish on for a service listening on `host`.
std::pair<AvahiIfIndex, AvahiProtocol> publish_scope(const std::string& host) {
  in_addr v4{};
  in6_addr v6{};
  if (host.empty() || host == "0.0.0.0") return {AVAHI_IF_UNSPEC, AVAHI_PROTO_INET};
  if (host == "::") return {AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC};
  bool is_v4 = inet_pton(AF_INET, host.c_str(), &v4) == 1;
  bool is_v6 = !is_v4 && inet_pton(AF_INET6, host.c_str(), &v6) == 1;
  if (!is_v4 && !is_v6) return {AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC};  // a name: let avahi choose
  AvahiProtocol proto = is_v4 ? AVAHI_PROTO_INET : AVAHI_PROTO_INET6;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return {AVAHI_IF_UNSPEC, proto};
  AvahiIfIndex index = AVAHI_IF_UNSPEC;
  for (ifaddrs* a = list; a && index == AVAHI_IF_UNSPEC; a = a->ifa_next) {
    if (!a->ifa_addr) continue;
    if (is_v4 && a->ifa_addr->sa_family == AF_INET &&
        reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr == v4.s_addr)
      index = AvahiIfIndex(if_nametoindex(a->ifa_name));
    if (is_v6 && a->ifa_addr->sa_family == AF_INET6 &&
        std::memcmp(&reinterpret_cast<sockaddr_in6*>(a->ifa_addr)->sin6_addr, &v6, sizeof v6) == 0)
      index = AvahiIfIndex(if_nametoindex(a->ifa_name));
  }
  freeifaddrs(list);
  return {index == 0 ? AVAHI_IF_UNSPEC : index, proto};
}

}  // namespace

bool discovery_available() {
  return true;
}

// ---- Advertiser ----

struct Advertiser::Impl final : ServerListener {
  std::shared_ptr<Stack> stack;
  AvahiSEntryGroup* group = nullptr;
  std::string name;  // current instance name (guarded by the poll lock; copied into shown_name)
  uint16_t port = 0;
  std::vector<std::string> txt;
  AvahiIfIndex interface = AVAHI_IF_UNSPEC;
  AvahiProtocol protocol = AVAHI_PROTO_UNSPEC;
  int renames = 0;
  bool committed = false;  // the group holds the service under the current host name
  std::atomic<bool> established{false};
  mutable std::mutex name_mu;
  std::string shown_name;

  void rename() {
    char* next = avahi_alternative_service_name(name.c_str());
    log::info("[discovery] service name '{}' is taken on the LAN; using '{}'", name, next);
    name = next;
    avahi_free(next);
    std::lock_guard lock(name_mu);
    shown_name = name;
  }

  // With the poll lock held. Adds the service to a fresh group and commits it.
  void publish() {
    AvahiServer* server = stack->server();
    // Only once the host name is ours (probed, ~1 s): a service added earlier would be announced
    // under a host name that may still collide, and two cloned hosts with the same name and port
    // would publish identical SRV records that no probe tells apart (measured: the second host's
    // goodbyes then erased the first one's records from every browser's cache).
    if (avahi_server_get_state(server) != AVAHI_SERVER_RUNNING) return;  // on_server_state will
    if (!group) {
      group = avahi_s_entry_group_new(server, on_group, this);
      if (!group) {
        log::warn("[discovery] cannot create an entry group: {}",
                  avahi_error_text(avahi_server_errno(server)));
        return;
      }
    }
    avahi_s_entry_group_reset(group);
    committed = false;
    AvahiStringList* list = nullptr;
    for (auto it = txt.rbegin(); it != txt.rend(); ++it)  // avahi prepends
      list = avahi_string_list_add_arbitrary(list, reinterpret_cast<const uint8_t*>(it->data()),
                                             it->size());
    int rc = 0;
    for (;;) {
      rc =
          avahi_server_add_service_strlst(server, group, interface, protocol, AvahiPublishFlags(0),
                                          name.c_str(), kServiceType, nullptr, nullptr, port, list);
      if (rc != AVAHI_ERR_COLLISION) break;
      if (++renames > kMaxRenames) break;
      avahi_s_entry_group_reset(group);
      rename();  // taken by another service of this process
    }
    avahi_string_list_free(list);
    if (rc < 0) {
      log::warn("[discovery] cannot publish '{}': {}", name, avahi_error_text(rc));
      return;
    }
    rc = avahi_s_entry_group_commit(group);
    if (rc < 0)
      log::warn("[discovery] cannot announce '{}': {}", name, avahi_error_text(rc));
    else
      committed = true;
  }

  void on_server_state(AvahiServerState state) override {
    if (state == AVAHI_SERVER_RUNNING) {
      if (!committed) publish();
    } else if (group && (state == AVAHI_SERVER_REGISTERING || state == AVAHI_SERVER_COLLISION)) {
      // The host name is changing: the service will be re-added once the server runs again.
      avahi_s_entry_group_reset(group);
      committed = false;
      established.store(false);
    }
  }

  static void on_group(AvahiServer*, AvahiSEntryGroup* g, AvahiEntryGroupState state, void* ud) {
    auto* self = static_cast<Impl*>(ud);
    if (g != self->group && self->group) return;
    switch (state) {
      case AVAHI_ENTRY_GROUP_ESTABLISHED:
        self->established.store(true);
        log::info("[discovery] advertising '{}' ({}, port {})", self->name, kServiceType,
                  self->port);
        break;
      case AVAHI_ENTRY_GROUP_COLLISION:
        self->established.store(false);
        if (++self->renames > kMaxRenames) {
          log::warn("[discovery] giving up after {} name collisions", kMaxRenames);
          break;
        }
        self->rename();
        self->publish();
        break;
      case AVAHI_ENTRY_GROUP_FAILURE:
        self->established.store(false);
        log::warn("[discovery] publishing '{}' failed", self->name);
        break;
      default:
        break;
    }
  }

  void stop() {
    if (!stack) return;
    {
      PollLock lock(stack->poll());
      stack->remove_listener(this);
      if (group) avahi_s_entry_group_free(group);  // sends goodbye packets
      group = nullptr;
    }
    committed = false;
    established.store(false);
    stack.reset();
  }
};

Advertiser::Advertiser() : impl_(std::make_unique<Impl>()) {}
Advertiser::~Advertiser() {
  impl_->stop();
}

void Advertiser::start(const std::string& instance, uint16_t port, const TxtRecords& txt,
                       const std::string& listen_host) {
  if (instance.empty() || instance.size() > kMaxInstanceBytes)
    throw Error("discovery", "instance name must be 1 to " + std::to_string(kMaxInstanceBytes) +
                                 " bytes: '" + printable(instance, 80) + "'");
  if (port == 0) throw Error("discovery", "cannot advertise port 0");
  impl_->stop();
  Impl& m = *impl_;
  m.txt = encode_txt(txt);
  m.name = instance;
  m.shown_name = instance;
  m.port = port;
  m.renames = 0;
  std::tie(m.interface, m.protocol) = publish_scope(listen_host);
  m.stack = Stack::get(true);
  PollLock lock(m.stack->poll());
  m.stack->add_listener(&m);
  m.publish();
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

namespace {

std::string address_text(const AvahiAddress* a, AvahiIfIndex interface) {
  char buf[AVAHI_ADDRESS_STR_MAX];
  if (!avahi_address_snprint(buf, sizeof buf, a)) return "";
  std::string text = buf;
  // An IPv6 link-local address needs its interface to be usable (fe80::1%eth0).
  if (a->proto == AVAHI_PROTO_INET6 && a->data.ipv6.address[0] == 0xfe &&
      (a->data.ipv6.address[1] & 0xc0) == 0x80) {
    char name[IF_NAMESIZE];
    if (interface > 0 && if_indextoname(unsigned(interface), name)) text += "%" + std::string(name);
  }
  return text;
}

}  // namespace

struct Browser::Impl {
  // One service may be seen on several interfaces and over IPv4 and IPv6: each is a sighting
  // with its own resolver; the service shown is the best resolved sighting (IPv4 first).
  struct Sighting {
    Impl* owner = nullptr;
    AvahiIfIndex interface = AVAHI_IF_UNSPEC;
    AvahiProtocol protocol = AVAHI_PROTO_UNSPEC;
    std::string name;  // as received (the key); Service::instance is its printable() form
    AvahiSServiceResolver* resolver = nullptr;
    std::optional<Service> service;
  };
  using Key = std::tuple<AvahiIfIndex, AvahiProtocol, std::string>;

  BrowserCallback callback;
  std::shared_ptr<Stack> stack;
  AvahiSServiceBrowser* browser = nullptr;
  std::map<Key, std::unique_ptr<Sighting>> sightings;  // poll lock
  mutable std::mutex mu;
  std::map<std::string, Service> visible;  // by received name; guarded by mu

  // Poll thread. Re-derives the shown service for `name` and reports the change.
  void refresh(const std::string& name) {
    const Sighting* best = nullptr;
    for (const auto& [key, s] : sightings) {
      if (s->name != name || !s->service) continue;
      if (!best || (s->protocol == AVAHI_PROTO_INET && best->protocol != AVAHI_PROTO_INET))
        best = s.get();
    }
    std::optional<BrowserEvent> event;
    {
      std::lock_guard lock(mu);
      auto it = visible.find(name);
      if (!best && it != visible.end()) {
        event = BrowserEvent{BrowserEvent::Kind::kRemoved, it->second};
        visible.erase(it);
      } else if (best && it == visible.end()) {
        visible.emplace(name, *best->service);
        event = BrowserEvent{BrowserEvent::Kind::kAdded, *best->service};
      } else if (best) {
        const Service& a = it->second;
        const Service& b = *best->service;
        if (a.host != b.host || a.address != b.address || a.port != b.port || a.txt != b.txt) {
          it->second = b;
          event = BrowserEvent{BrowserEvent::Kind::kUpdated, b};
        }
      }
    }
    if (event) {
      log::debug("[discovery] {} '{}' {}:{}",
                 event->kind == BrowserEvent::Kind::kRemoved ? "lost" : "found",
                 event->service.instance, event->service.address, event->service.port);
      if (callback) {
        try {
          callback(*event);
        } catch (const std::exception& e) {
          log::warn("[discovery] browser callback failed: {}", e.what());
        }
      }
    }
  }

  static void on_resolved(AvahiSServiceResolver*, AvahiIfIndex interface, AvahiProtocol,
                          AvahiResolverEvent event, const char* name, const char*, const char*,
                          const char* host, const AvahiAddress* address, uint16_t port,
                          AvahiStringList* txt, AvahiLookupResultFlags, void* ud) {
    auto* s = static_cast<Sighting*>(ud);
    if (event == AVAHI_RESOLVER_FOUND && address && port != 0) {
      std::vector<std::string> entries;
      for (AvahiStringList* l = txt; l; l = avahi_string_list_get_next(l))
        entries.emplace_back(reinterpret_cast<const char*>(avahi_string_list_get_text(l)),
                             avahi_string_list_get_size(l));
      Service svc;
      svc.instance = printable(name ? name : s->name.c_str(), kMaxInstanceBytes);
      svc.host = printable(host ? host : "", 255);
      svc.address = address_text(address, interface);
      svc.port = port;
      svc.txt = parse_txt(entries);
      s->service = std::move(svc);
    } else {
      log::debug("[discovery] cannot resolve '{}': {}", printable(s->name, kMaxInstanceBytes),
                 avahi_error_text(avahi_server_errno(s->owner->stack->server())));
      s->service.reset();
    }
    s->owner->refresh(s->name);
  }

  static void on_browse(AvahiSServiceBrowser*, AvahiIfIndex interface, AvahiProtocol protocol,
                        AvahiBrowserEvent event, const char* name, const char* type,
                        const char* domain, AvahiLookupResultFlags, void* ud) {
    auto* self = static_cast<Impl*>(ud);
    if (event == AVAHI_BROWSER_FAILURE) {
      log::warn("[discovery] browsing failed: {}",
                avahi_error_text(avahi_server_errno(self->stack->server())));
      return;
    }
    if ((event != AVAHI_BROWSER_NEW && event != AVAHI_BROWSER_REMOVE) || !name) return;
    Key key{interface, protocol, name};
    if (event == AVAHI_BROWSER_NEW) {
      if (self->sightings.count(key)) return;
      auto s = std::make_unique<Sighting>();
      s->owner = self;
      s->interface = interface;
      s->protocol = protocol;
      s->name = name;
      // Resolve to an address of the family the service was seen on; the resolver stays open
      // and reports changes (a worker's TXT update, a new address) until the service goes.
      s->resolver =
          avahi_s_service_resolver_new(self->stack->server(), interface, protocol, name, type,
                                       domain, protocol, AvahiLookupFlags(0), on_resolved, s.get());
      if (!s->resolver) {
        log::debug("[discovery] cannot resolve '{}': {}", printable(name, kMaxInstanceBytes),
                   avahi_error_text(avahi_server_errno(self->stack->server())));
        return;
      }
      self->sightings.emplace(std::move(key), std::move(s));
    } else {
      auto it = self->sightings.find(key);
      if (it == self->sightings.end()) return;
      avahi_s_service_resolver_free(it->second->resolver);
      std::string n = it->second->name;
      self->sightings.erase(it);
      self->refresh(n);
    }
  }
};

Browser::Browser(BrowserCallback callback) : impl_(std::make_unique<Impl>()) {
  impl_->callback = std::move(callback);
  impl_->stack = Stack::get(false);
  PollLock lock(impl_->stack->poll());
  impl_->browser = avahi_s_service_browser_new(impl_->stack->server(), AVAHI_IF_UNSPEC,
                                               AVAHI_PROTO_UNSPEC, kServiceType, nullptr,
                                               AvahiLookupFlags(0), Impl::on_browse, impl_.get());
  if (!impl_->browser)
    throw Error("discovery", "cannot browse for " + std::string(kServiceType) + ": " +
                                 avahi_error_text(avahi_server_errno(impl_->stack->server())));
}

Browser::~Browser() {
  {
    PollLock lock(impl_->stack->poll());
    for (auto& [key, s] : impl_->sightings) avahi_s_service_resolver_free(s->resolver);
    impl_->sightings.clear();
    avahi_s_service_browser_free(impl_->browser);
  }
  impl_->stack.reset();
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
