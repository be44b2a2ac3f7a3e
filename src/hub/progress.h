// Download progress on stderr: bytes, rate and ETA. On a terminal one line redrawn in place (at
// most 10 times a second); otherwise a log line every 10 seconds and one per finished file.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>
#include <utility>

#include "hub/hub.h"

namespace meshlm::hub {

// "0:48", "1:02:03", "?" for negative / unknown
std::string format_duration(double seconds);

class DownloadProgress {
 public:
  DownloadProgress(ProgressMode mode, uint64_t total_bytes, int total_files);
  ~DownloadProgress();

  void start_file(const std::string& name);
  // Bytes of the current file that were already on disk (a resumed .incomplete): counted as
  // done, not in the rate.
  void add_existing(uint64_t bytes);
  void add(uint64_t bytes);     // bytes that just arrived
  void rewind(uint64_t bytes);  // a download started over: its bytes no longer count as done
  void end_file();
  void finish();

 private:
  void render(bool force);
  double rate() const;  // bytes/s over the last few seconds

  using Clock = std::chrono::steady_clock;
  ProgressMode mode_;
  bool tty_ = false;
  uint64_t total_ = 0;
  uint64_t done_ = 0;
  uint64_t received_ = 0;
  int total_files_ = 0;
  int file_index_ = 0;
  std::string file_;
  Clock::time_point start_;
  Clock::time_point last_render_;
  std::deque<std::pair<Clock::time_point, uint64_t>> samples_;  // (time, received_)
  bool line_open_ = false;
  bool finished_ = false;
};

}  // namespace meshlm::hub
