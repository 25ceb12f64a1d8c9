#!/usr/bin/python3
"""quality_filter.py: a copy of the corpus whose training split keeps only the files that read as
documented library code, for one measured comparison at equal tokens (issue 23, section 2: "filtering
the corpus for quality ... is worth one short measured comparison"; the result is in models/README.md).

A training file is dropped when it is
  a test:        it imports unittest or pytest, or defines two or more test_ functions;
  a data table:  30% or more of its non-blank lines hold nothing but literals (numbers, strings,
                 brackets and commas);
  undocumented:  fewer than MIN_DOC (10%) of its non-blank lines are comments or docstring lines.
The validation splits are not filtered (they are what the model is judged on either way; the held-out
files that pass are also written, as val-files-kept.txt and val-packages-kept.txt), and the
tokens are not re-encoded: the documents of train.bin (ended by the <|endoftext|> id) are matched one
for one with those of train.txt (ended by the <|endoftext|> text), which corpus.py wrote in the same
order, and the kept ones are copied.

  /usr/bin/python3 train/quality_filter.py [--data data/corpus] [--out data/corpus-filtered]
"""
import argparse
import json
import os
import re
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from corpus import EOT as EOT_TEXT  # noqa: E402  (the separator corpus.py writes between documents)

MIN_DOC = 0.10
MAX_LITERAL_LINES = 0.30

TEST_IMPORT = re.compile(r"^\s*(?:import|from)\s+(?:unittest|pytest)\b", re.M)
TEST_DEF = re.compile(r"^\s*(?:async\s+)?def\s+test_?\w*\s*\(", re.M)
STRING = re.compile(r"""[rbuRBU]{0,2}(?:'[^'\\]*(?:\\.[^'\\]*)*'|"[^"\\]*(?:\\.[^"\\]*)*")""")
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:0[xX][\da-fA-F_]+|0[bBoO][\d_]+|(?:\d[\d_]*\.?[\d_]*|\.\d[\d_]*)(?:[eE][-+]?\d+)?j?)(?![\w.])")
PUNCT_ONLY = re.compile(r"[\s\[\](){},:]*")
TRIPLE = re.compile(r'"""|\'\'\'')


def is_literal_line(s):
    """Nothing but numbers and strings between brackets, commas and colons (a row of a data table)."""
    rest, n_str = STRING.subn("", s)
    rest, n_num = NUMBER.subn("", rest)
    return n_str + n_num > 0 and PUNCT_ONLY.fullmatch(rest) is not None


def features(text):
    """(is_test, share of literal-only lines, share of comment and docstring lines) of one file."""
    is_test = bool(TEST_IMPORT.search(text)) or len(TEST_DEF.findall(text)) >= 2
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return is_test, 0.0, 0.0
    literal = doc = 0
    in_string = None  # the triple quote a docstring opened, while inside it
    for ln in lines:
        s = ln.strip()
        if in_string:
            doc += 1
            if s.count(in_string) % 2 == 1:
                in_string = None
            continue
        if s.startswith("#"):
            doc += 1
            continue
        m = TRIPLE.match(s.lstrip("rRuUbBfF"))
        if m:  # a string statement opening with triple quotes: a docstring (or a bare string)
            doc += 1
            if s.count(m.group(0)) % 2 == 1:
                in_string = m.group(0)
            continue
        if is_literal_line(s):
            literal += 1
    return is_test, literal / len(lines), doc / len(lines)


def reason(text):
    """Why the file is dropped ("test", "data_table" or "undocumented"), or None when it is kept."""
    is_test, literal, doc = features(text)
    if is_test:
        return "test"
    if literal >= MAX_LITERAL_LINES:
        return "data_table"
    return "undocumented" if doc < MIN_DOC else None


def keep(text):
    return reason(text) is None


def documents(path):
    """The documents of a split's .txt (each ended by the <|endoftext|> text)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        texts = fh.read().split(EOT_TEXT)
    if texts and not texts[-1].strip():
        texts.pop()
    return texts


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data/corpus")
    ap.add_argument("--out", default="data/corpus-filtered")
    a = ap.parse_args(argv)
    with open(os.path.join(a.data, "manifest.json")) as fh:
        manifest = json.load(fh)
    eot = manifest["tokenizer"].get("eot_id", 0)
    tokens = np.fromfile(os.path.join(a.data, "train.bin"), dtype=np.uint16)
    ends = np.flatnonzero(tokens == eot)
    texts = documents(os.path.join(a.data, "train.txt"))
    if len(texts) != len(ends):
        sys.exit(f"quality_filter: {len(texts)} documents in train.txt, {len(ends)} in train.bin")
    kept, reasons = [], {"test": 0, "data_table": 0, "undocumented": 0}
    for i, text in enumerate(texts):
        why = reason(text)
        if why:
            reasons[why] += 1
        else:
            kept.append(i)
    starts = np.concatenate([[0], ends[:-1] + 1])
    out_tokens = np.concatenate([tokens[starts[i]:ends[i] + 1] for i in kept])
    os.makedirs(a.out, exist_ok=True)
    out_tokens.tofile(os.path.join(a.out, "train.bin"))
    for name in ("tokenizer.json", "val-files.bin", "val-files.txt", "val-packages.bin", "val-packages.txt"):
        shutil.copyfile(os.path.join(a.data, name), os.path.join(a.out, name))
    for split in ("val-files", "val-packages"):  # the held-out files that pass, to score both models on
        with open(os.path.join(a.out, f"{split}-kept.txt"), "w", encoding="utf-8") as fh:
            fh.write("".join(t + EOT_TEXT for t in documents(os.path.join(a.data, f"{split}.txt")) if keep(t)))
    manifest["train"] = dict(manifest["train"], files=len(kept), tokens=int(out_tokens.size))
    manifest["quality_filter"] = {"files_before": len(texts), "tokens_before": int(tokens.size),
                                  "dropped": reasons, "min_doc_lines": MIN_DOC,
                                  "max_literal_lines": MAX_LITERAL_LINES}
    with open(os.path.join(a.out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
    print(f"quality_filter: kept {len(kept):,} of {len(texts):,} files, {out_tokens.size:,} of {tokens.size:,} "
          f"tokens ({out_tokens.size / tokens.size:.0%}); dropped {reasons}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
