// A read-only memory map of a whole file (RAII). Weights whose dtype the kernels use directly are
// read straight from the map; pages are only touched when a stage's tensors are used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace meshlm {

class MappedFile {
 public:
  MappedFile() = default;
  explicit MappedFile(const std::string& path);  // throws Error("mmap", ...)
  ~MappedFile();
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hint the kernel to read [offset, offset+len) ahead.
  void advise_willneed(size_t offset, size_t len) const;
  // Drops this process's pages of the whole pages inside [offset, offset+len) (MADV_DONTNEED):
  // they leave its resident set; a later read maps them again from the file.
  void advise_dontneed(size_t offset, size_t len) const;

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Locks the pages holding [p, p + n) in RAM (mlock): they are read in now and then neither paged
// out nor, for a file map, dropped under memory pressure, until unlocked or unmapped. Returns ""
// or why it failed (typically RLIMIT_MEMLOCK: `ulimit -l`).
std::string lock_pages(const void* p, size_t n);

// Drops the whole pages inside [p, p + n) of a file map from this process (MADV_DONTNEED): they
// are read from the file again if touched. Only for file maps: anonymous pages would be zeroed.
void drop_file_pages(const void* p, size_t n);

// Weights on 2 MB pages (Linux; elsewhere it does nothing and returns {}). Touches every page of
// the regions (parts of read-only file maps), so that they are resident when the first token
// needs them, and measures how much of them the kernel mapped with 2 MB pages. A file whose
// page cache holds it in 4 KB folios (typically one just written: downloaded, converted,
// copied) maps with 4 KB pages whatever MappedFile's MADV_HUGEPAGE says, and decode pays a
// TLB miss per 4 KB (BENCHMARKS.md: 1.7B-dims BF16 4.2 vs 6.1 tokens/s; with 88% on 2 MB
// pages and the rest, 400 MiB, on 4 KB: 2.0-2.6 vs 6.2). When 64 MiB or more of the regions are
// not on 2 MB pages, it drops the regions' pages from the page cache
// (MADV_PAGEOUT: clean pages no other process maps), maps those files again at the same
// addresses (MAP_FIXED: pointers into them stay valid; fresh page tables, which a 2 MB
// mapping needs) and reads the regions back, now into 2 MB folios: one re-read from disk.
// MESHLM_HUGE_PAGES=0 skips the re-read (the touch and the measurement stay); =force re-reads
// whatever the share (tests).
inline constexpr size_t kHugePageBytes = size_t{2} << 20;
// Below this many file-mapped bytes the re-read is not worth a log line or a disk read.
inline constexpr size_t kHugePageMinBytes = size_t{64} << 20;
struct HugePageReport {
  size_t bytes = 0;         // of the regions that lie in file maps
  size_t huge_before = 0;   // mapped by 2 MB pages after the first touch
  size_t huge_after = 0;    // ... after the re-read (== huge_before when there was none)
  bool reread = false;
  double seconds = 0;
};
struct MemoryRegion {
  const void* data;
  size_t size;
};
HugePageReport map_weights_on_huge_pages(const std::vector<MemoryRegion>& regions);

// Resident set size of this process in bytes (0 where unknown).
size_t resident_bytes();
// Peak resident set size of this process in bytes.
size_t peak_resident_bytes();

}  // namespace meshlm
