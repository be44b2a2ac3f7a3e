// Request parsing and the reasoning / tool-call output parser.
#include <gtest/gtest.h>

#include "server/api_error.h"
#include "server/openai_request.h"
#include "server/output_parser.h"

namespace meshlm::server {
namespace {

int status_of(const std::string& body, bool chat = true) {
  try {
    if (chat)
      parse_chat_request(body);
    else
      parse_completion_request(body);
  } catch (const ApiError& e) {
    EXPECT_FALSE(e.to_json()["error"]["message"].get<std::string>().empty());
    return e.status();
  }
  return 200;
}

TEST(ChatRequest, ParsesParameters) {
  auto r = parse_chat_request(R"({"model":"m","messages":[{"role":"developer","content":"sys"},
    {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],
    "temperature":0.5,"top_p":0.9,"top_k":40,"min_p":0.05,"seed":7,"stop":"END",
    "max_completion_tokens":12,"presence_penalty":0.5,"frequency_penalty":0.25,
    "repetition_penalty":1.1,"logprobs":true,"top_logprobs":2,"stream":true,
    "stream_options":{"include_usage":true},"ignore_eos":true,"n":1,"whatever":{"x":1}})");
  EXPECT_EQ(r.messages[0]["role"], "system");
  EXPECT_EQ(r.messages[1]["content"], "a\nb");
  EXPECT_FLOAT_EQ(r.gen.sampling.temperature, 0.5f);
  EXPECT_EQ(r.gen.sampling.top_k, 40);
  EXPECT_TRUE(r.gen.sampling.has_seed);
  EXPECT_EQ(r.gen.sampling.seed, 7u);
  EXPECT_EQ(r.gen.stop, std::vector<std::string>{"END"});
  EXPECT_EQ(*r.gen.max_tokens, 12);
  EXPECT_TRUE(r.gen.sampling.logprobs);
  EXPECT_EQ(r.gen.sampling.top_logprobs, 2);
  EXPECT_TRUE(r.gen.stream && r.gen.include_usage && r.gen.ignore_eos);
}

TEST(ChatRequest, RejectsClientMistakesWith400) {
  EXPECT_EQ(status_of("{"), 400);
  EXPECT_EQ(status_of("[]"), 400);
  EXPECT_EQ(status_of(R"({"messages":"hi"})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[]})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"wizard","content":"x"}]})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"content":"x"}]})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":5}]})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"temperature":"hot"})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"temperature":3})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":0})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"max_tokens":1.5})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"n":2})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"stop":[1]})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"stream":"yes"})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"tools":{}})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"top_logprobs":3})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"seed":"1"})"), 400);
  EXPECT_EQ(status_of(R"({"messages":[{"role":"user","content":"x"}],"n":1,"temperature":null})"),
            200);
}

TEST(ChatRequest, ToolChoice) {
  const std::string tools =
      R"("tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}])";
  auto with = [&](const std::string& extra) {
    return R"({"messages":[{"role":"user","content":"x"}],)" + extra + "}";
  };
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":"auto")")), 200);
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":"required")")), 200);
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})")), 200);
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":{"type":"function","function":{"name":"nope"}})")), 400);
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":"sometimes")")), 400);
  EXPECT_EQ(status_of(with(tools + R"(,"tool_choice":5)")), 400);
  EXPECT_EQ(status_of(with(R"("tool_choice":"required")")), 400);
  auto r = parse_chat_request(with(tools + R"(,"tool_choice":{"type":"function","function":{"name":"get_weather"}})"));
  EXPECT_EQ(r.tool_choice_function, "get_weather");
  EXPECT_TRUE(parse_chat_request(with(tools + R"(,"tool_choice":"none")")).tool_choice_none);
}

TEST(CompletionRequest, PromptForms) {
  EXPECT_EQ(parse_completion_request(R"({"prompt":"hi"})").prompt, "hi");
  EXPECT_EQ(parse_completion_request(R"({"prompt":["hi"]})").prompt, "hi");
  EXPECT_EQ(parse_completion_request(R"({"prompt":[1,2,3]})").prompt_ids.size(), 3u);
  EXPECT_EQ(*parse_completion_request(R"({"prompt":"x"})").gen.max_tokens, 16);
  auto r = parse_completion_request(R"({"prompt":"x","logprobs":3})");
  EXPECT_TRUE(r.gen.sampling.logprobs);
  EXPECT_EQ(r.gen.sampling.top_logprobs, 3);
  EXPECT_EQ(status_of(R"({"prompt":5})", false), 400);
  EXPECT_EQ(status_of(R"({"prompt":["a","b"]})", false), 400);
  EXPECT_EQ(status_of(R"({"prompt":[-1]})", false), 400);
  EXPECT_EQ(status_of(R"({})", false), 400);
}

// Feeds text in pieces of `step` bytes and joins what the parser returns.
struct Parsed {
  std::string reasoning, content;
  std::vector<ToolCall> calls;
};
Parsed run_parser(ToolSyntax syntax, const std::string& text, size_t step,
                  bool in_reasoning = false) {
  OutputParser p(syntax, true, in_reasoning);
  Parsed out;
  for (size_t i = 0; i < text.size(); i += step) {
    auto d = p.push(text.substr(i, step));
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  auto d = p.finish(out.calls);
  out.reasoning += d.reasoning;
  out.content += d.content;
  return out;
}

TEST(OutputParser, SameResultForEveryPieceSize) {
  const std::string texts[] = {
      "<think>\nLet me think.\n</think>\n\nThe answer is 4.",
      "Plain answer with a < sign and <thin words.",
      "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
      "\"Paris\"}}\n</tool_call>",
      "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": "
      "\"b\", "
      "\"arguments\": {\"x\": 1}}\n</tool_call>",
      "<tool_call>{not json</tool_call> oops",
      "<think>unfinished thoughts",
  };
  for (const auto& t : texts) {
    Parsed whole = run_parser(ToolSyntax::Hermes, t, t.size());
    for (size_t step : {1, 2, 3, 7}) {
      Parsed p = run_parser(ToolSyntax::Hermes, t, step);
      EXPECT_EQ(p.reasoning, whole.reasoning) << t << " step " << step;
      EXPECT_EQ(p.content, whole.content) << t << " step " << step;
      EXPECT_EQ(p.calls.size(), whole.calls.size()) << t;
    }
  }
}

TEST(OutputParser, ReasoningAndToolCalls) {
  auto p = run_parser(ToolSyntax::Hermes, "<think>\nhmm\n</think>\n\nHi!", 3);
  EXPECT_EQ(p.reasoning, "\nhmm\n");
  EXPECT_EQ(p.content, "Hi!");
  p = run_parser(ToolSyntax::Hermes, "reasoning only</think>\n\nDone", 2, /*in_reasoning=*/true);
  EXPECT_EQ(p.reasoning, "reasoning only");
  EXPECT_EQ(p.content, "Done");
  p = run_parser(ToolSyntax::Hermes,
                 "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                 "\"Paris\"}}\n</tool_call>",
                 4);
  EXPECT_EQ(p.content, "Sure.\n");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments)["city"], "Paris");
  EXPECT_EQ(p.calls[0].id.rfind("call_", 0), 0u);
  // Looks like a tool call but is not: returned as text, unchanged.
  const std::string bad = "<tool_call>{not json</tool_call> oops";
  p = run_parser(ToolSyntax::Hermes, bad, 5);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, bad);
  p = run_parser(ToolSyntax::None, "<tool_call>{\"name\":\"a\",\"arguments\":{}}</tool_call>", 3);
  EXPECT_TRUE(p.calls.empty());
}

TEST(OutputParser, LlamaJsonCalls) {
  auto p = run_parser(ToolSyntax::LlamaJson,
                      "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}", 3);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.content, "");
  p = run_parser(ToolSyntax::LlamaJson, "{\"not\": \"a call\"}", 3);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "{\"not\": \"a call\"}");
  p = run_parser(ToolSyntax::LlamaJson, "Hello {\"name\": \"x\"}", 3);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, "Hello {\"name\": \"x\"}");
}

}  // namespace
}  // namespace meshlm::server
