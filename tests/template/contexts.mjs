// Render contexts for the chat-template conformance test: every real template is rendered with
// each of these by @huggingface/jinja and by meshlm, and the bytes must match (or both raise).

const weatherTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city — \"quoted\" and unicode: 天气 🌦",
    parameters: {
      type: "object",
      properties: {
        location: { type: "string", description: "City and country, e.g. Paris, FR" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"], default: "celsius" },
        days: { type: "integer", minimum: 1, maximum: 14 },
        threshold: { type: "number", default: 0.5 },
        options: {
          type: "object",
          properties: {
            hourly: { type: "boolean", default: false },
            fields: { type: "array", items: { type: "string" } },
            "2": { type: "null", description: "an integer-like key" },
          },
          required: ["hourly"],
        },
      },
      required: ["location"],
    },
  },
};

const searchTool = {
  type: "function",
  function: {
    name: "search",
    description: "Search the web.\nReturns {title, url} objects.",
    parameters: {
      type: "object",
      properties: { query: { type: "string" }, top_k: { type: "integer", default: 5 } },
      required: ["query"],
    },
    return: { type: "array" },
  },
};

const sys = { role: "system", content: "You are a helpful assistant." };
const user = (content) => ({ role: "user", content });
const assistant = (content, extra = {}) => ({ role: "assistant", content, ...extra });
const toolCall = (id, name, args) => ({ id, type: "function", function: { name, arguments: args } });

export const contexts = [
  { name: "system+user", vars: { messages: [sys, user("Hello!")], add_generation_prompt: true } },
  { name: "user-only-no-gen", vars: { messages: [user("Hi there")], add_generation_prompt: false } },
  { name: "user-only-gen-missing", vars: { messages: [user("What is 2+2?")] } },
  {
    name: "multi-turn",
    vars: {
      messages: [sys, user("Name a color."), assistant("Blue."), user("Another one?")],
      add_generation_prompt: true,
    },
  },
  {
    name: "multi-turn-no-system",
    vars: {
      messages: [user("a"), assistant("b"), user("c"), assistant("d"), user("e")],
      add_generation_prompt: true,
    },
  },
  {
    name: "ends-with-assistant",
    vars: { messages: [user("Say hi"), assistant("Hi!")], add_generation_prompt: false },
  },
  {
    name: "empty-content",
    vars: { messages: [{ role: "system", content: "" }, user(""), assistant(""), user("")], add_generation_prompt: true },
  },
  {
    name: "unicode",
    vars: {
      messages: [
        { role: "system", content: "Réponds en français. Ünïcödé ß ﬁ İ" },
        user("你好，世界！🌍👋🏽 مرحبا بالعالم \u00a0nbsp\u3000ideographic space\u3000"),
        assistant("こんにちは 😀 — e\u0301 (combining)"),
        user("\u2028line separator\u2029 and zero\u200bwidth"),
      ],
      add_generation_prompt: true,
    },
  },
  {
    name: "quotes-newlines-braces",
    vars: {
      messages: [
        sys,
        user("He said \"hi\" and 'bye'.\nNew line\ttab\\backslash {{ not a tag }} {% raw %} {# c #} }} {{"),
        assistant("```json\n{\"a\": [1, 2, {\"b\": null}]}\n```"),
        user("  leading and trailing whitespace  \n\n"),
      ],
      add_generation_prompt: true,
    },
  },
  {
    name: "think-in-content",
    vars: {
      messages: [
        user("Solve x+1=2"),
        assistant("<think>\nx = 2 - 1\n</think>\n\nx = 1"),
        user("And x+2=3?"),
      ],
      add_generation_prompt: true,
    },
  },
  {
    name: "reasoning-content-last",
    vars: {
      messages: [user("Why?"), assistant("Because.", { reasoning_content: "  Let me think...\n" })],
      add_generation_prompt: false,
    },
  },
  {
    name: "enable-thinking-false",
    vars: { messages: [user("Quick answer please")], add_generation_prompt: true, enable_thinking: false },
  },
  {
    name: "enable-thinking-true",
    vars: {
      messages: [sys, user("Think hard"), assistant("Done", { reasoning_content: "" }), user("again")],
      add_generation_prompt: true,
      enable_thinking: true,
    },
  },
  {
    name: "tools-no-calls",
    vars: { messages: [sys, user("Weather in Paris?")], tools: [weatherTool, searchTool], add_generation_prompt: true },
  },
  {
    name: "tools-without-system",
    vars: { messages: [user("Weather in Paris?")], tools: [weatherTool], add_generation_prompt: true, date_string: "26 Jul 2024" },
  },
  {
    name: "tool-call-roundtrip",
    vars: {
      messages: [
        sys,
        user("What's the weather in Paris and Tokyo?"),
        assistant("", {
          tool_calls: [
            toolCall("call12345", "get_weather", { location: "Paris, FR", unit: "celsius" }),
            toolCall("call67890", "get_weather", "{\"location\": \"Tokyo, JP\"}"),
          ],
        }),
        { role: "tool", tool_call_id: "call12345", name: "get_weather", content: "{\"temp\": 21.5}" },
        { role: "tool", tool_call_id: "call67890", name: "get_weather", content: "rainy, 18°C" },
        assistant("Paris: 21.5°C; Tokyo: rainy, 18°C."),
        user("Thanks"),
      ],
      tools: [weatherTool],
      add_generation_prompt: true,
      date_string: "01 Jan 2025",
    },
  },
  {
    name: "single-tool-call-null-content",
    vars: {
      messages: [
        user("Search for jinja"),
        assistant(null, { tool_calls: [toolCall("abcdefghi", "search", "{\"query\": \"jinja\"}")] }),
        { role: "tool", tool_call_id: "abcdefghi", content: "[{\"title\": \"Jinja\"}]" },
      ],
      tools: [searchTool],
      add_generation_prompt: true,
      date_string: "26 Jul 2024",
    },
  },
  {
    name: "tool-call-object-args",
    vars: {
      messages: [
        user("Search"),
        assistant("Let me search.", { tool_calls: [toolCall("abcdefghi", "search", { query: "x", top_k: 3 })] }),
        { role: "tool", tool_call_id: "abcdefghi", content: { results: [1, 2.5, true, null] } },
      ],
      tools: [searchTool],
      add_generation_prompt: true,
      date_string: "26 Jul 2024",
    },
  },
  {
    name: "llama-tools-in-system",
    vars: {
      messages: [sys, user("Use a tool")],
      tools: [searchTool],
      tools_in_user_message: false,
      date_string: "15 Mar 2025",
      add_generation_prompt: true,
    },
  },
  {
    name: "llama-custom-tools",
    vars: { messages: [user("hi")], custom_tools: [weatherTool], date_string: "02 Feb 2024", add_generation_prompt: true },
  },
  {
    name: "content-parts",
    vars: {
      messages: [
        { role: "system", content: [{ type: "text", text: "System in parts." }] },
        { role: "user", content: [{ type: "image" }, { type: "text", text: "  Describe this image.  " }] },
      ],
      add_generation_prompt: true,
    },
  },
  {
    name: "roles-not-alternating",
    vars: { messages: [user("one"), user("two")], add_generation_prompt: true },
  },
  {
    name: "assistant-first",
    vars: { messages: [assistant("I start"), user("ok")], add_generation_prompt: true },
  },
  { name: "no-messages", vars: { messages: [], add_generation_prompt: true } },
  {
    name: "two-system-messages",
    vars: { messages: [sys, { role: "system", content: "Second system." }, user("hi")], add_generation_prompt: true },
  },
  {
    name: "numbers-and-bools-in-content",
    vars: { messages: [user(42), assistant(true), user(1.5)], add_generation_prompt: true },
  },
  {
    name: "long-conversation",
    vars: {
      messages: Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? user(`question ${i}`) : assistant(`answer ${i}`))),
      add_generation_prompt: true,
    },
  },
  {
    name: "custom-bos-eos",
    vars: { messages: [user("x")], bos_token: "<BOS>", eos_token: "<EOS>", add_generation_prompt: true },
  },
  {
    name: "rag-documents",
    vars: {
      messages: [user("What is in the docs?")],
      documents: [{ title: "Doc A", text: "Alpha" }, { title: "Doc B", text: "Beta \"quoted\"" }],
      add_generation_prompt: true,
    },
  },
];
