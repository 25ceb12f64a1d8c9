#!/usr/bin/python3
"""bpe.py: byte-level BPE for sasp: a trainer that writes a Hugging Face tokenizer.json, and the
reference encoder/decoder that the C tokenizer (src/text/tokenizer.c) must equal id for id.

Run with Debian's /usr/bin/python3 (it needs python3-regex for \\p{L} and \\p{N}; no torch).

  bpe.py train --vocab-size N --out tokenizer.json [--files-from LIST | FILES...]
  bpe.py encode --tokenizer T [--allow-special]        stdin bytes -> JSON list of ids
  bpe.py encode --tokenizer T --hex-lines              one case per stdin line: "N HEX" or "S HEX"
                                                       (S = special tokens allowed) -> one JSON list
                                                       of ids per line (--pieces: the end offset
                                                       of each pre-token instead)
  bpe.py decode --tokenizer T                          JSON list of ids on stdin -> bytes on stdout

Encoding, in order (docs/tokenizer.md says the same):
 1. With allow_special, the text is split at the special tokens (leftmost, then longest match);
    each becomes its id. Without it, "<|endoftext|>" is ordinary text.
 2. Each remaining piece is split into maximal runs of valid UTF-8 and single invalid bytes. A byte
    is invalid when it is not part of a well-formed UTF-8 sequence (overlong forms, surrogates,
    code points above U+10FFFF and truncated sequences are all invalid, byte by byte, exactly as
    Python's decoder with errors="surrogateescape" reports them). Each invalid byte is a pre-token
    of its own and becomes its byte token.
 3. Each valid run is split by the GPT-2 pattern PRETOKEN_PATTERN (the run is the whole subject, so
    lookahead stops at its end).
 4. Each pre-token's bytes become byte tokens, which are merged by rank (lowest rank first, left to
    right on ties), as GPT-2 and Hugging Face's BPE do.

Token ids written by the trainer: 0 = <|endoftext|> (separates documents, bos and eos), 1..256 =
the 256 bytes in byte order, then one id per merge in the order learnt.
"""
import argparse
import heapq
import json
import os
import sys
import time

import regex

PRETOKEN_PATTERN = (r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
ENDOFTEXT = "<|endoftext|>"
_PRETOKEN_RE = regex.compile(PRETOKEN_PATTERN)
_INVALID_RE = regex.compile(r"([\udc80-\udcff])")  # invalid bytes after surrogateescape decoding
LONG_WORD = 64  # pre-tokens of more symbols use the O(n log n) heap merge


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to printable characters (the byte-level alphabet)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


BYTE_TO_CHAR = bytes_to_unicode()
CHAR_TO_BYTE = {c: b for b, c in BYTE_TO_CHAR.items()}


def token_string(bs):
    """The tokenizer.json spelling of a normal token's bytes."""
    return "".join(BYTE_TO_CHAR[b] for b in bs)


def pretokenize(data):
    """Split bytes (no special tokens) into a list of pre-tokens, each a bytes object."""
    text = data.decode("utf-8", "surrogateescape")
    out = []
    for i, part in enumerate(_INVALID_RE.split(text)):
        if i % 2:  # an invalid byte
            out.append(bytes([ord(part) - 0xDC00]))
        elif part:
            out.extend(p.encode("utf-8") for p in _PRETOKEN_RE.findall(part))
    return out


# ----------------------------------------------------------------------------------------------
# Training


def _count_pretokens(docs):
    counts = {}
    for doc in docs:
        text = doc.decode("utf-8", "surrogateescape")
        for i, part in enumerate(_INVALID_RE.split(text)):
            if i % 2:
                key = bytes([ord(part) - 0xDC00])
                counts[key] = counts.get(key, 0) + 1
            elif part:
                for p in _PRETOKEN_RE.findall(part):
                    counts[p] = counts.get(p, 0) + 1
    merged = {}
    for p, c in counts.items():
        key = p if isinstance(p, bytes) else p.encode("utf-8")
        merged[key] = merged.get(key, 0) + c
    return merged


def train(docs, vocab_size, log=sys.stderr):
    """Learn byte-level BPE merges from docs (an iterable of bytes, one per document).

    Returns (tokens, merges): tokens[id] is the bytes of each normal token (None for id 0, the
    special token), merges is a list of (id_a, id_b) in rank order."""
    if vocab_size < 258:
        raise ValueError("vocab size must be at least 258 (special token + 256 bytes + 1 merge)")
    t0 = time.time()
    wordfreq = _count_pretokens(docs)
    words = [[b + 1 for b in w] for w in wordfreq]
    freqs = list(wordfreq.values())
    del wordfreq
    print(f"bpe: {len(words)} distinct pre-tokens, {sum(freqs)} in all "
          f"({time.time() - t0:.1f} s)", file=log)

    tokens = [None] + [bytes([b]) for b in range(256)]
    ids = {t: i for i, t in enumerate(tokens) if t is not None}
    pair_count = {}
    where = {}  # pair -> set of word indices that contained it (may be stale; checked on use)
    for wi, (w, f) in enumerate(zip(words, freqs)):
        for p in zip(w, w[1:]):
            pair_count[p] = pair_count.get(p, 0) + f
            s = where.get(p)
            if s is None:
                where[p] = s = set()
            s.add(wi)
    heap = [(-c, p) for p, c in pair_count.items()]
    heapq.heapify(heap)

    merges = []
    while len(tokens) < vocab_size and heap:
        negc, pair = heapq.heappop(heap)
        if pair_count.get(pair, 0) != -negc or negc == 0:
            continue  # stale entry
        a, b = pair
        newbytes = tokens[a] + tokens[b]
        c = ids.get(newbytes)
        if c is None:
            c = len(tokens)
            tokens.append(newbytes)
            ids[newbytes] = c
        merges.append(pair)
        changed = set()
        for wi in where.pop(pair, ()):
            w = words[wi]
            n = len(w)
            new = []
            i = 0
            hit = False
            while i < n:
                if i + 1 < n and w[i] == a and w[i + 1] == b:
                    new.append(c)
                    i += 2
                    hit = True
                else:
                    new.append(w[i])
                    i += 1
            if not hit:
                continue
            f = freqs[wi]
            for p in zip(w, w[1:]):
                pair_count[p] -= f
                changed.add(p)
            for p in zip(new, new[1:]):
                pair_count[p] = pair_count.get(p, 0) + f
                changed.add(p)
                s = where.get(p)
                if s is None:
                    where[p] = s = set()
                s.add(wi)
            words[wi] = new
        pair_count.pop(pair, None)
        changed.discard(pair)
        for p in changed:
            cnt = pair_count[p]
            if cnt > 0:
                heapq.heappush(heap, (-cnt, p))
            else:
                del pair_count[p]
        if len(merges) % 1000 == 0:
            print(f"bpe: {len(merges)} merges, vocab {len(tokens)}, last count {-negc} "
                  f"({time.time() - t0:.1f} s)", file=log)
    if len(tokens) < vocab_size:
        print(f"bpe: the corpus ran out of pairs at vocab {len(tokens)}", file=log)
    return tokens, merges


def tokenizer_json(tokens, merges, extra_specials=()):
    """The Hugging Face tokenizers document (a dict) for a trained vocabulary. extra_specials are
    further special tokens (the fill-in-the-middle ones), given the ids after the normal tokens."""
    vocab = {ENDOFTEXT: 0}
    for i, t in enumerate(tokens):
        if t is not None:
            vocab[token_string(t)] = i
    added = [{"id": 0, "content": ENDOFTEXT, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}]
    for k, s in enumerate(extra_specials):
        vocab[s] = len(tokens) + k
        added.append(dict(added[0], id=len(tokens) + k, content=s))
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": dict(byte_level, trim_offsets=False),
        "decoder": byte_level,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab,
                  "merges": [token_string(tokens[a]) + " " + token_string(tokens[b])
                             for a, b in merges]},
    }


# ----------------------------------------------------------------------------------------------
# Encoding and decoding


class Tokenizer:
    """Reads a byte-level BPE tokenizer.json and encodes exactly as src/text/tokenizer.c does."""

    def __init__(self, doc, path="tokenizer.json"):
        model = doc.get("model")
        if not isinstance(model, dict) or model.get("type", "BPE") != "BPE":
            raise ValueError(f"{path}: model is not BPE")
        vocab = model.get("vocab")
        merges = model.get("merges")
        if not isinstance(vocab, dict) or not isinstance(merges, list):
            raise ValueError(f"{path}: model.vocab or model.merges missing")
        self.special = {}
        for at in doc.get("added_tokens") or []:
            self.special[at["content"].encode("utf-8")] = at["id"]
        n = max(list(vocab.values()) + list(self.special.values())) + 1
        self.tokens = [None] * n
        self.str_to_id = dict(vocab)
        for s, i in vocab.items():
            if s.encode("utf-8") in self.special and self.special[s.encode("utf-8")] == i:
                self.tokens[i] = s.encode("utf-8")
            else:
                self.tokens[i] = bytes(CHAR_TO_BYTE[ch] for ch in s)
        for s, i in self.special.items():
            self.tokens[i] = s
            self.str_to_id[s.decode("utf-8")] = i
        self.byte_id = [vocab[BYTE_TO_CHAR[b]] for b in range(256)]
        self.merges = {}
        for rank, m in enumerate(merges):
            a, b = m.split(" ") if isinstance(m, str) else m
            key = (vocab[a], vocab[b])
            if key not in self.merges:
                self.merges[key] = (rank, vocab[a + b])
        self.cache = {}

    @classmethod
    def from_file(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls(json.load(f), path)

    @property
    def vocab_size(self):
        return len(self.tokens)

    def _bpe(self, word):
        ids = [self.byte_id[b] for b in word]
        if len(ids) > LONG_WORD:
            return self._bpe_long(ids)
        merges = self.merges
        while len(ids) > 1:
            best = None
            for p in zip(ids, ids[1:]):
                m = merges.get(p)
                if m is not None and (best is None or m[0] < best[0]):
                    best, bp = m, p
            if best is None:
                break
            a, b = bp
            c = best[1]
            out = []
            i = 0
            n = len(ids)
            while i < n:
                if i + 1 < n and ids[i] == a and ids[i + 1] == b:
                    out.append(c)
                    i += 2
                else:
                    out.append(ids[i])
                    i += 1
            ids = out
        return ids

    def _bpe_long(self, ids):
        """The same merges in O(n log n): a linked list of symbols and a heap of (rank, position)."""
        n = len(ids)
        sym = list(ids)
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        merges = self.merges
        heap = []
        for i in range(n - 1):
            m = merges.get((sym[i], sym[i + 1]))
            if m is not None:
                heap.append((m[0], i, sym[i], sym[i + 1]))
        heapq.heapify(heap)
        while heap:
            rank, i, a, b = heapq.heappop(heap)
            j = nxt[i] if sym[i] is not None else n
            if sym[i] != a or j >= n or sym[j] != b:
                continue  # stale: one side has been merged since
            c = merges[(a, b)][1]
            sym[i] = c
            sym[j] = None
            nxt[i] = nxt[j]
            if nxt[i] < n:
                prv[nxt[i]] = i
            p = prv[i]
            if p >= 0:
                m = merges.get((sym[p], c))
                if m is not None:
                    heapq.heappush(heap, (m[0], p, sym[p], c))
            k = nxt[i]
            if k < n:
                m = merges.get((c, sym[k]))
                if m is not None:
                    heapq.heappush(heap, (m[0], i, c, sym[k]))
        return [s for s in sym if s is not None]

    def _encode_ordinary(self, data, out):
        cache = self.cache
        for w in pretokenize(data):
            r = cache.get(w)
            if r is None:
                r = self._bpe(w)
                if len(w) < 256:
                    cache[w] = r
            out.extend(r)

    def _split_special(self, data, allow_special):
        """Yield (piece, special id or None): the text cut at special tokens when allowed."""
        if not allow_special or not self.special:
            yield data, None
            return
        pos = 0
        while True:
            best = -1
            for s in self.special:
                k = data.find(s, pos)
                if k >= 0 and (best < 0 or k < best or (k == best and len(s) > len(bs))):
                    best, bs = k, s
            if best < 0:
                break
            yield data[pos:best], None
            yield bs, self.special[bs]
            pos = best + len(bs)
        yield data[pos:], None

    def encode(self, text, allow_special=False):
        """Ids of text (str or bytes). Special tokens are recognised only with allow_special."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = []
        for piece, sid in self._split_special(data, allow_special):
            if sid is None:
                self._encode_ordinary(piece, out)
            else:
                out.append(sid)
        return out

    def pretokenize(self, text, allow_special=False):
        """The pieces encode() cuts text into before merging (as src/text/tokenizer.c's sasp_pretokenize)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        out = []
        for piece, sid in self._split_special(data, allow_special):
            out.extend(pretokenize(piece) if sid is None else [piece])
        return out

    def decode(self, ids):
        """The bytes of ids concatenated (unknown ids are skipped)."""
        return b"".join(self.tokens[i] for i in ids
                        if 0 <= i < len(self.tokens) and self.tokens[i] is not None)


# ----------------------------------------------------------------------------------------------
# Command line


def _read_docs(paths):
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        # A corpus file may already hold several documents separated by <|endoftext|>.
        yield from data.split(ENDOFTEXT.encode())


def main(argv=None):
    ap = argparse.ArgumentParser(description="byte-level BPE: train, encode, decode")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="learn a vocabulary and write tokenizer.json")
    tr.add_argument("--vocab-size", type=int, required=True)
    tr.add_argument("--out", required=True)
    tr.add_argument("--files-from", help="a file listing the corpus files, one per line")
    tr.add_argument("files", nargs="*")
    en = sub.add_parser("encode", help="encode stdin")
    en.add_argument("--tokenizer", required=True)
    en.add_argument("--allow-special", action="store_true")
    en.add_argument("--hex-lines", action="store_true")
    en.add_argument("--pieces", action="store_true",
                    help="print the end offset of each pre-token instead of the ids")
    de = sub.add_parser("decode", help="decode a JSON list of ids from stdin")
    de.add_argument("--tokenizer", required=True)
    args = ap.parse_args(argv)

    if args.cmd == "train":
        files = list(args.files)
        if args.files_from:
            with open(args.files_from, encoding="utf-8") as f:
                files += [line.rstrip("\n") for line in f if line.strip()]
        if not files:
            ap.error("train: no corpus files given")
        t0 = time.time()
        nbytes = sum(os.path.getsize(p) for p in files)
        tokens, merges = train(_read_docs(files), args.vocab_size)
        doc = tokenizer_json(tokens, merges)
        tmp = args.out + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=1)
            f.write("\n")
        os.replace(tmp, args.out)
        print(f"bpe: trained vocab {len(tokens)} ({len(merges)} merges) on {len(files)} files, "
              f"{nbytes / 1e6:.1f} MB in {time.time() - t0:.1f} s; wrote {args.out}")
        return 0

    tok = Tokenizer.from_file(args.tokenizer)
    if args.cmd == "decode":
        sys.stdout.buffer.write(tok.decode(json.load(sys.stdin)))
        return 0
    if args.hex_lines:
        out = sys.stdout
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            flag, _, hexdata = line.partition(" ")
            data, allow = bytes.fromhex(hexdata), flag == "S"
            if args.pieces:
                ends, end = [], 0
                for p in tok.pretokenize(data, allow):
                    end += len(p)
                    ends.append(end)
                out.write(json.dumps(ends) + "\n")
            else:
                out.write(json.dumps(tok.encode(data, allow)) + "\n")
        return 0
    print(json.dumps(tok.encode(sys.stdin.buffer.read(), allow_special=args.allow_special)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
