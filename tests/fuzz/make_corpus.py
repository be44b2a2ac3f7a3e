#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/<name>, a few small
valid inputs each, in the layout each target reads (see the comment at the top of each
tests/fuzz/fuzz_*.cpp). Run it again after changing a target's input layout:
    python3 tests/fuzz/make_corpus.py
It rewrites the folders of the targets it knows from scratch (deterministic output) and leaves
other folders (seeds written by hand or by a target's own generator, e.g. fuzz_aead) alone."""
import json
import os
import shutil
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")
PROTOCOL_VERSION = 9  # dist::kProtocolVersion (src/transport/frame.h)

# FrameType values (src/transport/frame.h) and their order in fuzz_common.h kAllFrameTypes.
FRAME_TYPES = [("hello", 1), ("challenge", 2), ("auth", 3), ("welcome", 4), ("load", 10),
               ("loaded", 11), ("manifest_request", 12), ("manifest", 13), ("tensor_request", 14),
               ("tensor_data", 15), ("tensors_done", 16), ("sync_refused", 17), ("forward", 20),
               ("result", 21), ("release", 22), ("ping", 30), ("pong", 31), ("error", 40),
               ("shutdown", 41)]
TYPE_INDEX = {name: i for i, (name, _) in enumerate(FRAME_TYPES)}
TYPE_CODE = dict(FRAME_TYPES)

corpus = {}


def add(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    corpus.setdefault(target, {})[name] = bytes(data)


# ---- the wire format (src/transport/frame.h PayloadWriter) ----
def u8(v): return struct.pack("<B", v)
def u16(v): return struct.pack("<H", v)
def u32(v): return struct.pack("<I", v)
def u64(v): return struct.pack("<Q", v)
def i32(v): return struct.pack("<i", v)
def i64(v): return struct.pack("<q", v)
def f32(v): return struct.pack("<f", v)
def boolean(v): return u8(1 if v else 0)
def s(text): b = text.encode(); return u32(len(b)) + b
def i32_array(a): return u64(len(a)) + b"".join(i32(x) for x in a)
def i64_array(a): return u64(len(a)) + b"".join(i64(x) for x in a)
def f32_array(a): return u64(len(a)) + b"".join(f32(x) for x in a)


def frame(type_name, payload, version=PROTOCOL_VERSION):
    return b"MLMF" + u16(version) + u16(TYPE_CODE[type_name]) + u32(0) + u64(len(payload)) + payload


def sampling(temperature=0.7, top_k=40, top_p=0.9, seed=None, top_logprobs=0, logprobs=False,
             prompt_tokens=-1):
    return (f32(temperature) + i32(top_k) + f32(top_p) + f32(0.05) + f32(1.1) + f32(0.0) +
            f32(0.0) + u64(seed or 0) + boolean(seed is not None) + i32(top_logprobs) +
            boolean(logprobs) + i64(prompt_tokens))


FP = "ab" * 32
PAYLOADS = {
    "hello": u32(PROTOCOL_VERSION) + s("coordinator") + s(FP) + s("c1") + bytes(range(32)),
    "challenge": u32(PROTOCOL_VERSION) + s(FP) + bytes(range(32)) + bytes(range(32, 64)),
    "auth": bytes(range(64, 96)),
    "welcome": s("0.1.0") + u64(16 << 30) + u64(8 << 30) + i32(8) + s("cpu/AVX2"),
    "load": s("/models/qwen3") + i64(0) + i64(14) + i64(4096) + s("10.0.0.2:7070") + boolean(True) +
            i32(1) + f32_array([1.0, 3.0]) + u32(2) + s("") + s("10.0.0.2:7071"),
    "loaded": i64(14) + u64(123456789) + s(FP),
    "manifest_request": i64(0) + i64(2),
    # format 0 (safetensors folder): config.json, no GGUF parts; an MLX matrix's U32 codes.
    "manifest": s(FP) + u32(0) + s('{"model_type": "qwen3"}') + u64(0) + u64(3) +
                s("model.norm.weight") + s("F32") + i64_array([8]) + u64(32) + u64(1) + u64(2) +
                s("lm_head.weight") + s("BF16") + i64_array([4, 8]) + u64(64) + u64(3) + u64(4) +
                s("lm_head.weight.q") + s("U32") + i64_array([4, 1]) + u64(16) + u64(5) + u64(6),
    "tensor_request": u64(2) + s("model.norm.weight") + u64(0) + s("lm_head.weight") + u64(16),
    "tensor_data": u32(1) + u64(16) + bytes(range(16)),
    "tensors_done": u64(48),
    "sync_refused": s("tensor 'x' is not part of model"),
    # Two sequences: a new one (prefill of 3 tokens, with its sampling) and a decode step.
    "forward": u64(7) + u64(2) +
               i64(1) + i32(0) + i32(3) + boolean(True) + boolean(False) +
               i64(2) + i32(9) + i32(1) + boolean(True) + boolean(True) +
               i32_array([1, 2, 3, 4]) + u64(1) + i64(1) + sampling(seed=42, top_logprobs=2,
                                                                  logprobs=True) +
               boolean(False) + u64(1) + i64(2) + u64(2) + u64(0x35) + u64(1 << 63) +
               i64_array([120, 95]) + i64_array([3, 4]) + i64_array([40, 50]) + i64(2) + u64(8) +
               b"".join(f32(x / 8) for x in range(8)),
    "result": u64(7) + u64(2) + i64(1) + i32(5) + f32(-0.5) + u32(2) + i32(5) + f32(-0.5) +
              i32(6) + f32(-1.5) + i64(2) + i32(9) + f32(-0.1) + u32(0) + f32_array([0.5, -1.0]) +
              s("") + i64_array([100, 200]) + i64_array([2, 3]) + i64_array([10, 20]),
    "release": i64_array([1, 2, 3]),
    "ping": u64(1),
    "pong": u64(1),
    "error": s("cluster secret mismatch"),
    "shutdown": b"",
}


def dist_corpus():
    for name, payload in PAYLOADS.items():
        add("fuzz_messages", name, u8(TYPE_INDEX[name]) + payload)
        add("fuzz_frame", "frame_" + name, frame(name, payload))
        add("fuzz_frame", "typed_" + name, u8(TYPE_INDEX[name]) + u8(0) + payload)
    add("fuzz_frame", "old_version_hello", frame("hello", PAYLOADS["hello"], version=3))
    # fuzz_tcp_recv: byte 0 bit 0 clear: a plain stream of frames (bit 1: 1 MiB payload limit);
    # set: frames [type index][u8 length][payload] the harness seals, after a byte naming a bit
    # to flip (0: none).
    stream = b"".join(frame(n, PAYLOADS[n]) for n in ["load", "forward", "ping", "release"])
    add("fuzz_tcp_recv", "plain_stream", u8(0) + stream)
    add("fuzz_tcp_recv", "plain_truncated", u8(2) + stream[:-5])
    # (the harness reads a u8 length: the forward here is the seed without its token mask)
    small = dict(PAYLOADS, forward=PAYLOADS["forward"].replace(
        u64(1) + i64(2) + u64(2) + u64(0x35) + u64(1 << 63), u64(0), 1).replace(
        i64_array([120, 95]) + i64_array([3, 4]) + i64_array([40, 50]), u64(0) * 3, 1),
        result=PAYLOADS["result"].replace(i64_array([100, 200]) + i64_array([2, 3]) +
                                          i64_array([10, 20]), u64(0) * 3, 1))
    assert all(len(small[n]) < 256 for n in ["forward", "result"])
    sealed = b"".join(u8(TYPE_INDEX[n]) + u8(len(small[n])) + small[n]
                      for n in ["forward", "result", "ping", "shutdown"])
    add("fuzz_tcp_recv", "sealed_stream", u8(1) + u8(0) + sealed)
    add("fuzz_tcp_recv", "sealed_flipped", u8(3) + u8(77) + sealed)
    # fuzz_sync_messages: byte 0 % 5 picks manifest-request, manifest, tensor-request,
    # tensor-data, load.
    for i, name in enumerate(["manifest_request", "manifest", "tensor_request", "tensor_data",
                              "load"]):
        add("fuzz_sync_messages", name, u8(i) + PAYLOADS[name])
    # A GGUF model's manifest (format 1): no config.json, the parts' headers, block types.
    gguf_manifest = (s(FP) + u32(1) + s("") + u64(1) + s("GGUF" + "\x03\x00\x00\x00" + "meta") +
                     u64(8192) + u64(2) +
                     s("blk.0.attn_q.weight") + s("Q4_K") + i64_array([2, 256]) + u64(288) +
                     u64(1) + u64(2) +
                     s("rope_freqs.weight") + s("F32") + i64_array([4]) + u64(16) + u64(3) + u64(4))
    add("fuzz_sync_messages", "manifest_gguf", u8(1) + gguf_manifest)


# ---- FuzzedDataProvider layouts (fuzz_handshake, fuzz_sync_server) ----
class Provider:
    """Builds input for LLVM's FuzzedDataProvider: strings are read from the front (a backslash
    followed by another character ends one), integers from the back, most significant byte
    first."""

    def __init__(self):
        self.front = bytearray()
        self.back = bytearray()  # in reading order

    def integral(self, value, nbytes=1):
        self.back += value.to_bytes(nbytes, "big")

    def string(self, data):
        self.front += data.replace(b"\\", b"\\\\") + b"\\x"

    def data(self):
        return bytes(self.front) + bytes(reversed(self.back))


def handshake_corpus():
    # setup byte: bit 0 server side, bit 1 non-empty secret, bit 2 a fingerprint, bit 3 upstream.
    # Then per received frame: a kind byte (bit 0: fix the proof; 0x60/0x70: other type / error;
    # 0x80: a version u16 follows) and the payload string.
    hello = PAYLOADS["hello"]
    p = Provider(); p.integral(1 | 2); p.integral(1); p.string(hello); p.integral(1)
    p.string(bytes(32))
    add("fuzz_handshake", "server_full", p.data())
    p = Provider(); p.integral(0 | 2); p.integral(1); p.string(PAYLOADS["challenge"])
    p.integral(0); p.string(PAYLOADS["welcome"])
    add("fuzz_handshake", "client_full", p.data())
    p = Provider(); p.integral(1); p.integral(0x70); p.string(PAYLOADS["error"])
    add("fuzz_handshake", "server_refused", p.data())
    p = Provider(); p.integral(0); p.integral(0x81); p.integral(3, 2); p.string(PAYLOADS["challenge"])
    add("fuzz_handshake", "client_old_version", p.data())


def sync_server_corpus():
    # Per request: a kind byte; kind & 3 == 3: a tensor-request built from (pick, offset) pairs
    # (count in 0..6 + 1, pick < 0xf0: a real tensor by index, offset in 0..1100 as 2 bytes);
    # otherwise kind % 3 picks manifest-request / tensor-request / forward with a payload string.
    p = Provider(); p.integral(0); p.string(i64(0) + i64(2))
    add("fuzz_sync_server", "manifest_all", p.data())
    p = Provider(); p.integral(0); p.string(i64(1) + i64(2)); p.integral(3); p.integral(2)
    for pick, off in [(0, 0), (5, 100), (9, 1024)]:
        p.integral(pick); p.integral(off, 2)
    add("fuzz_sync_server", "manifest_then_tensors", p.data())
    p = Provider(); p.integral(1); p.string(u64(1) + s("model.norm.weight") + u64(8))
    add("fuzz_sync_server", "raw_tensor_request", p.data())
    p = Provider(); p.integral(1); p.string(u64(1) + s("../config.json") + u64(0))
    add("fuzz_sync_server", "traversal", p.data())


# ---- JSON and text inputs ----
def template(name):
    with open(os.path.join(HERE, "data", name + ".jinja"), "rb") as f:
        return f.read()


TEMPLATES = ["qwen3", "llama3_2", "gemma3", "mistral_nemo", "deepseek_v3"]
CHAT = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"},
        {"role": "user", "content": "Thanks"},
    ],
    "tools": [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                       "required": ["city"]}}}],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "temperature": 0.7, "top_p": 0.9, "top_k": 20, "max_tokens": 64, "stop": ["\n\n", "END"],
    "seed": 7, "stream": True, "stream_options": {"include_usage": True}, "logprobs": True,
    "top_logprobs": 3, "response_format": {"type": "json_object"},
    "chat_template_kwargs": {"enable_thinking": False},
}


def json_corpus():
    dump = lambda j: json.dumps(j, ensure_ascii=False).encode()
    add("fuzz_openai_request", "chat_full", u8(0) + dump(CHAT))
    add("fuzz_openai_request", "chat_simple_llama",
        u8(2) + dump({"messages": [{"role": "developer", "content": "Be brief."},
                                   {"role": "user", "content": "2+2?"}], "n": 1}))
    add("fuzz_openai_request", "chat_gemma_required",
        u8(4) + dump({"messages": [{"role": "user", "content": "x"}], "tools": CHAT["tools"],
                      "tool_choice": "required", "max_completion_tokens": 5}))
    add("fuzz_openai_request", "completion_text",
        u8(1) + dump({"prompt": "Once upon a time", "max_tokens": 16, "logprobs": 2, "echo": True,
                      "presence_penalty": 0.5, "frequency_penalty": -0.5,
                      "repetition_penalty": 1.1, "min_p": 0.05, "ignore_eos": True}))
    add("fuzz_openai_request", "completion_ids", u8(1) + dump({"prompt": [[1, 2, 3]], "stop": "x"}))

    for i, name in enumerate(TEMPLATES):
        ctx = {"messages": CHAT["messages"][:1] + [
                   {"role": "user", "content": "Hi {{ x }} <|im_end|>"},
                   {"role": "assistant", "content": "<think>r</think>ok",
                    "tool_calls": [{"type": "function", "function": {
                        "name": "f", "arguments": {"a": [1, 2.5, None, True]}}}]},
                   {"role": "tool", "content": "{\"r\": 1}"},
                   {"role": "user", "content": "more"}],
               "tools": CHAT["tools"], "add_generation_prompt": True, "enable_thinking": True,
               "bos_token": "<s>", "eos_token": "</s>", "date_string": "26 Jul 2024"}
        add("fuzz_template_context", name, u8(i) + dump(ctx))
        add("fuzz_template_context", name + "_plain",
            u8(i) + dump({"messages": [{"role": "user", "content": "hello"}],
                          "add_generation_prompt": False}))
        add("fuzz_template", name, template(name))
    add("fuzz_template", "snippets",
        "{% set ns = namespace(a=1) %}{% for x in [3,1,2]|sort %}{{ loop.index }}:{{ x }}"
        "{% if not loop.last %},{% endif %}{% endfor %}{{ 'a b'.split(' ')|join('-') }}"
        "{{ messages|length }}{{ (messages[0].content ~ '!')|upper }}{{ tools|tojson(indent=2) }}"
        "{% macro m(x, y=2) %}{{ x + y }}{% endmacro %}{{ m(1) }}{{ raise_exception('no') if n > 5 }}")

    # fuzz_template_load: byte 0 odd: chat_template.json, even: tokenizer_config.json.
    add("fuzz_template_load", "tokenizer_config",
        u8(0) + dump({"bos_token": {"content": "<s>", "lstrip": False}, "eos_token": "</s>",
                      "unk_token": None, "additional_special_tokens": ["<a>", {"content": "<b>"}],
                      "chat_template": "{{ bos_token }}{% for m in messages %}{{ m.content }}"
                                       "{% endfor %}{{ eos_token }}"}))
    add("fuzz_template_load", "named_templates",
        u8(0) + dump({"chat_template": [{"name": "tool_use", "template": "T"},
                                        {"name": "default", "template": "{{ messages[0].role }}"}]}))
    add("fuzz_template_load", "chat_template_json",
        u8(1) + dump({"chat_template": "{% for m in messages %}[{{ m.role }}]{% endfor %}"}))

    config = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
              "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
              "head_dim": 128, "intermediate_size": 3072, "vocab_size": 151936,
              "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "rope_theta": 1000000,
              "tie_word_embeddings": True, "bos_token_id": 151643, "eos_token_id": 151645}
    add("fuzz_config", "qwen3", dump(config))
    add("fuzz_config", "llama3", dump({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
        "intermediate_size": 8192, "vocab_size": 128256, "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0, "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0,
        "low_freq_factor": 1.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
        "eos_token_id": [128001, 128008, 128009], "attention_bias": False}))
    add("fuzz_config", "qwen2_linear", dump({
        "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
        "num_attention_heads": 14, "num_key_value_heads": 2, "intermediate_size": 4864,
        "vocab_size": 151936, "rope_scaling": {"type": "linear", "factor": 2.0}}))
    add("fuzz_config", "mistral", dump({
        "model_type": "mistral", "hidden_size": 5120, "num_hidden_layers": 40,
        "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
        "intermediate_size": 14336, "vocab_size": 131072, "max_position_embeddings": 1024000}))

    txt = {"txtvers": "1", "id": "0123456789abcdef", "version": "0.1.0", "proto": "6",
           "mem": "8589934592", "memtotal": "17179869184", "cores": "8", "backend": "cpu/AVX2"}
    rdata = b"".join(u8(len(e)) + e for e in (f"{k}={v}".encode() for k, v in txt.items()))
    add("fuzz_txt", "node", rdata)
    add("fuzz_txt", "odd", b"\x00\x05Proto\x07mem=abc\x03=xy\x0bid=\x01\x7f\xc3\xa9zzzz")

    sha = "0123456789abcdef0123456789abcdef01234567"
    info = {"sha": sha, "siblings": [{"rfilename": f} for f in [
        ".gitattributes", "README.md", "config.json", "generation_config.json",
        "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
        "model.safetensors.index.json", "tokenizer.json", "tokenizer_config.json",
        "pytorch_model.bin"]]}
    index = {"metadata": {"total_size": 100}, "weight_map": {
        "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors"}}
    add("fuzz_hub", "sharded", b"\0".join([dump(info), dump(index), b'W/"abc-123_x"',
                                            b"/api/resolve-cache/models/org/model/x?y=1", b"main",
                                            b"Repo gated"]))
    info1 = {"sha": sha, "siblings": [{"rfilename": "config.json"}, {"rfilename": "model.safetensors"},
                                      {"rfilename": "chat_template.jinja"}]}
    add("fuzz_hub", "single", b"\0".join([dump(info1), b"", b'"' + b"a" * 64 + b'"',
                                           b"https://cdn-lfs.hf.co/repos/ab/cd?sig=1", b"refs/pr/3",
                                           b"<html>error</html>"]))

    # fuzz_safetensors: byte 0 even: JSON header, NUL, data (the harness adds the length);
    # odd: a whole file.
    header = {"__metadata__": {"format": "pt"},
              "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
              "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]},
              "c": {"dtype": "I64", "shape": [1], "data_offsets": [24, 32]},
              "empty": {"dtype": "F16", "shape": [0, 3], "data_offsets": [32, 32]}}
    hj = dump(header)
    hj += b" " * (-len(hj) % 8)
    add("fuzz_safetensors", "structured", u8(0) + hj + b"\0" + bytes(range(32)))
    add("fuzz_safetensors", "whole_file", u8(1) + u64(len(hj)) + hj + bytes(range(32)))

    # fuzz_output_parser: byte 0: tool syntax (0 none, 1 Hermes, 2 Llama JSON) | 4 reasoning |
    # 8 starts in reasoning; byte 1 seeds the piece sizes.
    add("fuzz_output_parser", "think", u8(4) + u8(3) + b"<think>\nplan\n</think>\n\nHello!")
    add("fuzz_output_parser", "open_think", u8(4 | 8) + u8(9) + b"still thinking</think>done")
    add("fuzz_output_parser", "hermes", u8(1 | 4) + u8(5) +
        b"<think>x</think><tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}}\n</tool_call>"
        b"\n<tool_call>{\"name\": \"g\", \"arguments\": \"{}\"}</tool_call>")
    add("fuzz_output_parser", "llama", u8(2) + u8(1) +
        b"{\"name\": \"f\", \"parameters\": {\"x\": \"y\"}}; {\"name\": \"g\", \"parameters\": {}}")
    add("fuzz_output_parser", "not_a_call", u8(1) + u8(7) + b"<tool_call>{broken</tool_call> text")


def gguf_corpus():
    # fuzz_gguf: byte 0 odd: a whole file; even: byte 1 tensor count, byte 2 metadata count, then
    # the pairs, tensor infos, padding and data (the harness writes magic, version 3 and counts).
    # GGUF value types and ggml type ids (formats/gguf.h, formats/weight_format.cpp).
    U8, I8, U16, I16, U32, I32, F32, BOOL, STR, ARR, U64, I64, F64 = range(13)

    def gs(text):
        b = text.encode()
        return u64(len(b)) + b

    def pair(key, vtype, value):
        return gs(key) + u32(vtype) + value

    def arr(etype, items):
        return u32(etype) + u64(len(items)) + b"".join(items)

    def tensor(name, ne, ggml_type, offset):
        return gs(name) + u32(len(ne)) + b"".join(u64(d) for d in ne) + u32(ggml_type) + u64(offset)

    def body(pairs, tensors, data, align=32, header_len=24):
        out = b"".join(pairs) + b"".join(tensors)
        out += b"\0" * (-(header_len + len(out)) % align)
        return out + data

    pairs = [pair("general.architecture", STR, gs("qwen3")),
             pair("qwen3.block_count", U32, u32(2)),
             pair("qwen3.rope.freq_base", F32, f32(1e6)),
             pair("general.flag", BOOL, u8(1)),
             pair("tokenizer.ggml.tokens", ARR, arr(STR, [gs("a"), gs("<|im_end|>"), gs("")])),
             pair("tokenizer.ggml.token_type", ARR, arr(I32, [i32(1), i32(3), i32(5)])),
             pair("tokenizer.ggml.scores", ARR, arr(F32, [f32(0.5), f32(-1.0)])),
             pair("misc.i64", I64, i64(-5)), pair("misc.f64", F64, struct.pack("<d", 0.25)),
             pair("misc.u8s", ARR, arr(U8, [u8(1), u8(2)]))]
    # F32 [2, 2] at 0, Q8_0 [1, 32] at 32, Q4_K [1, 256] at 96, an empty F16 [0, 4] at 256.
    tensors = [tensor("a.weight", [2, 2], 0, 0), tensor("q8.weight", [32, 1], 8, 32),
               tensor("q4k.weight", [256, 1], 12, 96), tensor("empty", [4, 0], 1, 256)]
    data = bytes(range(16)) + b"\0" * 16 + bytes(range(34)) + b"\0" * 30 + bytes(range(144)) + b"\0" * 16
    add("fuzz_gguf", "structured", u8(0) + u8(len(tensors)) + u8(len(pairs)) + body(pairs, tensors, data))
    whole = b"GGUF" + u32(3) + u64(len(tensors)) + u64(len(pairs)) + body(pairs, tensors, data)
    add("fuzz_gguf", "whole_file", u8(1) + whole)
    # A part of a split set with a custom alignment.
    split_pairs = [pair("split.no", U16, u16(0)), pair("split.count", U16, u16(1)),
                   pair("split.tensors.count", I32, i32(1)), pair("general.alignment", U32, u32(64))]
    split_tensors = [tensor("b.weight", [4], 0, 0)]
    add("fuzz_gguf", "split_part", u8(0) + u8(1) + u8(len(split_pairs)) +
        body(split_pairs, split_tensors, bytes(range(16)), align=64))
    v2 = b"GGUF" + u32(2) + u64(1) + u64(1) + body([pairs[0]], [tensors[0]], bytes(range(16)))
    add("fuzz_gguf", "version2", u8(1) + v2)


def tokenizer_corpus():
    add("fuzz_tokenizer_encode", "mixed", "Hello world! héllo 你好 😀 123 4567\n\t<|stop|> he<|tool|>")
    add("fuzz_tokenizer_encode", "invalid_utf8", b"ab\xff\xc3(\xe2\x82 \xf0\x9f\x98")
    add("fuzz_tokenizer_encode", "spaces", "  leading   and trailing  \n\n  ")

    def byte_char(b):  # tests/tokenizer/test_tokenizers.h
        printable = (ord("!") <= b <= ord("~")) or (0xA1 <= b <= 0xAC) or b >= 0xAE
        if printable:
            return chr(b)
        n = sum(1 for k in range(b)
                if not ((ord("!") <= k <= ord("~")) or (0xA1 <= k <= 0xAC) or k >= 0xAE))
        return chr(256 + n)

    vocab = {byte_char(b): b for b in range(256)}
    vocab["he"] = 256
    added = lambda i, c, special: {"id": i, "content": c, "special": special, "lstrip": False,
                                   "rstrip": False, "single_word": False, "normalized": False}
    byte_level = {
        "version": "1.0", "added_tokens": [added(257, "<|stop|>", True), added(258, "<|tool|>", False)],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
        "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": ["h e"], "byte_fallback": False}}
    dump = lambda j: json.dumps(j, ensure_ascii=False).encode()
    add("fuzz_tokenizer_load", "byte_level", dump(byte_level))
    add("fuzz_tokenizer_load", "byte_level_with_config",
        dump(byte_level) + b"\0" + dump({"bos_token": {"content": "<|stop|>"}, "eos_token": "<|stop|>",
                                         "add_bos_token": True}))
    # A SentencePiece-style BPE: Metaspace, byte fallback, template post-processor.
    sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, "\u2581H": 4, "e": 5, "l": 6, "o": 7,
                "\u2581He": 8, "ll": 9}
    for b in range(256):
        sp_vocab[f"<0x{b:02X}>"] = 10 + b
    sp = {"version": "1.0", "added_tokens": [added(0, "<unk>", True), added(1, "<s>", True),
                                             added(2, "</s>", True)],
          "normalizer": {"type": "Sequence", "normalizers": [
              {"type": "Prepend", "prepend": "\u2581"},
              {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
          "pre_tokenizer": None,
          "post_processor": {"type": "TemplateProcessing",
                             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}}],
                             "pair": [{"Sequence": {"id": "A", "type_id": 0}},
                                      {"Sequence": {"id": "B", "type_id": 1}}],
                             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
          "decoder": {"type": "Sequence", "decoders": [
              {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
              {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ",
                                                            "start": 1, "stop": 0}]},
          "model": {"type": "BPE", "vocab": sp_vocab, "merges": ["\u2581 H", "\u2581H e", "l l"],
                    "byte_fallback": True, "unk_token": "<unk>", "fuse_unk": True}}
    add("fuzz_tokenizer_load", "sentencepiece_bpe", dump(sp))
    split = dict(byte_level)
    split["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"},
         "behavior": "Isolated", "invert": False},
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}
    split["normalizer"] = {"type": "NFC"}
    add("fuzz_tokenizer_load", "split_digits_nfc", dump(split))


def main():
    dist_corpus()
    handshake_corpus()
    sync_server_corpus()
    json_corpus()
    tokenizer_corpus()
    gguf_corpus()
    json_schema_corpus()
    total = 0
    for target, files in sorted(corpus.items()):
        shutil.rmtree(os.path.join(OUT, target), ignore_errors=True)
        os.makedirs(os.path.join(OUT, target))
        for name, data in sorted(files.items()):
            with open(os.path.join(OUT, target, name), "wb") as f:
                f.write(data)
            total += len(data)
    print(f"wrote {sum(len(f) for f in corpus.values())} seeds for {len(corpus)} targets, "
          f"{total} bytes, in {OUT}")


def json_schema_corpus():
    """fuzz_json_schema: schema, a 0 byte, a document."""
    seeds = {
        "person": ({"type": "object", "properties": {"name": {"type": "string", "maxLength": 5},
                                                      "age": {"type": "integer", "minimum": 0,
                                                              "maximum": 120}},
                    "required": ["name"], "additionalProperties": False},
                   '{"name": "a\\u00e9", "age": 7}'),
        "nested": ({"type": "array", "items": {"anyOf": [{"type": "number"}, {"type": "null"},
                                                         {"enum": ["x", 1, True]}]},
                    "minItems": 1, "maxItems": 3}, '[-0.5e+3, null, "x"]'),
        "refs": ({"$defs": {"n": {"type": "object", "properties": {"k": {"type": "array", "items":
                                                                         {"$ref": "#/$defs/n"}}},
                                  "required": ["k"]}}, "$ref": "#/$defs/n"},
                 '{"k":[{"k":[]},{"k":[{"k":[]}]}]}'),
        "nullable": ({"type": ["string", "null"], "minLength": 1}, '"\\"\\\\"'),
        "unsupported": ({"type": "string", "pattern": "^a$"}, '"a"'),
        "tuple": ({"prefixItems": [{"const": "a"}, {"type": "boolean"}]}, '["a", false]'),
        "any_object": (True, '{"a": [1, {"b": "\\ud83d\\ude00"}]}'),
    }
    corpus["fuzz_json_schema"] = {
        name: json.dumps(schema).encode() + b"\0" + doc.encode() for name, (schema, doc) in seeds.items()}


if __name__ == "__main__":
    main()
