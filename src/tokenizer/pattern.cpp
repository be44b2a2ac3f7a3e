#include "tokenizer/pattern.h"

#include <algorithm>

#include "core/error.h"

namespace meshlm::tok {

Pattern Pattern::from_json(const JsonValue& v, std::string_view what) {
  if (const JsonValue* s = v.find("String")) return literal(s->as_string(what));
  if (const JsonValue* r = v.find("Regex")) {
    Pattern p;
    p.regex_ = std::make_shared<const Regex>(r->as_string(what));
    return p;
  }
  throw Error("tokenizer", std::string(what) + ": pattern must be {\"String\"} or {\"Regex\"}");
}

Pattern Pattern::literal(std::string s) {
  Pattern p;
  p.literal_ = std::move(s);
  return p;
}

std::vector<Span> Pattern::find_matches(std::string_view text) const {
  std::vector<Span> spans;
  if (text.empty()) {
    spans.push_back({0, 0, false});
    return spans;
  }
  size_t prev = 0;
  auto add = [&](size_t b, size_t e) {
    if (prev != b) spans.push_back({prev, b, false});
    spans.push_back({b, e, true});
    prev = e;
  };
  if (regex_) {
    std::vector<std::pair<size_t, size_t>> matches;
    regex_->find_all(text, matches);
    for (auto [b, e] : matches) add(b, e);
  } else if (!literal_.empty()) {
    for (size_t pos = text.find(literal_); pos != std::string_view::npos;
         pos = text.find(literal_, pos + literal_.size()))
      add(pos, pos + literal_.size());
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), false});
  return spans;
}

SplitBehavior split_behavior_from_string(std::string_view name) {
  if (name == "Removed") return SplitBehavior::kRemoved;
  if (name == "Isolated") return SplitBehavior::kIsolated;
  if (name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (name == "Contiguous") return SplitBehavior::kContiguous;
  throw Error("tokenizer", "unknown split behavior '" + std::string(name) + "'");
}

std::vector<std::pair<size_t, size_t>> split_spans(std::vector<Span> spans,
                                                   SplitBehavior behavior) {
  struct Out {
    size_t b, e;
    bool remove;
  };
  std::vector<Out> acc;
  acc.reserve(spans.size());
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (auto& s : spans) acc.push_back({s.begin, s.end, false});
      break;
    case SplitBehavior::kRemoved:
      for (auto& s : spans) acc.push_back({s.begin, s.end, s.match});
      break;
    case SplitBehavior::kContiguous:
      for (auto& s : spans) {
        if (s.match == previous_match && !acc.empty())
          acc.back().e = s.end;
        else
          acc.push_back({s.begin, s.end, false});
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (auto& s : spans) {
        if (s.match && !previous_match && !acc.empty())
          acc.back().e = s.end;
        else
          acc.push_back({s.begin, s.end, false});
        previous_match = s.match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = spans.rbegin(); it != spans.rend(); ++it) {
        if (it->match && !previous_match && !acc.empty())
          acc.back().b = it->begin;
        else
          acc.push_back({it->begin, it->end, false});
        previous_match = it->match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
  }
  std::vector<std::pair<size_t, size_t>> out;
  out.reserve(acc.size());
  for (auto& o : acc)
    if (!o.remove && o.b != o.e) out.emplace_back(o.b, o.e);
  return out;
}

}  // namespace meshlm::tok
