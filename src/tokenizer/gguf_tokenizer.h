// A model's tokenizer from a GGUF file's tokenizer.* metadata (llama.cpp's keys), so that a model
// given as a .gguf file needs no tokenizer.json.
//
// The metadata is turned into the tokenizer.json (+ tokenizer_config.json) that Hugging Face's
// converter writes for the same model, and loaded by Tokenizer::load_from_json: one encode /
// decode implementation for both sources.
//
//   tokenizer.ggml.model "gpt2"   byte-level BPE: tokens and merges as stored; the split regex,
//                                 normalizer and ignore_merges chosen by tokenizer.ggml.pre
//                                 ("qwen2", "llama-bpe", "gpt-2", ...; see gguf_pre_tokenizers())
//   tokenizer.ggml.model "llama"  SentencePiece BPE (Llama 2, Mistral): merges derived from
//                                 tokenizer.ggml.scores as transformers' converter derives them,
//                                 byte fallback (<0xNN>), "▁" for spaces (Prepend + Replace
//                                 normalizer, as the converter's legacy Llama tokenizer.json)
//
// Token types (tokenizer.ggml.token_type): control (3) and unknown (2) tokens become special added
// tokens, user-defined (4) ones non-special added tokens; unused (5) tokens of a byte-level vocab
// are the converter's "[PADn]" fillers and are left out. BOS/EOS come from *_token_id; whether
// encode(text, true) adds them from add_bos_token / add_eos_token, or when absent llama.cpp's
// default (BOS for "llama" and the Llama 3 pre-tokenizer, none otherwise).
//
// Bad metadata (a missing key, tokens/types/scores of different lengths, a merge naming an unknown
// token, an out-of-range special id, an unknown model or pre-tokenizer) throws
// Error("tokenizer", ...) naming the key.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace meshlm::formats {
class GgufMetadata;
}

namespace meshlm::tok {

// The tokenizer.json text equivalent to the metadata.
std::string gguf_tokenizer_json(const formats::GgufMetadata& metadata);
// A tokenizer_config.json text: bos_token / eos_token / unk_token / pad_token (the tokens' text,
// or null), add_bos_token / add_eos_token, and chat_template when the file has one.
std::string gguf_tokenizer_config_json(const formats::GgufMetadata& metadata);
std::unique_ptr<Tokenizer> load_tokenizer_from_gguf(const formats::GgufMetadata& metadata);

// The tokenizer.ggml.pre values of byte-level vocabularies this loader knows.
std::vector<std::string> gguf_pre_tokenizers();

// Whether a model path means a GGUF model: a file (taken to be a .gguf), or a folder with no
// tokenizer.json that holds a .gguf file. A Hugging Face folder is not.
bool is_gguf_model_path(const std::string& path);

}  // namespace meshlm::tok
