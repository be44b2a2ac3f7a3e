#include "core/mmap_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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
