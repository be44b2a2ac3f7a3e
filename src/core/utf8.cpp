#include "core/utf8.h"

#include <cstring>

namespace meshlm {

namespace {

// What a lead byte of 0x80 or more allows: the sequence's length (0 when no sequence starts
// with it) and the range of its second byte, which rules out overlongs, surrogates and code
// points past U+10FFFF.
struct Lead {
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;
};

Lead lead_of(unsigned char c) {
  Lead l;
  if (c >= 0xC2 && c <= 0xDF) {
    l.len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    l.len = 3;
    if (c == 0xE0) l.lo = 0xA0;
    if (c == 0xED) l.hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    l.len = 4;
    if (c == 0xF0) l.lo = 0x90;
    if (c == 0xF4) l.hi = 0x8F;
  }
  return l;
}

}  // namespace

size_t utf8_valid_len(std::string_view s, size_t i, char32_t* cp) {
  const size_t n = s.size();
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  const Lead lead = lead_of(c);
  const size_t len = lead.len;
  if (len == 0) return 0;
  if (i + len > n) return 0;
  if (b(i + 1) < lead.lo || b(i + 1) > lead.hi) return 0;
  for (size_t k = 2; k < len; ++k)
    if ((b(i + k) & 0xC0) != 0x80) return 0;
  size_t j = i;
  *cp = utf8_next(s, j);
  return len;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp >= 0xD800 && cp <= 0xDFFF) cp = kReplacementChar;
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool utf8_is_valid(std::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    if (i + 8 <= s.size()) {  // skip ASCII 8 bytes at a time
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ULL) == 0) {
        i += 8;
        continue;
      }
    }
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t len = utf8_valid_len(s, i, &cp);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

// Length of the maximal prefix of an invalid sequence at s[i] that could start a valid one
// (at least 1): the unit that from_utf8_lossy replaces by a single U+FFFD.
static size_t invalid_subpart_len(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const Lead lead = lead_of(b(i));
  if (lead.len == 0) return 1;
  size_t k = 1;
  if (i + k < s.size() && b(i + k) >= lead.lo && b(i + k) <= lead.hi) {
    ++k;
    while (k < lead.len && i + k < s.size() && (b(i + k) & 0xC0) == 0x80) ++k;
  }
  return k;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  char32_t cp;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    while (i < s.size()) {
      if (static_cast<unsigned char>(s[i]) < 0x80) {
        ++i;
        continue;
      }
      size_t len = utf8_valid_len(s, i, &cp);
      if (len == 0) break;
      i += len;
    }
    out.append(s.substr(start, i - start));
    if (i < s.size()) {
      out.append(kReplacementUtf8);
      i += invalid_subpart_len(s, i);
    }
  }
  return out;
}

size_t utf8_incomplete_tail(std::string_view s) {
  size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    if (c < 0xC0) return 0;
    return utf8_char_len(c) > back ? back : 0;
  }
  return 0;
}

}  // namespace meshlm
