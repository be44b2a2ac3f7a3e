// A read-only memory map of a whole file (RAII). Weights whose dtype the kernels use directly are
// read straight from the map; pages are only touched when a stage's tensors are used.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

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

// Resident set size of this process in bytes (0 where unknown).
size_t resident_bytes();
// Peak resident set size of this process in bytes.
size_t peak_resident_bytes();

}  // namespace meshlm
