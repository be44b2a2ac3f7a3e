#include "template/js_string.h"

#include <locale.h>
#include <wctype.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "core/hex.h"
#include "core/utf8.h"

namespace meshlm::tmpl::js {

std::vector<char32_t> code_points(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) out.push_back(utf8_next_lossy(s, i));
  return out;
}

std::u16string to_utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp = utf8_next_lossy(s, i);
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out += static_cast<char16_t>(0xD800 + (cp >> 10));
      out += static_cast<char16_t>(0xDC00 + (cp & 0x3FF));
    } else {
      out += static_cast<char16_t>(cp);
    }
  }
  return out;
}

std::string from_utf16(std::u16string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      c = 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    }
    utf8_append(out, c);
  }
  return out;
}

size_t utf16_length(std::string_view s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size();) n += utf8_next_lossy(s, i) >= 0x10000 ? 2 : 1;
  return n;
}

bool is_space(char32_t c) {
  return c == ' ' || (c >= 0x09 && c <= 0x0D) || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000 || c == 0xFEFF;
}

static size_t first_non_space(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    size_t j = i;
    if (!is_space(utf8_next_lossy(s, j))) break;
    i = j;
  }
  return i;
}

static size_t end_of_non_space(std::string_view s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    if (!is_space(utf8_next_lossy(s, i))) end = i;
  }
  return end;
}

std::string trim_start(std::string_view s) { return std::string(s.substr(first_non_space(s))); }
std::string trim_end(std::string_view s) { return std::string(s.substr(0, end_of_non_space(s))); }
std::string trim(std::string_view s) {
  size_t b = first_non_space(s);
  return std::string(s.substr(b, std::max(b, end_of_non_space(s)) - b));
}

namespace {

locale_t utf8_locale() {
  static locale_t loc = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(0));
    return l ? l : newlocale(LC_CTYPE_MASK, "C.utf8", static_cast<locale_t>(0));
  }();
  return loc;
}

char32_t map_case(char32_t c, bool upper) {
  if (c < 0x80) {
    if (upper && c >= 'a' && c <= 'z') return c - 32;
    if (!upper && c >= 'A' && c <= 'Z') return c + 32;
    return c;
  }
  locale_t loc = utf8_locale();
  if (!loc) return c;
  wint_t r = upper ? towupper_l(static_cast<wint_t>(c), loc) : towlower_l(static_cast<wint_t>(c), loc);
  return static_cast<char32_t>(r);
}

std::string convert_case(std::string_view s, bool upper) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t c = utf8_next_lossy(s, i);
    if (upper && c == 0xDF) {  // the one common full mapping: sharp s -> "SS"
      out += "SS";
      continue;
    }
    utf8_append(out, map_case(c, upper));
  }
  return out;
}

bool is_ascii_word(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

}  // namespace

std::string to_upper(std::string_view s) { return convert_case(s, true); }
std::string to_lower(std::string_view s) { return convert_case(s, false); }

std::string title_case(std::string_view s) {
  std::string out(s);
  bool prev_word = false;
  for (char& ch : out) {
    unsigned char c = static_cast<unsigned char>(ch);
    bool word = is_ascii_word(c);
    if (word && !prev_word && c >= 'a' && c <= 'z') ch = static_cast<char>(c - 32);
    prev_word = word;
  }
  return out;
}

std::string capitalize(std::string_view s) {
  if (s.empty()) return std::string();
  size_t i = 0;
  char32_t c = utf8_next_lossy(s, i);
  std::string out;
  utf8_append(out, c >= 0x10000 ? c : map_case(c, true));
  if (c == 0xDF) out = "SS";
  out.append(s.substr(i));
  return out;
}

std::string number_to_string(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  if (d == 0) return "0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  std::string out;
  size_t p = 0;
  if (sci[0] == '-') {
    out = "-";
    p = 1;
  }
  size_t epos = sci.find('e');
  std::string digits;
  for (size_t k = p; k < epos; ++k)
    if (sci[k] != '.') digits += sci[k];
  int e = std::atoi(sci.c_str() + epos + 1);
  int k = static_cast<int>(digits.size());
  int n = e + 1;
  if (k <= n && n <= 21) {
    out += digits + std::string(n - k, '0');
  } else if (0 < n && n <= 21) {
    out += digits.substr(0, n) + "." + digits.substr(n);
  } else if (-6 < n && n <= 0) {
    out += "0." + std::string(-n, '0') + digits;
  } else {
    out += digits.substr(0, 1);
    if (k > 1) out += "." + digits.substr(1);
    out += (n - 1 >= 0 ? "e+" : "e-") + std::to_string(std::abs(n - 1));
  }
  return out;
}

std::string float_to_string(double d) {
  if (d == 0 && std::signbit(d)) return "-0.0";
  if (std::isfinite(d) && std::fmod(d, 1.0) == 0) {
    if (std::fabs(d) >= 1e21) return number_to_string(d);
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", d);
    return buf;
  }
  return number_to_string(d);
}

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Length of the longest StrDecimalLiteral prefix of s (sign included), 0 if none.
size_t decimal_prefix(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (s.substr(i, 8) == "Infinity") return i + 8;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
  size_t end = int_digits ? i : 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++frac_digits;
    if (int_digits || frac_digits) end = i;
  }
  if (!int_digits && !frac_digits) return 0;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    size_t exp_digits = 0;
    while (j < s.size() && is_digit(s[j])) ++j, ++exp_digits;
    if (exp_digits) end = j;
  }
  return end;
}

double strtod_of(std::string_view s) {
  std::string tmp(s);
  if (tmp.find("Infinity") != std::string::npos)
    return tmp[0] == '-' ? -INFINITY : INFINITY;
  return std::strtod(tmp.c_str(), nullptr);
}

}  // namespace

double parse_int(std::string_view s) {
  s = s.substr(first_non_space(s));
  size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  size_t start = i;
  while (i < s.size() && is_digit(s[i])) ++i;
  if (i == start) return NAN;
  double v = std::strtod(std::string(s.substr(start, i - start)).c_str(), nullptr);
  return neg ? -v : v;
}

double parse_float(std::string_view s) {
  s = s.substr(first_non_space(s));
  size_t n = decimal_prefix(s);
  if (n == 0) return NAN;
  return strtod_of(s.substr(0, n));
}

double string_to_number(std::string_view s) {
  std::string t = trim(s);
  if (t.empty()) return 0;
  if (t.size() > 2 && t[0] == '0') {
    int base = (t[1] == 'x' || t[1] == 'X') ? 16 : (t[1] == 'o' || t[1] == 'O') ? 8
               : (t[1] == 'b' || t[1] == 'B') ? 2 : 0;
    if (base) {
      double v = 0;
      for (size_t i = 2; i < t.size(); ++i) {
        char c = t[i];
        int d = is_digit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : 99;
        if (d >= base) return NAN;
        v = v * base + d;
      }
      return v;
    }
  }
  size_t n = decimal_prefix(t);
  if (n != t.size()) return NAN;
  return strtod_of(t);
}

std::string json_quote(std::string_view s, bool ensure_ascii) {
  std::string out = "\"";
  auto escape_unit = [&](unsigned u) { out += "\\u" + to_hex(u, 4); };
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    char32_t c = utf8_next_lossy(s, i);
    switch (c) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      default: break;
    }
    if (c < 0x20) {
      escape_unit(c);
    } else if (ensure_ascii && c >= 0x7F) {
      if (c >= 0x10000) {
        escape_unit(0xD800 + ((c - 0x10000) >> 10));
        escape_unit(0xDC00 + ((c - 0x10000) & 0x3FF));
      } else {
        escape_unit(c);
      }
    } else if (c == 0xFFFD && !(i - start == 3)) {
      utf8_append(out, c);
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  out += "\"";
  return out;
}

}  // namespace meshlm::tmpl::js
