// JavaScript string and number semantics that @huggingface/jinja inherits from its host language:
// the \s whitespace set, trim(), UTF-16 lengths, Number.prototype.toString, parseInt/parseFloat,
// JSON.stringify quoting. Strings are UTF-8 here; invalid bytes decode as U+FFFD.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::tmpl::js {

// UTF-8 itself (decoding with U+FFFD for each invalid byte, encoding) is core/utf8.h.
std::vector<char32_t> code_points(std::string_view s);
std::u16string to_utf16(std::string_view s);
// Lone surrogates become U+FFFD (what node writes for them on stdout).
std::string from_utf16(std::u16string_view s);
size_t utf16_length(std::string_view s);

// JavaScript's WhiteSpace + LineTerminator set (RegExp \s, String.prototype.trim).
bool is_space(char32_t c);
std::string trim(std::string_view s);
std::string trim_start(std::string_view s);
std::string trim_end(std::string_view s);

std::string to_upper(std::string_view s);
std::string to_lower(std::string_view s);
// /\b\w/g -> upper case: ASCII word characters that start an ASCII word.
std::string title_case(std::string_view s);
// charAt(0).toUpperCase() + slice(1), on UTF-16 units.
std::string capitalize(std::string_view s);

// Number.prototype.toString(): "1", "0.5", "1e+21", "NaN", "-Infinity".
std::string number_to_string(double d);
// FloatValue.toString() of @huggingface/jinja: "-0.0", "2.0", "2.5".
std::string float_to_string(double d);
// parseInt(s, 10) / parseFloat(s); NaN when no number prefix.
double parse_int(std::string_view s);
double parse_float(std::string_view s);
// ToNumber(string) as used by loose equality; NaN when not numeric.
double string_to_number(std::string_view s);

// JSON.stringify(string), optionally with non-ASCII (>= 0x7F) escaped as \uXXXX UTF-16 units.
std::string json_quote(std::string_view s, bool ensure_ascii);

}  // namespace meshlm::tmpl::js
