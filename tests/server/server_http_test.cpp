// The HTTP server in-process over a fake pipeline: what a real model cannot easily show —
// a stage that is down (503), a pipeline that fails mid-stream, shutdown with requests open.
#include <gtest/gtest.h>

#include <future>
#include <httplib.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "fake_pipeline.h"
#include "server/server.h"

namespace meshlm::server {
namespace {

using nlohmann::json;

const std::string kTokenizerDir = MESHLM_QWEN3_TOKENIZER_DIR;

class ServerHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kTokenizerDir + "/tokenizer.json"))
      GTEST_SKIP() << "no tokenizer at " << kTokenizerDir;
    auto pipe = std::make_unique<testing::FakePipeline>(2, 151000, /*delay_ms=*/1);
    fake_ = pipe.get();
    runtime::EngineOptions eo;
    eo.max_context = 256;
    eo.recovery_timeout_ms = recovery_ms_;
    auto engine = std::make_unique<runtime::Engine>(std::move(pipe), eo);
    ServerOptions so;
    so.port = 0;
    so.model_name = "fake";
    so.model_dir = kTokenizerDir;
    server_ =
        std::make_unique<Server>(std::move(engine), tok::Tokenizer::load_from_dir(kTokenizerDir),
                                 tmpl::ChatTemplate::load_from_dir(kTokenizerDir), so);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
  }
  void TearDown() override {
    if (!server_) return;
    server_->stop();
    thread_.join();
    server_.reset();
  }
  httplib::Result post(const json& body) {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(20, 0);
    return cli.Post("/v1/chat/completions", body.dump(), "application/json");
  }
  json chat(bool stream, int max_tokens) {
    return {{"model", "fake"},
            {"messages", {{{"role", "user"}, {"content", "hi"}}}},
            {"max_tokens", max_tokens},
            {"ignore_eos", true},
            {"stream", stream}};
  }

  testing::FakePipeline* fake_ = nullptr;
  int64_t recovery_ms_ = 0;  // the engine's recovery_timeout_ms: 0 = a lost stage fails at once
  std::unique_ptr<Server> server_;
  std::thread thread_;
  int port_ = 0;
};

TEST_F(ServerHttp, GeneratesThroughTheFakePipeline) {
  auto r = post(chat(false, 5));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto j = json::parse(r->body);
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
}

// A second turn that repeats the first's long system prompt reports the prompt tokens it took
// from the prefix cache, as OpenAI does (usage.prompt_tokens_details.cached_tokens), in the
// final stream chunk too; /metrics and /health count them.
TEST_F(ServerHttp, CachedPromptTokensAreReported) {
  std::string system;
  for (int i = 0; i < 20; ++i) system += "Rule " + std::to_string(i) + ": answer briefly. ";
  json body = {{"model", "fake"},
               {"messages", {{{"role", "system"}, {"content", system}},
                             {{"role", "user"}, {"content", "first"}}}},
               {"max_tokens", 3},
               {"ignore_eos", true}};
  auto r1 = post(body);
  ASSERT_TRUE(r1);
  ASSERT_EQ(r1->status, 200) << r1->body;
  auto j1 = json::parse(r1->body);
  EXPECT_EQ(j1["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
  body["messages"][1]["content"] = "second";
  auto r2 = post(body);
  ASSERT_TRUE(r2);
  auto j2 = json::parse(r2->body);
  const int64_t cached = j2["usage"]["prompt_tokens_details"]["cached_tokens"];
  EXPECT_GE(cached, 32 * ((j2["usage"]["prompt_tokens"].get<int64_t>() - 20) / 32)) << r2->body;
  EXPECT_LT(cached, j2["usage"]["prompt_tokens"].get<int64_t>());
  body["stream"] = true;
  body["stream_options"] = {{"include_usage", true}};
  auto r3 = post(body);
  ASSERT_TRUE(r3);
  // The same prompt as the second: at least as much of it is cached.
  const auto at = r3->body.find("\"cached_tokens\":");
  ASSERT_NE(at, std::string::npos) << r3->body;
  const int64_t cached3 = std::stoll(r3->body.substr(at + 16));
  EXPECT_GE(cached3, cached);
  httplib::Client cli("127.0.0.1", port_);
  auto m = cli.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("meshlm_prefix_cache_hits_total 2"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("meshlm_prefix_cache_hit_tokens_total " + std::to_string(cached + cached3)),
            std::string::npos);
  auto h = cli.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(json::parse(h->body)["prefix_cache"]["hits"], 2);
  EXPECT_EQ(json::parse(h->body)["kv_cache_type"], "f32");
}

TEST_F(ServerHttp, StageDownIs503) {
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().stage_state = "down";
  }
  for (bool stream : {false, true}) {
    auto r = post(chat(stream, 5));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    auto j = json::parse(r->body);
    EXPECT_NE(j["error"]["message"].get<std::string>().find("down"), std::string::npos);
    EXPECT_EQ(j["error"]["code"], "stage_unavailable");
  }
  httplib::Client cli("127.0.0.1", port_);
  auto h = cli.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 503);
  EXPECT_EQ(json::parse(h->body)["status"], "degraded");
}

// With --recovery-timeout: a request made while a stage is down is not refused; it waits with the
// engine's recovery and completes, identical, once the stage is back.
class ServerHttpRecovery : public ServerHttp {
 protected:
  void SetUp() override {
    recovery_ms_ = 600000;
    ServerHttp::SetUp();
  }
};

TEST_F(ServerHttpRecovery, RequestDuringOutageWaitsAndCompletes) {
  auto reference = post(chat(false, 6));
  ASSERT_TRUE(reference);
  ASSERT_EQ(reference->status, 200) << reference->body;
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().stage_state = "down";
    fake_->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
    fake_->shared().fail_retryable = true;
  }
  std::promise<httplib::Result> done;
  auto result = done.get_future();
  std::thread client([&] {
    httplib::Client cli("127.0.0.1", port_);
    cli.set_read_timeout(120, 0);
    done.set_value(cli.Post("/v1/chat/completions", chat(false, 6).dump(), "application/json"));
  });
  // /health says the engine is recovering (bounded wait), then the stage comes back.
  bool recovering = false;
  httplib::Client health("127.0.0.1", port_);
  for (int i = 0; i < 3000 && !recovering; ++i) {
    auto h = health.Get("/health");
    recovering = h && json::parse(h->body).value("recovering", false);
    if (!recovering) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(recovering);
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().stage_state = "ready";
    fake_->shared().fail_message.clear();
  }
  auto r = result.get();
  client.join();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto a = json::parse(reference->body), b = json::parse(r->body);
  EXPECT_EQ(a["choices"][0]["message"]["content"], b["choices"][0]["message"]["content"]);
  auto h = health.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(json::parse(h->body)["recoveries"], 1);
}

TEST_F(ServerHttp, PipelineFailureBeforeOutputIs503) {
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().fail_message = "[dist] stage 1 (10.0.0.2:9000) is down";
  }
  for (bool stream : {false, true}) {
    auto r = post(chat(stream, 5));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 503) << r->body;
    EXPECT_NE(r->body.find("10.0.0.2:9000"), std::string::npos);
  }
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().fail_message.clear();
  }
  auto r = post(chat(false, 3));  // the engine recovered
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(ServerHttp, FailureMidStreamIsAnErrorEvent) {
  // The stream has sent tokens (status 200) when the pipeline fails: an error event follows.
  // The fake fails every batch after the first 8 (prefill + 7 decode steps: 8 tokens out), so
  // the failure comes mid-stream however fast or slow the threads run.
  {
    std::lock_guard lock(fake_->shared().mutex);
    fake_->shared().fail_message = "[dist] lost stage 1";
    fake_->shared().fail_after = 8;
  }
  auto r = post(chat(true, 200));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->body.find("\"content\""), std::string::npos);
  EXPECT_NE(r->body.find("data: {\"error\""), std::string::npos) << r->body.substr(0, 300);
  EXPECT_NE(r->body.find("lost stage 1"), std::string::npos);
  EXPECT_NE(r->body.find("data: [DONE]"), std::string::npos);
}

}  // namespace
}  // namespace meshlm::server
