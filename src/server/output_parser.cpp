#include "server/output_parser.h"

#include <atomic>
#include <cctype>
#include <chrono>
#include <nlohmann/json.hpp>

namespace meshlm::server {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";
constexpr std::string_view kToolOpen = "<tool_call>";
constexpr std::string_view kToolClose = "</tool_call>";

// Length of the longest suffix of `text` that is a proper prefix of `tag` (text that may still
// become the tag and must be held back).
size_t partial_suffix(std::string_view text, std::string_view tag) {
  for (size_t n = std::min(text.size(), tag.size() - 1); n > 0; --n)
    if (text.substr(text.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

size_t skip_space(std::string_view s, size_t i = 0) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

std::string make_call_id() {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt =
      static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  uint64_t x = (salt + counter.fetch_add(1)) * 0x9E3779B97F4A7C15ull;
  static const char* kDigits = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) {
    id += kDigits[x % 36];
    x = x / 36 + (x << 59) + 0x2545F4914F6CDD1Dull * (i + 1);
  }
  return id;
}

bool call_from_json(const nlohmann::json& j, const char* args_key, std::vector<ToolCall>& calls) {
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  const nlohmann::json* args = nullptr;
  for (const char* key : {args_key, "arguments", "parameters"})
    if (j.contains(key)) {
      args = &j[key];
      break;
    }
  ToolCall call;
  call.id = make_call_id();
  call.name = j["name"].get<std::string>();
  if (!args || args->is_null())
    call.arguments = "{}";
  else if (args->is_string())
    call.arguments = args->get<std::string>();
  else if (args->is_object())
    call.arguments = args->dump();
  else
    return false;
  calls.push_back(std::move(call));
  return true;
}

}  // namespace

bool parse_tool_calls(ToolSyntax syntax, const std::string& text, std::vector<ToolCall>& calls) {
  std::vector<ToolCall> found;
  if (syntax == ToolSyntax::Hermes) {
    size_t i = skip_space(text);
    if (i == text.size()) return false;
    while (i < text.size()) {
      if (text.compare(i, kToolOpen.size(), kToolOpen) != 0) return false;
      i += kToolOpen.size();
      size_t end = text.find(kToolClose, i);
      std::string body = text.substr(i, end == std::string::npos ? std::string::npos : end - i);
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_discarded() || !call_from_json(j, "arguments", found)) return false;
      i = end == std::string::npos ? text.size() : skip_space(text, end + kToolClose.size());
    }
  } else if (syntax == ToolSyntax::LlamaJson) {
    // One call, or several separated by ';' as some Llama outputs do.
    size_t start = 0;
    for (;;) {
      size_t semi = text.find(';', start);
      // Only split on ';' that ends a complete JSON object.
      std::string piece = text.substr(start);
      auto j = nlohmann::json::parse(piece, nullptr, false);
      if (!j.is_discarded()) {
        if (!call_from_json(j, "parameters", found)) return false;
        break;
      }
      if (semi == std::string::npos) return false;
      auto head = nlohmann::json::parse(text.substr(start, semi - start), nullptr, false);
      if (head.is_discarded() || !call_from_json(head, "parameters", found)) return false;
      start = semi + 1;
    }
  } else {
    return false;
  }
  for (auto& c : found) calls.push_back(std::move(c));
  return !found.empty();
}

OutputParser::OutputParser(ToolSyntax tools, bool parse_reasoning, bool starts_in_reasoning)
    : tools_(tools),
      parse_reasoning_(parse_reasoning),
      phase_(parse_reasoning && starts_in_reasoning ? Phase::Reasoning
             : parse_reasoning                      ? Phase::Start
                                                    : Phase::Content) {}

OutputDelta OutputParser::push(std::string_view text) {
  OutputDelta out;
  pending_.append(text);
  step(out, false);
  return out;
}

OutputDelta OutputParser::finish(std::vector<ToolCall>& calls) {
  OutputDelta out;
  step(out, true);
  if (phase_ == Phase::ToolBuffer) {
    if (!parse_tool_calls(tools_, tool_text_, calls)) out.content += tool_text_;
    tool_text_.clear();
  }
  return out;
}

void OutputParser::step(OutputDelta& out, bool final) {
  for (;;) {
    switch (phase_) {
      case Phase::Start: {
        // Is the output opening a <think> block?
        size_t i = skip_space(pending_);
        std::string_view rest = std::string_view(pending_).substr(i);
        if (rest.size() >= kThinkOpen.size()) {
          if (rest.substr(0, kThinkOpen.size()) == kThinkOpen) {
            pending_.erase(0, i + kThinkOpen.size());
            phase_ = Phase::Reasoning;
          } else {
            phase_ = Phase::Content;
          }
          continue;
        }
        if (final || kThinkOpen.substr(0, rest.size()) != rest) {
          phase_ = Phase::Content;
          continue;
        }
        return;  // still undecided
      }
      case Phase::Reasoning: {
        size_t close = pending_.find(kThinkClose);
        if (close != std::string::npos) {
          out.reasoning += pending_.substr(0, close);
          pending_.erase(0, close + kThinkClose.size());
          after_think_ = true;
          phase_ = Phase::Content;
          continue;
        }
        size_t keep = final ? 0 : partial_suffix(pending_, kThinkClose);
        out.reasoning += pending_.substr(0, pending_.size() - keep);
        pending_.erase(0, pending_.size() - keep);
        return;
      }
      case Phase::Content: {
        if (!content_started_) {
          // Leading whitespace before reasoning/tool decisions: skip it after </think>, and
          // hold it while a Llama JSON call may still begin.
          size_t i = skip_space(pending_);
          if (after_think_) {
            // The blank line a model writes after </think> belongs to neither part.
            pending_.erase(0, i);
            i = 0;
          }
          if (i == pending_.size() && !final) return;
          content_started_ = true;
          if (tools_ == ToolSyntax::LlamaJson && i < pending_.size() && pending_[i] == '{') {
            tool_text_ = pending_;
            pending_.clear();
            phase_ = Phase::ToolBuffer;
            continue;
          }
        }
        if (tools_ == ToolSyntax::Hermes) {
          size_t open = pending_.find(kToolOpen);
          if (open != std::string::npos) {
            out.content += pending_.substr(0, open);
            tool_text_ = pending_.substr(open);
            pending_.clear();
            phase_ = Phase::ToolBuffer;
            continue;
          }
          size_t keep = final ? 0 : partial_suffix(pending_, kToolOpen);
          out.content += pending_.substr(0, pending_.size() - keep);
          pending_.erase(0, pending_.size() - keep);
          return;
        }
        out.content += pending_;
        pending_.clear();
        return;
      }
      case Phase::ToolBuffer:
        tool_text_ += pending_;
        pending_.clear();
        return;
    }
  }
}

}  // namespace meshlm::server
