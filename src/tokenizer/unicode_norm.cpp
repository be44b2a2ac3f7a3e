#include "tokenizer/unicode_norm.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/utf8.h"

namespace meshlm::tok {
namespace {

#include "tokenizer/unicode_tables.inc"

constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount,
                   kSCount = kLCount * kNCount;

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const uint32_t* begin = kCombiningClass;
  const uint32_t* end = kCombiningClass + std::size(kCombiningClass);
  const uint32_t* it =
      std::lower_bound(begin, end, cp, [](uint32_t e, char32_t c) { return (e >> 8) < c; });
  if (it != end && (*it >> 8) == cp) return static_cast<uint8_t>(*it & 0xFF);
  return 0;
}

// Appends the full (recursive) decomposition of cp.
void decompose(char32_t cp, bool compat, std::vector<char32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount) out.push_back(kTBase + s % kTCount);
    return;
  }
  if (cp >= 0xA0) {
    size_t n = std::size(kDecompIndex) / 2;
    size_t lo = 0, hi = n;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (kDecompIndex[2 * mid] < cp)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < n && kDecompIndex[2 * lo] == cp) {
      uint32_t meta = kDecompIndex[2 * lo + 1];
      bool is_compat = meta & 1;
      if (!is_compat || compat) {
        uint32_t len = (meta >> 1) & 0x7F, off = meta >> 8;
        for (uint32_t k = 0; k < len; ++k) decompose(kDecompData[off + k], compat, out);
        return;
      }
    }
  }
  out.push_back(cp);
}

char32_t compose_pair(char32_t a, char32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  size_t n = std::size(kComposePairs) / 3;
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    const uint32_t* e = kComposePairs + 3 * mid;
    if (e[0] < a || (e[0] == a && e[1] < b))
      lo = mid + 1;
    else
      hi = mid;
  }
  if (lo < n && kComposePairs[3 * lo] == a && kComposePairs[3 * lo + 1] == b)
    return kComposePairs[3 * lo + 2];
  return 0;
}

// Code points that may change under normalization or combine with a neighbour: non-zero
// combining class, a decomposition, or the second half of a composition (incl. Hangul V/T).
// A string without any of them is already normalized.
struct UnstableSet {
  std::vector<uint64_t> bits[2];  // [0] canonical forms, [1] compatibility forms
  UnstableSet() {
    for (auto& b : bits) b.assign(0x110000 / 64, 0);
    auto mark = [&](int which, uint32_t cp) { bits[which][cp / 64] |= uint64_t{1} << (cp % 64); };
    for (uint32_t e : kCombiningClass) mark(0, e >> 8), mark(1, e >> 8);
    for (size_t i = 0; i < std::size(kDecompIndex); i += 2) {
      if (!(kDecompIndex[i + 1] & 1)) mark(0, kDecompIndex[i]);
      mark(1, kDecompIndex[i]);
    }
    for (size_t i = 0; i < std::size(kComposePairs); i += 3)
      mark(0, kComposePairs[i + 1]), mark(1, kComposePairs[i + 1]);
    for (uint32_t cp = kVBase; cp < kVBase + kVCount; ++cp) mark(0, cp), mark(1, cp);
    for (uint32_t cp = kTBase + 1; cp < kTBase + kTCount; ++cp) mark(0, cp), mark(1, cp);
  }
  bool stable(std::string_view s, bool compat) const {
    const std::vector<uint64_t>& b = bits[compat ? 1 : 0];
    for (size_t i = 0; i < s.size();) {
      char32_t cp = utf8_next(s, i);
      if (b[cp / 64] >> (cp % 64) & 1) return false;
    }
    return true;
  }
};

const UnstableSet& unstable_set() {
  static const UnstableSet set;
  return set;
}

}  // namespace

std::string unicode_normalize(std::string_view s, NormForm form) {
  const bool compat = form == NormForm::kNFKC || form == NormForm::kNFKD;
  const bool composed = form == NormForm::kNFC || form == NormForm::kNFKC;
  // Fast path: code points below U+00A0 never change, and below U+0300 nothing changes under
  // the canonical forms.
  const unsigned char limit = compat ? 0xC2 : 0xCC;
  bool trivial = true;
  for (unsigned char c : s)
    if (c >= limit) {
      trivial = false;
      break;
    }
  if (trivial) return std::string(s);
  if (composed && unstable_set().stable(s, compat)) return std::string(s);

  std::vector<char32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) decompose(utf8_next(s, i), compat, cps);
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (combining_class(cps[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < cps.size() && combining_class(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + i, cps.begin() + j, [](char32_t a, char32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }
  if (composed) {
    size_t out_len = 0;
    size_t starter = 0;
    bool have_starter = false;
    int last_ccc = 0;  // class of the last character kept after the starter
    for (size_t i = 0; i < cps.size(); ++i) {
      char32_t c = cps[i];
      int ccc = combining_class(c);
      if (have_starter) {
        bool adjacent = out_len == starter + 1;
        if (adjacent || (last_ccc != 0 && last_ccc < ccc)) {
          char32_t comp = compose_pair(cps[starter], c);
          if (comp) {
            cps[starter] = comp;
            continue;
          }
        }
      }
      if (ccc == 0) {
        starter = out_len;
        have_starter = true;
      }
      last_ccc = ccc;
      cps[out_len++] = c;
    }
    cps.resize(out_len);
  }
  std::string out;
  out.reserve(s.size() + 8);
  for (char32_t c : cps) utf8_append(out, c);
  return out;
}

std::string unicode_lowercase(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t cp = utf8_next(s, i);
    if (cp < 0x80) {
      out.push_back(cp >= 'A' && cp <= 'Z' ? static_cast<char>(cp + 32) : static_cast<char>(cp));
      continue;
    }
    size_t n = std::size(kLowerIndex) / 2;
    size_t lo = 0, hi = n;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      if (kLowerIndex[2 * mid] < cp)
        lo = mid + 1;
      else
        hi = mid;
    }
    if (lo < n && kLowerIndex[2 * lo] == cp) {
      uint32_t meta = kLowerIndex[2 * lo + 1];
      for (uint32_t k = 0; k < (meta & 0xFF); ++k) utf8_append(out, kLowerData[(meta >> 8) + k]);
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  return out;
}

}  // namespace meshlm::tok
