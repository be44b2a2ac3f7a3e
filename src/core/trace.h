// Hop tracing: timestamps of a micro-batch's way through the pipeline, for finding where a
// token's time goes between stages (issue 19). Off unless MESHLM_TRACE names a file; then every
// process (coordinator, workers) appends one line per event to it:
//   <monotonic ns> <pid> <event> <micro-batch id>
// The clock is CLOCK_MONOTONIC (std::chrono::steady_clock on Linux and macOS), shared by every
// process of one machine, so the lines of processes on one host line up (loopback, netns hosts);
// scripts/hop_trace.py turns a trace into per-hop intervals. Off, an event costs one load and
// one branch.
#pragma once

#include <cstdint>

namespace meshlm::trace {

// True when MESHLM_TRACE was set at start-up.
bool enabled();
// Records `event` (a string literal) for micro-batch `id` at the current time.
void event_slow(const char* event, uint64_t id);
inline void event(const char* event, uint64_t id) {
  if (enabled()) event_slow(event, id);
}

}  // namespace meshlm::trace
