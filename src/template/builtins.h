// Built-in functions, methods and tests of the template language, as @huggingface/jinja
// defines them: string methods (strip, split, startswith, ...), dict methods (get, items, keys,
// values, dictsort), the tests of `x is ...`, and the globals namespace(), range(),
// raise_exception(), strftime_now(), true/false/none.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "template/value.h"

namespace meshlm::tmpl {

// `s.name` on a string: a bound method, the `length` integer, or undefined.
Value string_member(Heap& heap, const Value& s, std::string_view name);
// `d.name` on a dict when it has no such key: a bound method or undefined.
Value object_member(Heap& heap, const Value& d, std::string_view name);

// Applies a named test (`x is name`, selectattr's test). Throws Failure for unknown tests.
bool has_test(std::string_view name);
bool run_test(std::string_view name, const Value& operand, const Value* argument);

// Adds the globals of a fresh render environment.
void install_globals(Heap& heap, Env* global);

// compareRuntimeValues() used by sort and dictsort (-1, 0, 1; throws Failure on mixed types).
int compare_values(const Value& a, const Value& b, bool case_sensitive);
// A stable merge sort that is safe with any comparator (like Array.prototype.sort).
void stable_sort_values(std::vector<Value>& items,
                        const std::function<int(const Value&, const Value&)>& compare);
// getAttributeValue(): "a.b.0" paths through dicts, namespaces and lists.
Value attribute_path(const Value& item, std::string_view path);
// Python-style slicing of [0, length) (utils.ts slice()): the selected indices.
std::vector<size_t> slice_indices(size_t length, const Value& start, const Value& stop,
                                  const Value& step);
// Python str.replace with JavaScript's code-point-aware empty pattern (utils.ts replace()).
std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        double count);

}  // namespace meshlm::tmpl
