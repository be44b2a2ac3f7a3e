// A Hugging Face tokenizer loaded from a model folder's tokenizer.json (+ tokenizer_config.json),
// producing exactly the ids and text the Rust `tokenizers` library does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace meshlm::tok {

using TokenId = int32_t;

class Tokenizer {
 public:
  // Loads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json.
  // Throws meshlm::Error("tokenizer", ...) on a missing or malformed file.
  static std::unique_ptr<Tokenizer> load_from_dir(const std::string& dir);
  // A model's tokenizer: load_from_dir for a Hugging Face folder; for a .gguf file, or a folder
  // holding a GGUF model and no tokenizer.json, the GGUF's tokenizer.* metadata
  // (gguf_tokenizer.h). Throws Error("tokenizer" or "gguf", ...).
  static std::unique_ptr<Tokenizer> load(const std::string& model_path);
  // Loads from the JSON text of a tokenizer.json (config may be empty).
  static std::unique_ptr<Tokenizer> load_from_json(std::string_view tokenizer_json,
                                                   std::string_view tokenizer_config_json = {});
  virtual ~Tokenizer() = default;

  // Same as Rust tokenizers' encode(text, add_special_tokens): added/special tokens in the text
  // are recognised; add_special applies the post-processor (BOS/EOS templates).
  virtual std::vector<TokenId> encode(std::string_view text, bool add_special) const = 0;
  // Same as decode(ids, skip_special_tokens). Invalid UTF-8 produced by byte tokens is replaced
  // by U+FFFD as the Rust library does.
  virtual std::string decode(const std::vector<TokenId>& ids, bool skip_special) const = 0;

  virtual size_t vocab_size() const = 0;  // including added tokens
  virtual std::optional<TokenId> token_to_id(std::string_view token) const = 0;
  virtual std::optional<std::string> id_to_token(TokenId id) const = 0;
  virtual bool is_special(TokenId id) const = 0;
  // The bytes token `id` adds to decoded text in the middle of a sequence (a byte-level token's
  // raw bytes, which may be part of a UTF-8 character; a SentencePiece piece with its spaces);
  // empty for ids the vocabulary lacks. Structured outputs match these against a grammar.
  virtual std::string token_bytes(TokenId id) const { return decode({id}, false); }

  // From tokenizer_config.json (bos_token / eos_token / pad_token, as strings or AddedToken
  // objects) falling back to the tokenizer.json post-processor; empty when unknown.
  virtual std::optional<TokenId> bos_id() const = 0;
  virtual std::optional<TokenId> eos_id() const = 0;
  virtual std::string bos_token() const = 0;
  virtual std::string eos_token() const = 0;
  virtual bool add_bos_token() const = 0;  // whether encode(text, true) starts with BOS
};

// Turns a growing sequence of ids into text deltas that are always whole UTF-8 characters, and
// applies stop strings that may span tokens: text that could still become a stop string is held
// back until it can no longer match.
class StreamDecoder {
 public:
  StreamDecoder(const Tokenizer& tokenizer, std::vector<std::string> stop_strings,
                bool skip_special = true);
  ~StreamDecoder();
  StreamDecoder(StreamDecoder&&) noexcept;
  StreamDecoder& operator=(StreamDecoder&&) noexcept;

  // Feeds one id; returns the text that became final (possibly empty).
  std::string push(TokenId id);
  // True once a stop string matched; the text up to (not including) it has been returned.
  bool stopped() const;
  // The stop string that matched (empty if none).
  const std::string& matched_stop() const;
  // End of generation: returns what was held back (incomplete UTF-8 tails become U+FFFD).
  std::string finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshlm::tok
