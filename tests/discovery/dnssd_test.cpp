// The <dns_sd.h> backend with no daemon to talk to: every entry point fails at once with a clear
// Error("discovery", ...), never a crash or a hang. On Linux the daemon (avahi-daemon, reached by
// libdns_sd over the D-Bus system bus) is made unreachable by pointing the system bus at a socket
// that does not exist; macOS's mDNSResponder cannot be taken away, so there these tests skip.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "core/error.h"
#include "discovery/discovery.h"

namespace meshlm::discovery {
namespace {

using Clock = std::chrono::steady_clock;

class NoDaemon : public ::testing::Test {
 protected:
  void SetUp() override {
#ifdef __APPLE__
    GTEST_SKIP() << "mDNSResponder is part of macOS";
#else
    setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent/meshlm-test-system-bus", 1);
#endif
    start_ = Clock::now();
  }
  void TearDown() override {
    // Failing must be immediate: no retry loop or timeout inside the constructors.
    EXPECT_LT(Clock::now() - start_, std::chrono::seconds(5));
  }
  static void expect_unreachable(const Error& e, const std::string& what) {
    EXPECT_EQ(e.component(), "discovery");
    EXPECT_NE(e.message().find(what), std::string::npos) << e.what();
    EXPECT_NE(e.message().find("mDNSResponder / avahi-daemon not reachable"), std::string::npos)
        << e.what();
  }
  Clock::time_point start_;
};

TEST_F(NoDaemon, BrowserThrowsClearError) {
  EXPECT_TRUE(discovery_available());
  try {
    Browser browser([](const BrowserEvent&) { ADD_FAILURE() << "no event without a daemon"; });
    FAIL() << "Browser started without a daemon";
  } catch (const Error& e) {
    expect_unreachable(e, "cannot browse for _meshlm._tcp");
  }
  EXPECT_THROW(browse_for(std::chrono::milliseconds(1)), Error);
}

TEST_F(NoDaemon, AdvertiserThrowsClearErrorAndStaysUsable) {
  Advertiser a;
  try {
    a.start("meshlm@test:7070", 7070, {{"proto", "3"}});
    FAIL() << "Advertiser started without a daemon";
  } catch (const Error& e) {
    expect_unreachable(e, "cannot advertise 'meshlm@test:7070'");
  }
  EXPECT_FALSE(a.established());
  // Arguments are still checked first, and stop()/start() again are harmless.
  EXPECT_THROW(a.start("", 7070, {}), Error);
  EXPECT_THROW(a.start("meshlm@x:1", 1, {{"bad=key", "v"}}), Error);
  a.stop();
  EXPECT_THROW(a.start("meshlm@test:7071", 7071, {}, "127.0.0.1"), Error);
  EXPECT_FALSE(a.established());
}

TEST(DnssdBackend, AdvertiserWithoutStartIsInert) {
  Advertiser a;
  EXPECT_FALSE(a.established());
  EXPECT_EQ(a.instance(), "");
  a.stop();
}

}  // namespace
}  // namespace meshlm::discovery
