// TXT records and node records: encoding limits and robust parsing of untrusted input.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "discovery/discovery.h"
#include "discovery/node_record.h"

namespace meshlm::discovery {
namespace {

TEST(Txt, RoundTripKeepsValuesWithEquals) {
  TxtRecords txt{{"a", "x=y=z"}, {"backend", "cpu/AVX2"}, {"empty", ""}, {"eq", "="}};
  std::vector<std::string> wire = encode_txt(txt);
  ASSERT_EQ(wire.size(), 4u);
  EXPECT_EQ(wire[0], "a=x=y=z");
  EXPECT_EQ(wire[2], "empty=");
  EXPECT_EQ(parse_txt(wire), txt);
}

TEST(Txt, EncodeRejectsBadKeysAndSizes) {
  EXPECT_THROW(encode_txt({{"", "v"}}), Error);
  EXPECT_THROW(encode_txt({{"a=b", "v"}}), Error);
  EXPECT_THROW(encode_txt({{"a\nb", "v"}}), Error);
  EXPECT_THROW(encode_txt({{"k\x80", "v"}}), Error);
  // "k=" + 253 bytes is exactly 255: allowed; one more is not.
  EXPECT_NO_THROW(encode_txt({{"k", std::string(253, 'v')}}));
  EXPECT_THROW(encode_txt({{"k", std::string(254, 'v')}}), Error);
  // Six entries of 255 bytes: 1536 bytes with length prefixes, over the packet budget.
  TxtRecords big;
  for (char c = 'a'; c < 'g'; ++c) big[std::string(1, c)] = std::string(253, 'v');
  EXPECT_THROW(encode_txt(big), Error);
  try {
    encode_txt({{"k", std::string(300, 'v')}});
  } catch (const Error& e) {
    EXPECT_EQ(e.component(), "discovery");
  }
}

TEST(Txt, ParseIsRobust) {
  std::vector<std::string> wire = {
      "",                          // empty string: ignored
      "=value",                    // empty key: ignored
      "flag",                      // boolean attribute: present, empty value
      "Mem=123",                   // keys are case-insensitive
      "mem=999",                   // duplicate: the first wins
      "k\x01y=1",                  // control character in the key: ignored
      "note=a\x1b[31mred\x07",     // control characters in values are neutralised
      std::string("nul=a\0b", 7),  // embedded NUL
      std::string(300, 'x'),       // longer than a TXT string can be: ignored
  };
  TxtRecords txt = parse_txt(wire);
  EXPECT_EQ(txt.size(), 4u);
  EXPECT_EQ(txt.at("flag"), "");
  EXPECT_EQ(txt.at("mem"), "123");
  EXPECT_EQ(txt.at("note"), "a?[31mred?");
  EXPECT_EQ(txt.at("nul"), "a?b");
  EXPECT_FALSE(txt.count("k\x01y"));
}

TEST(Txt, ParseStopsAfterMaxEntries) {
  std::vector<std::string> wire;
  for (size_t i = 0; i < kMaxTxtEntries + 10; ++i) wire.push_back("k" + std::to_string(i) + "=v");
  EXPECT_EQ(parse_txt(wire).size(), kMaxTxtEntries);
}

TEST(Txt, Printable) {
  EXPECT_EQ(printable("abc", 2), "ab");
  EXPECT_EQ(printable("a\tb", 10), "a?b");
  // "é" is two bytes: a cut in its middle drops it whole.
  EXPECT_EQ(printable("ab\xc3\xa9", 3), "ab");
  EXPECT_EQ(printable("ab\xc3\xa9", 4), "ab\xc3\xa9");
}

TEST(Txt, ParseU64) {
  EXPECT_EQ(parse_u64("0"), 0u);
  EXPECT_EQ(parse_u64("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(parse_u64("18446744073709551616"));
  EXPECT_FALSE(parse_u64(""));
  EXPECT_FALSE(parse_u64("-1"));
  EXPECT_FALSE(parse_u64("+1"));
  EXPECT_FALSE(parse_u64(" 1"));
  EXPECT_FALSE(parse_u64("12GB"));
  EXPECT_FALSE(parse_u64("0x10"));
  EXPECT_FALSE(parse_u64("1e9"));
  EXPECT_FALSE(parse_u64(std::string(40, '1')));
}

TEST(NodeRecord, RoundTrip) {
  NodeRecord r;
  r.id = random_node_id();
  r.version = "0.1.0";
  r.proto = 2;
  r.mem = 17179869184ull;
  r.mem_total = 34359738368ull;
  r.cores = 16;
  r.backend = "cpu/AVX2";
  TxtRecords txt = node_txt(r);
  EXPECT_EQ(txt.at("txtvers"), "1");
  EXPECT_EQ(txt.at("mem"), "17179869184");
  EXPECT_FALSE(txt.count("secret"));
  NodeRecord back = parse_node_txt(parse_txt(encode_txt(txt)));
  EXPECT_EQ(back.id, r.id);
  EXPECT_EQ(back.version, r.version);
  EXPECT_EQ(back.proto, r.proto);
  EXPECT_EQ(back.mem, r.mem);
  EXPECT_EQ(back.mem_total, r.mem_total);
  EXPECT_EQ(back.cores, r.cores);
  EXPECT_EQ(back.backend, r.backend);
}

TEST(NodeRecord, MissingAndMalformedFieldsStayEmpty) {
  NodeRecord r = parse_node_txt({});
  EXPECT_TRUE(r.id.empty());
  EXPECT_FALSE(r.proto);
  EXPECT_FALSE(r.mem);
  EXPECT_FALSE(r.cores);

  r = parse_node_txt(parse_txt({"mem=lots", "proto=99999999999", "cores=-4", "memtotal=1.5e9",
                                "version=" + std::string(200, 'v'), "backend=cpu/\x1b[2J"}));
  EXPECT_FALSE(r.mem);
  EXPECT_FALSE(r.proto);  // past 2^32
  EXPECT_FALSE(r.cores);
  EXPECT_FALSE(r.mem_total);
  EXPECT_EQ(r.version.size(), kMaxRecordText);
  EXPECT_EQ(r.backend, "cpu/?[2J");
}

TEST(NodeRecord, Ids) {
  std::string a = random_node_id(), b = random_node_id();
  EXPECT_EQ(a.size(), 16u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(InstanceName, ReadableAndBounded) {
  std::string name = default_instance_name(7070);
  EXPECT_EQ(name.rfind("meshlm@", 0), 0u);
  EXPECT_EQ(name.substr(name.size() - 5), ":7070");
  EXPECT_LE(name.size(), kMaxInstanceBytes);
}

TEST(Backend, AvailabilityMatchesBuild) {
#ifdef MESHLM_EXPECT_DISCOVERY
  EXPECT_TRUE(discovery_available());
#else
  EXPECT_FALSE(discovery_available());
  EXPECT_THROW(browse_for(std::chrono::milliseconds(1)), Error);
  Advertiser a;
  EXPECT_THROW(a.start("x", 1, {}), Error);
#endif
}

TEST(Backend, AdvertiserRejectsBadArguments) {
  if (!discovery_available()) GTEST_SKIP() << "built without discovery";
  Advertiser a;
  EXPECT_THROW(a.start("", 7070, {}), Error);
  EXPECT_THROW(a.start(std::string(64, 'n'), 7070, {}), Error);
  EXPECT_THROW(a.start("meshlm@x:0", 0, {}), Error);
  EXPECT_THROW(a.start("meshlm@x:1", 1, {{"bad=key", "v"}}), Error);
}

}  // namespace
}  // namespace meshlm::discovery
