// The terminal progress line is a user interface, not a log message, so it is written to stderr
// directly; everything else goes through core/log.h.
#include "hub/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "core/byte_count.h"
#include "core/log.h"

namespace meshlm::hub {

namespace {
constexpr double kTtyIntervalS = 0.1;
constexpr double kLogIntervalS = 10.0;
constexpr double kRateWindowS = 5.0;
}  // namespace

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

DownloadProgress::DownloadProgress(ProgressMode mode, uint64_t total_bytes, int total_files)
    : mode_(mode), total_(total_bytes), total_files_(total_files) {
  if (mode_ == ProgressMode::kAuto) tty_ = ::isatty(STDERR_FILENO) == 1;
  start_ = last_render_ = Clock::now();
  samples_.emplace_back(start_, 0);
}

DownloadProgress::~DownloadProgress() {
  if (line_open_) std::fputs("\n", stderr);
}

void DownloadProgress::start_file(const std::string& name) {
  file_ = name;
  ++file_index_;
  render(true);
}

void DownloadProgress::add_existing(uint64_t bytes) {
  done_ += bytes;
}

void DownloadProgress::add(uint64_t bytes) {
  done_ += bytes;
  received_ += bytes;
  render(false);
}

void DownloadProgress::rewind(uint64_t bytes) {
  done_ -= std::min(done_, bytes);
}

void DownloadProgress::end_file() {
  if (mode_ == ProgressMode::kNone) return;
  if (tty_) {
    render(true);
  } else {
    log::info("hub: [{}/{}] {} done ({} of {})", file_index_, total_files_, file_,
              format_bytes(double(done_)), format_bytes(double(total_)));
  }
}

void DownloadProgress::finish() {
  if (finished_ || mode_ == ProgressMode::kNone) return;
  finished_ = true;
  render(true);
  if (line_open_) {
    std::fputs("\n", stderr);
    line_open_ = false;
  }
  double secs = std::chrono::duration<double>(Clock::now() - start_).count();
  log::info("hub: downloaded {} in {} ({}/s)", format_bytes(double(received_)),
            format_duration(secs), format_bytes(secs > 0 ? received_ / secs : 0.0));
}

double DownloadProgress::rate() const {
  if (samples_.size() < 2) return 0;
  double dt = std::chrono::duration<double>(samples_.back().first - samples_.front().first).count();
  if (dt < 1.0) return 0;  // too early to say
  return double(samples_.back().second - samples_.front().second) / dt;
}

void DownloadProgress::render(bool force) {
  if (mode_ == ProgressMode::kNone) return;
  auto now = Clock::now();
  double since = std::chrono::duration<double>(now - last_render_).count();
  if (!force && since < (tty_ ? kTtyIntervalS : kLogIntervalS)) return;
  last_render_ = now;
  samples_.emplace_back(now, received_);
  while (samples_.size() > 2 &&
         std::chrono::duration<double>(now - samples_.front().first).count() > kRateWindowS)
    samples_.pop_front();
  double r = rate();
  double pct = total_ ? 100.0 * double(done_) / double(total_) : 0.0;
  std::string eta = r > 0 && total_ >= done_ ? format_duration(double(total_ - done_) / r) : "?";
  if (tty_) {
    char line[512];
    std::snprintf(line, sizeof line, "\r[%d/%d] %-32.32s %10s / %-10s %3.0f%% %11s/s  ETA %s\x1b[K",
                  file_index_, total_files_, file_.c_str(), format_bytes(double(done_)).c_str(),
                  format_bytes(double(total_)).c_str(), pct, format_bytes(r).c_str(), eta.c_str());
    std::fputs(line, stderr);
    std::fflush(stderr);
    line_open_ = true;
  } else if (!force) {
    log::info("hub: [{}/{}] {}: {} / {} ({:.0f}%), {}/s, ETA {}", file_index_, total_files_, file_,
              format_bytes(double(done_)), format_bytes(double(total_)), pct, format_bytes(r), eta);
  }
}

}  // namespace meshlm::hub
