// A file that appears whole or not at all: bytes go to "<path>.partial", commit() flushes,
// closes and renames it into place; destroyed before commit() the partial file is removed.
// Used by the GGUF and safetensors writers (meshlm quantize / synth / convert).
#pragma once

#include <cstddef>
#include <cstdio>
#include <memory>
#include <string>

namespace meshlm {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates nothing yet
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Each returns false on failure; error() then says why, naming the file.
  bool open();                             // creates (truncates) the partial file
  bool write(const void* data, size_t n);  // appends (buffered)
  bool commit();                           // flush, close, rename over `path`

  bool is_open() const { return file_ != nullptr; }
  bool committed() const { return committed_; }
  const std::string& path() const { return path_; }
  const std::string& partial_path() const { return partial_path_; }
  const std::string& error() const { return error_; }

 private:
  struct Closer {
    void operator()(std::FILE* f) const { std::fclose(f); }
  };
  bool failed(std::string message);

  std::string path_, partial_path_, error_;
  std::unique_ptr<std::FILE, Closer> file_;
  bool committed_ = false;
};

}  // namespace meshlm
