"""Stored bytes of a model's tensors, read from the files alone (independently of meshlm): GGUF
headers (ggml block sizes) and safetensors headers (MLX folders: codes, scales and biases).
stage_bytes(...) is what a stage holding layers [begin, end) keeps: its layers' tensors, the
embedding on the first stage (and on the last when the head is tied to it), the final norm and
head on the last."""
import glob
import json
import os
import struct

# ggml type id -> (elements per block, bytes per block)
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24),
               8: (32, 34), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
               14: (256, 210), 20: (32, 18), 23: (256, 136), 30: (1, 2), 39: (32, 17)}
GGML_NAMES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0",
              10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 30: "BF16"}


def gguf_tensors(path):
    """name -> (ggml type, bytes) of a single-file GGUF v2/v3."""
    with open(path, "rb") as f:  # the header only: metadata and the tensor table
        data = f.read(1 << 20)
        while True:
            try:
                return _parse_gguf_header(data)
            except struct.error:
                more = f.read(len(data))
                if not more:
                    raise
                data += more


def _parse_gguf_header(data):
    pos = 0

    def take(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0] if len(v) == 1 else v

    def string():
        n = take("Q")
        nonlocal pos
        s = data[pos:pos + n].decode("utf-8", "replace")
        pos += n
        return s

    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def value(t):
        nonlocal pos
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            for _ in range(n):
                value(et)
            return None
        pos += sizes[t]
        return None

    assert data[:4] == b"GGUF"
    pos = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    for _ in range(n_kv):
        string()
        value(take("I"))
    out = {}
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        t = take("I")
        take("Q")
        elems = 1
        for d in dims:
            elems *= d
        be, bb = GGML_BLOCKS[t]
        out[name] = (t, elems // be * bb)
    return out


def safetensors_tensors(folder):
    """name -> (dtype, bytes) over every *.safetensors file of a folder."""
    out = {}
    for path in glob.glob(os.path.join(folder, "*.safetensors")):
        with open(path, "rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for k, v in header.items():
            if k != "__metadata__":
                out[k] = (v["dtype"], v["data_offsets"][1] - v["data_offsets"][0])
    return out


def _layer(name, prefix):
    if not name.startswith(prefix):
        return None
    head = name[len(prefix):].split(".", 1)[0]
    return int(head) if head.isdigit() else None


def stage_bytes(model, begin, end, n_layers):
    """Bytes of the stored tensors a stage holding layers [begin, end) keeps."""
    if model.endswith(".gguf"):
        tensors = {k: v[1] for k, v in gguf_tensors(model).items()}
        layer_prefix, embed, norm, head = "blk.", "token_embd.", "output_norm.", "output."
    else:
        tensors = {k: v[1] for k, v in safetensors_tensors(model).items()}
        layer_prefix, embed, norm, head = "model.layers.", "model.embed_tokens.", "model.norm.", "lm_head."
    tied = not any(k.startswith(head) for k in tensors)
    total = 0
    for name, n in tensors.items():
        layer = _layer(name, layer_prefix)
        if layer is not None:
            total += n if begin <= layer < end else 0
        elif name.startswith(embed):
            total += n if begin == 0 or (end == n_layers and tied) else 0
        elif name.startswith(norm) or name.startswith(head):
            total += n if end == n_layers else 0
    return total
