#!/usr/bin/env python3
"""make_seeds.py: writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from the
test fixtures and a few hand-written requests. Run from anywhere: python3 tests/fuzz/make_seeds.py"""
import hashlib
import json
import os
import random
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def fixture(*p):
    with open(os.path.join(SRC, "tests", "fixtures", *p), "rb") as f:
        return f.read()


# api: byte 0 = endpoint (0 completions, 1 chat, 2 generate, 3 tokenize, 4 detokenize), then the body
api = [
    (0, {"prompt": "Hello", "max_tokens": 5}),
    (0, {"prompt": ["a", "b"], "n": 2, "stream": True, "stream_options": {"include_usage": True}}),
    (0, {"prompt": [1, 2, 3], "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 1,
         "stop": ["\n", "end"], "logprobs": 3, "echo": True, "repetition_penalty": 1.1,
         "frequency_penalty": 0.5, "presence_penalty": 0.2}),
    (0, {"prompt": [[1, 2], [3]], "max_tokens": 1, "user": "u", "model": "m"}),
    (0, {"prompt": "x", "temperature": -1}),
    (1, {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi \u00e9"}],
         "max_completion_tokens": 3, "logprobs": True, "top_logprobs": 2, "stop": "User:"}),
    (1, {"messages": [{"role": "user", "content": [{"type": "text", "text": "part"}]}], "stream": True}),
    (2, {"model": "x", "prompt": "Why?", "options": {"num_predict": 4, "temperature": 0, "seed": 3, "stop": ["."]}}),
    (2, {"prompt": "", "context": [1, 2, 3], "system": "S", "raw": False, "stream": False}),
    (3, {"content": "Hello world <|endoftext|>", "add_special": True, "with_pieces": True}),
    (4, {"tokens": [1, 2, 3, 500]}),
]
for k, body in api:
    write("api", bytes([k]) + json.dumps(body).encode())
# 0xe0 Anthropic's messages, 0xe1 OpenAI's responses, 0xe2 Anthropic's count_tokens
dialects = [
    (0xe0, {"model": "m", "max_tokens": 8, "system": [{"type": "text", "text": "S"}], "stop_sequences": ["##"],
            "temperature": 0.5, "top_k": 3, "metadata": {"user_id": "u"},
            "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": [{"type": "text", "text": "A"}]}]}),
    (0xe0, {"model": "m", "max_tokens": 40, "stream": True, "messages": [{"role": "user", "content": "x"}],
            "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}}),
    (0xe0, {"model": "m", "max_tokens": 4, "tools": [{"name": "f"}], "messages": [{"role": "user", "content": [{"type": "image"}]}]}),
    (0xe1, {"input": "Hi", "instructions": "Be brief.", "max_output_tokens": 9, "metadata": {"k": "v"}, "store": False}),
    (0xe1, {"input": [{"role": "developer", "content": "D"}, {"type": "message", "role": "user",
                                                               "content": [{"type": "input_text", "text": "a"}]}],
            "stream": True, "text": {"format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}}}}),
    (0xe1, {"input": [{"type": "function_call_output", "output": "o"}], "previous_response_id": "resp_1"}),
    (0xe2, {"model": "m", "system": "S", "messages": [{"role": "user", "content": "Hello"}]}),
]
for k, body in dialects:
    write("api", bytes([k]) + json.dumps(body).encode())
write("api", b"\x00{\"prompt\": \"\\ud800\"}")
write("api", b"\x01{\"messages\": 1}")
write("api", b"\x00{bad json")

# tokenizer: byte 0 bit 0 = allow special tokens, bit 1 = the rest is 16-bit ids for the stream decoder
held = fixture("tokenizer", "heldout.txt")
for i in range(0, 2000, 250):
    write("tokenizer", bytes([i // 250 & 1]) + held[i:i + 200])
write("tokenizer", b"\x01hi<|endoftext|>there\xff\xfe \xe2\x82 caf\xc3\xa9 \xf0\x9f\x98\x80  \n\n\t123's")
write("tokenizer", b"\x00" + "日本語のテキスト, ελληνικά, العربية".encode())
rng = random.Random(1)
for _ in range(4):
    write("tokenizer", b"\x02" + bytes(rng.randrange(256) for _ in range(64)))

# checkpoint: byte 0 = 0 config.json, 1 model.safetensors, 2 safetensors header, 3 tokenizer.json
cfg = fixture("tiny-model", "config.json")
st = fixture("tiny-model", "model.safetensors")
hl = struct.unpack("<Q", st[:8])[0]
write("checkpoint", b"\x00" + cfg)
c = json.loads(cfg)
c.update({"architecture": "preln", "norm": "layernorm", "activation": "gelu", "position": "learned"})
write("checkpoint", b"\x00" + json.dumps(c).encode())
write("checkpoint", b"\x01" + st)
write("checkpoint", b"\x01" + st[:8 + hl + 100])
write("checkpoint", b"\x02" + st[8:8 + hl])
write("checkpoint", b"\x03" + fixture("tiny-model", "tokenizer.json"))

# writers: byte 0 = endpoint %3 | stream <<2 | logprobs <<3 | echo <<4 | include_usage <<5, or top bits
# 01 Anthropic's messages, 10 OpenAI's responses; byte 1 = n-1 (%3) | top_logprobs <<2, then events
# (index, flags, text length, text, ids)
for b0 in (0x00, 0x04, 0x0c, 0x1c, 0x3c, 0x01, 0x05, 0x0d, 0x2d, 0x02, 0x06, 0x16, 0x40, 0x44, 0x80, 0x84):
    ev = b""
    for i in range(6):
        t = "tok\u00e9n".encode() if i % 2 else b" x"
        ev += bytes([i % 3, (0x05 if i == 0 else 0x04 | (0x80 if i == 5 else 0)), len(t)]) + t + bytes([i * 7])
    write("writers", bytes([b0, 0x09]) + ev)
print("seeds written under", os.path.join(HERE, "corpus"))
