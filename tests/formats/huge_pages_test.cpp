// core/mmap_file.h's map_weights_on_huge_pages: whatever it does to a file map (touch it,
// measure it, and for a file whose page cache is in 4 KB folios drop it and map it again at the
// same address), the bytes at every address stay the file's, pointers stay valid, and what is
// not a file map is left alone. Whether the kernel hands out 2 MB pages is the machine's
// business (BENCHMARKS.md measures that); this checks that asking never costs correctness.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "../common/temp_dir.h"
#include "../common/splitmix.h"
#include "core/mmap_file.h"

namespace meshlm {
namespace {

uint64_t mix(uint64_t x) { return test::splitmix64(x); }

// Run twice: as the machine's page cache has it, and forced through the drop-and-map-again path.
class HugePages : public ::testing::TestWithParam<bool> {};

TEST_P(HugePages, FileMapKeepsItsBytesAndAddressWhenRemapped) {
  if (GetParam()) {
    ::setenv("MESHLM_HUGE_PAGES", "force", 1);
  } else {
    ::unsetenv("MESHLM_HUGE_PAGES");
  }
  test::TempDir dir("meshlm-huge");
  const auto path = (dir.path / "weights.bin").string();
  // 72 MiB, just written (so, on a large-folio file system, cached in small folios: the path
  // that drops and maps again is taken where the kernel supports it).
  const size_t words = (size_t{72} << 20) / sizeof(uint64_t);
  {
    std::vector<uint64_t> v(words);
    for (size_t i = 0; i < words; ++i) v[i] = mix(i);
    std::ofstream(path, std::ios::binary)
        .write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * 8));
  }
  MappedFile f(path);
  ASSERT_EQ(f.size(), words * 8);
  const uint8_t* before = f.data();
  // Two regions with a gap and odd edges, as a stage's tensors lie in a file.
  const size_t a0 = 4096 + 24, a1 = (size_t{30} << 20) + 8, b0 = size_t{40} << 20, b1 = f.size() - 16;
  const HugePageReport rep =
      map_weights_on_huge_pages({{f.data() + a0, a1 - a0}, {f.data() + b0, b1 - b0}});
#if defined(__linux__)
  EXPECT_EQ(rep.bytes, (a1 - a0) + (b1 - b0));
  EXPECT_LE(rep.huge_before, rep.bytes);
  EXPECT_LE(rep.huge_after, rep.bytes);
  std::printf("72 MiB file: %zu -> %zu bytes on 2 MB pages, re-read: %s\n", rep.huge_before,
              rep.huge_after, rep.reread ? "yes" : "no");
#if defined(MADV_PAGEOUT)
  if (GetParam()) EXPECT_TRUE(rep.reread);
#endif
#endif
  ::unsetenv("MESHLM_HUGE_PAGES");
  EXPECT_EQ(f.data(), before);
  const auto* w = reinterpret_cast<const uint64_t*>(f.data());
  size_t wrong = 0;
  for (size_t i = 0; i < words; ++i) wrong += w[i] != mix(i);
  EXPECT_EQ(wrong, 0u);
}

INSTANTIATE_TEST_SUITE_P(PageCacheAsItIsAndForced, HugePages, ::testing::Bool());

TEST(HugePagesAnon, AnonymousMemoryIsNotTouched) {
  std::vector<uint8_t> heap(size_t{80} << 20, 7);
  const HugePageReport rep = map_weights_on_huge_pages({{heap.data(), heap.size()}});
  EXPECT_EQ(rep.bytes, 0u);
  EXPECT_FALSE(rep.reread);
  EXPECT_EQ(heap[12345], 7);
}

}  // namespace
}  // namespace meshlm
