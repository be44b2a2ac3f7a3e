#include "core/atomic_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace meshlm {
namespace {
constexpr size_t kBuffer = size_t(1) << 20;  // stdio buffer: large sequential writes
}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), partial_path_(path_ + ".partial") {}

AtomicFile::~AtomicFile() {
  if (!file_) return;
  file_.reset();
  std::error_code ec;
  std::filesystem::remove(partial_path_, ec);
}

bool AtomicFile::failed(std::string message) {
  error_ = std::move(message);
  return false;
}

bool AtomicFile::open() {
  file_.reset(std::fopen(partial_path_.c_str(), "wb"));
  if (!file_) return failed("cannot create '" + partial_path_ + "': " + std::strerror(errno));
  std::setvbuf(file_.get(), nullptr, _IOFBF, kBuffer);
  committed_ = false;
  return true;
}

bool AtomicFile::write(const void* data, size_t n) {
  if (!file_) return failed("write to '" + partial_path_ + "' before it was created");
  if (n != 0 && std::fwrite(data, 1, n, file_.get()) != n)
    return failed("write to '" + partial_path_ + "' failed: " + std::strerror(errno));
  return true;
}

bool AtomicFile::commit() {
  if (!file_) return failed("commit of '" + partial_path_ + "' before it was created");
  std::FILE* f = file_.release();
  bool ok = std::fflush(f) == 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    const std::string why = std::strerror(errno);
    std::error_code ec;
    std::filesystem::remove(partial_path_, ec);
    return failed("closing '" + partial_path_ + "' failed: " + why);
  }
  std::error_code ec;
  std::filesystem::rename(partial_path_, path_, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(partial_path_, ignored);
    return failed("cannot rename '" + partial_path_ + "' to '" + path_ + "': " + ec.message());
  }
  committed_ = true;
  return true;
}

}  // namespace meshlm
