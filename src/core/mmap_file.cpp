#include "core/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <utility>

#include "core/error.h"

#if defined(__APPLE__)
#include <mach/mach.h>
#endif

namespace meshlm {

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("mmap", "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error("mmap", "cannot stat '" + path + "': " + std::strerror(e));
  }
  size_ = size_t(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error("mmap", "cannot map '" + path + "': " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
#ifdef MADV_HUGEPAGE
    // Weights are streamed through once per token: with 4 KB pages every 4 KB read costs a TLB
    // miss and a page walk. The hint lets the kernel read the file into 2 MB folios and map
    // them whole (Linux with large-folio page cache, e.g. ext4/xfs; ignored elsewhere):
    // 1.7B-dims BF16 decode 4.3 -> 6.1 tokens/s (BENCHMARKS.md). Pages already cached in small
    // folios by an earlier read without it stay small until the page cache drops them.
    ::madvise(p, size_, MADV_HUGEPAGE);
#endif
  }
  ::close(fd);
}

MappedFile::~MappedFile() { release(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)), data_(other.data_), size_(other.size_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void MappedFile::release() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  size_ = 0;
}

void MappedFile::advise_willneed(size_t offset, size_t len) const {
  if (!data_ || offset >= size_) return;
  long page = ::sysconf(_SC_PAGESIZE);
  size_t start = offset / size_t(page) * size_t(page);
  size_t end = std::min(size_, offset + len);
  ::madvise(const_cast<uint8_t*>(data_) + start, end - start, MADV_WILLNEED);
}

void MappedFile::advise_dontneed(size_t offset, size_t len) const {
  if (!data_ || offset >= size_) return;
  const auto page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t start = (offset + page - 1) / page * page;
  const size_t end = std::min(size_, offset + len) / page * page;
  if (end > start) ::madvise(const_cast<uint8_t*>(data_) + start, end - start, MADV_DONTNEED);
}

void drop_file_pages(const void* p, size_t n) {
  if (p == nullptr || n == 0) return;
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t start = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (end > start) ::madvise(reinterpret_cast<void*>(start), size_t(end - start), MADV_DONTNEED);
}

std::string lock_pages(const void* p, size_t n) {
  if (p == nullptr || n == 0) return "";
  const auto page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t start = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + n;
  if (::mlock(reinterpret_cast<const void*>(start), size_t(end - start)) == 0) return "";
  const int e = errno;
  std::string why = std::strerror(e);
  if (e == ENOMEM || e == EPERM || e == EAGAIN) {
    struct rlimit lim{};
    if (::getrlimit(RLIMIT_MEMLOCK, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
      why += " (locked-memory limit " + std::to_string(lim.rlim_cur >> 10) +
             " KiB: raise it with `ulimit -l unlimited` or LimitMEMLOCK=infinity)";
  }
  return why;
}

#if defined(__linux__)
namespace {

// One mapping of /proc/self/smaps: its range, file offset, path, and the counters we read.
struct Vma {
  uintptr_t start = 0, end = 0;
  uint64_t offset = 0, inode = 0;
  std::string perms, path;
  size_t rss = 0, pmd_mapped = 0;
};

std::vector<Vma> read_smaps() {
  std::vector<Vma> out;
  FILE* f = std::fopen("/proc/self/smaps", "r");
  if (!f) return out;
  char line[4096];
  while (std::fgets(line, sizeof line, f)) {
    unsigned long a = 0, b = 0, off = 0;
    char perms[8] = {0};
    int path_at = 0;
    unsigned long inode = 0;
    if (std::sscanf(line, "%lx-%lx %7s %lx %*s %lu %n", &a, &b, perms, &off, &inode, &path_at) >= 5 &&
        path_at > 0) {
      Vma v;
      v.inode = inode;
      v.start = a;
      v.end = b;
      v.offset = off;
      v.perms = perms;
      std::string path = line + path_at;
      while (!path.empty() && (path.back() == '\n' || path.back() == ' ')) path.pop_back();
      v.path = path;
      out.push_back(std::move(v));
      continue;
    }
    if (out.empty()) continue;
    unsigned long kb = 0;
    if (std::sscanf(line, "Rss: %lu kB", &kb) == 1) out.back().rss = size_t(kb) << 10;
    if (std::sscanf(line, "FilePmdMapped: %lu kB", &kb) == 1) out.back().pmd_mapped = size_t(kb) << 10;
  }
  std::fclose(f);
  return out;
}

void touch(const MemoryRegion& r) {
  const auto* p = static_cast<const volatile uint8_t*>(r.data);
  uint8_t sink = 0;
  for (size_t i = 0; i < r.size; i += 4096) sink ^= p[i];
  if (r.size) sink ^= p[r.size - 1];
  (void)sink;
}

// The 2 MB-mapped bytes of the regions: a 2 MB page counts when every byte of it is mapped
// so (smaps gives a whole mapping's figure; the regions' share is estimated as the mapping's
// 2 MB share of its resident bytes times the regions' bytes in it).
size_t huge_bytes(const std::vector<Vma>& vmas, const std::vector<MemoryRegion>& regions) {
  double total = 0;
  for (const Vma& v : vmas) {
    if (v.rss == 0) continue;
    size_t in = 0;
    for (const MemoryRegion& r : regions) {
      const auto a = reinterpret_cast<uintptr_t>(r.data), b = a + r.size;
      if (b > v.start && a < v.end) in += std::min(b, v.end) - std::max(a, v.start);
    }
    total += double(in) * std::min(1.0, double(v.pmd_mapped) / double(v.rss));
  }
  return size_t(total);
}

}  // namespace

HugePageReport map_weights_on_huge_pages(const std::vector<MemoryRegion>& all) {
  HugePageReport rep;
  const char* env = std::getenv("MESHLM_HUGE_PAGES");
  const bool reread_allowed = !(env && std::string(env) == "0");
  const bool force = env && std::string(env) == "force";  // tests: always re-read
  const auto t0 = std::chrono::steady_clock::now();
  // The read-only private file maps holding the regions, and the regions inside them (copies
  // in anonymous memory, a tensor-parallel member's slices, are not this function's).
  std::vector<Vma> maps;
  std::vector<MemoryRegion> regions;
  std::vector<size_t> region_map;  // the index in maps of each region's map
  for (const Vma& v : read_smaps()) {
    if (v.perms != "r--p" || v.path.empty() || v.path[0] != '/') continue;
    for (const MemoryRegion& r : all) {
      const auto a = reinterpret_cast<uintptr_t>(r.data), b = a + r.size;
      if (b <= v.start || a >= v.end) continue;
      const uintptr_t s = std::max(a, v.start), e = std::min(b, v.end);
      if (maps.empty() || maps.back().start != v.start) maps.push_back(v);
      regions.push_back({reinterpret_cast<const void*>(s), size_t(e - s)});
      region_map.push_back(maps.size() - 1);
    }
  }
  for (const MemoryRegion& r : regions) {
    rep.bytes += r.size;
    touch(r);
  }
  rep.huge_before = rep.huge_after = huge_bytes(read_smaps(), regions);
  if (!force && (!reread_allowed || rep.bytes - std::min(rep.bytes, rep.huge_before) < kHugePageMinBytes)) {
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return rep;
  }
#if defined(MADV_PAGEOUT) && defined(MADV_HUGEPAGE)
  // Drop the regions' pages, 2 MB-aligned outward within their map (a 2 MB folio needs the
  // whole 2 MB absent from the cache), then map each file again at its address.
  constexpr uintptr_t huge = kHugePageBytes;
  for (size_t i = 0; i < regions.size(); ++i) {
    const Vma& v = maps[region_map[i]];
    const auto a = reinterpret_cast<uintptr_t>(regions[i].data), b = a + regions[i].size;
    const uintptr_t s = std::max(v.start, a / huge * huge);
    const uintptr_t e = std::min(v.end, (b + huge - 1) / huge * huge);
    if (e > s) ::madvise(reinterpret_cast<void*>(s), e - s, MADV_PAGEOUT);
  }
  for (const Vma& v : maps) {
    const int fd = ::open(v.path.c_str(), O_RDONLY);
    if (fd < 0) continue;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || uint64_t(st.st_ino) != v.inode) {  // replaced on disk since
      ::close(fd);
      continue;
    }
    void* p = ::mmap(reinterpret_cast<void*>(v.start), v.end - v.start, PROT_READ,
                     MAP_PRIVATE | MAP_FIXED, fd, off_t(v.offset));
    ::close(fd);
    // MAP_FIXED replaces the old mapping in one step. Should it fail (address space or map
    // count exhausted) the range may be left unmapped: never seen, but say so loudly.
    if (p == MAP_FAILED) {
      std::fprintf(stderr, "meshlm: re-mapping %s for 2 MB pages failed: %s\n", v.path.c_str(),
                   std::strerror(errno));
      continue;
    }
    ::madvise(p, v.end - v.start, MADV_HUGEPAGE);
  }
  for (const MemoryRegion& r : regions) touch(r);
  rep.reread = true;
  rep.huge_after = huge_bytes(read_smaps(), regions);
#endif
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}
#else
HugePageReport map_weights_on_huge_pages(const std::vector<MemoryRegion>&) { return {}; }
#endif

size_t resident_bytes() {
#if defined(__APPLE__)
  mach_task_basic_info info;
  mach_msg_type_number_t count = MACH_TASK_BASIC_INFO_COUNT;
  if (task_info(mach_task_self(), MACH_TASK_BASIC_INFO, (task_info_t)&info, &count) == KERN_SUCCESS)
    return info.resident_size;
  return 0;
#else
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, rss = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &rss);
  std::fclose(f);
  return n == 2 ? rss * size_t(::sysconf(_SC_PAGESIZE)) : 0;
#endif
}

size_t peak_resident_bytes() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
#if defined(__APPLE__)
  return size_t(ru.ru_maxrss);
#else
  return size_t(ru.ru_maxrss) * 1024;
#endif
}

}  // namespace meshlm
