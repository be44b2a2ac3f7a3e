// StreamDecoder: incremental detokenization with a sliding window of ids (so that decoders that
// treat the first token specially, like Strip or Metaspace, see the same context each time), and
// stop strings that are held back while they could still be completed.
#include <algorithm>

#include "core/utf8.h"
#include "tokenizer/tokenizer.h"

namespace meshlm::tok {

struct StreamDecoder::Impl {
  const Tokenizer* tokenizer;
  std::vector<std::string> stops;
  bool skip_special;
  std::vector<TokenId> ids;
  size_t prefix_offset = 0;  // ids[prefix_offset, read_offset) give the decoding context
  size_t read_offset = 0;    // ids before this have been turned into text
  std::string held;          // decoded text not yet released (could start a stop string)
  bool stopped = false;
  std::string matched;

  // Adds text to `held` and returns what is safe to release.
  std::string release(std::string_view text, bool final) {
    held += text;
    // Earliest complete stop string (longest on ties).
    size_t best = std::string::npos;
    const std::string* which = nullptr;
    for (const std::string& s : stops) {
      if (s.empty()) continue;
      size_t pos = held.find(s);
      if (pos != std::string::npos &&
          (pos < best || (pos == best && which && s.size() > which->size()))) {
        best = pos;
        which = &s;
      }
    }
    if (which) {
      stopped = true;
      matched = *which;
      std::string out = held.substr(0, best);
      held.clear();
      return out;
    }
    if (final) {
      std::string out;
      out.swap(held);
      return out;
    }
    // Hold back the longest suffix that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const std::string& s : stops) {
      size_t max_len = std::min(s.size() - (s.empty() ? 0 : 1), held.size());
      for (size_t len = max_len; len > keep; --len) {
        if (held.compare(held.size() - len, len, s, 0, len) == 0) {
          keep = len;
          break;
        }
      }
    }
    std::string out = held.substr(0, held.size() - keep);
    held.erase(0, held.size() - keep);
    return out;
  }

  static bool ends_incomplete(const std::string& text) {
    return text.size() >= kReplacementUtf8.size() &&
           text.compare(text.size() - kReplacementUtf8.size(), kReplacementUtf8.size(),
                        kReplacementUtf8) == 0;
  }

  std::string window_text(size_t from, size_t to) const {
    std::vector<TokenId> window(ids.begin() + from, ids.begin() + to);
    return tokenizer->decode(window, skip_special);
  }
};

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, std::vector<std::string> stop_strings,
                             bool skip_special)
    : impl_(std::make_unique<Impl>()) {
  impl_->tokenizer = &tokenizer;
  impl_->stops = std::move(stop_strings);
  impl_->skip_special = skip_special;
}

StreamDecoder::~StreamDecoder() = default;
StreamDecoder::StreamDecoder(StreamDecoder&&) noexcept = default;
StreamDecoder& StreamDecoder::operator=(StreamDecoder&&) noexcept = default;

std::string StreamDecoder::push(TokenId id) {
  Impl& d = *impl_;
  if (d.stopped) return {};
  d.ids.push_back(id);
  std::string prefix = d.window_text(d.prefix_offset, d.read_offset);
  std::string full = d.window_text(d.prefix_offset, d.ids.size());
  // Wait while the newest bytes do not form a whole character yet.
  if (full.size() <= prefix.size() || Impl::ends_incomplete(full)) return {};
  std::string delta;
  if (full.compare(0, prefix.size(), prefix) == 0) {
    delta = full.substr(prefix.size());
  } else {
    // The decoder rewrote earlier text (rare): emit from the first difference.
    size_t common = 0;
    while (common < prefix.size() && prefix[common] == full[common]) ++common;
    while (common > 0 && (static_cast<unsigned char>(full[common]) & 0xC0) == 0x80) --common;
    delta = full.substr(common);
  }
  d.prefix_offset = d.read_offset;
  d.read_offset = d.ids.size();
  return d.release(delta, false);
}

bool StreamDecoder::stopped() const {
  return impl_->stopped;
}

const std::string& StreamDecoder::matched_stop() const {
  return impl_->matched;
}

std::string StreamDecoder::finish() {
  Impl& d = *impl_;
  if (d.stopped) return {};
  std::string tail;
  if (d.read_offset < d.ids.size()) {
    std::string prefix = d.window_text(d.prefix_offset, d.read_offset);
    std::string full = d.window_text(d.prefix_offset, d.ids.size());
    if (full.size() > prefix.size() && full.compare(0, prefix.size(), prefix) == 0)
      tail = full.substr(prefix.size());
    d.prefix_offset = d.read_offset = d.ids.size();
  }
  return d.release(tail, true);
}

}  // namespace meshlm::tok
