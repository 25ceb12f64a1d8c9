#!/usr/bin/env python3
"""constraint_cost.py: what constrained decoding costs (docs/api.md, "JSON output").

Starts sasp-server on the shipped model (models/sasp-small, vocabulary 8192) with one forward-pass
thread and one slot, and runs long generations through /api/generate, the cases interleaved run by
run so that a busy machine slows them alike:
  - plain text (ignore_eos, 240 tokens);
  - format "json" with a schema whose one string must hold 180 characters (most tokens are inside a
    free string, the mask's fast path);
  - a schema of many short fields (numbers, enums, booleans, keys: every token is tried against the
    automaton, the slow path).
It reports tokens/s (eval_count / eval_duration as the server measures them: first token to last,
prompt reading not counted) and the mask's own time per token from /metrics
(sasp_constraint_seconds_total / sasp_constrained_tokens_total). Not part of `make check` (it takes
about a minute); by hand, from a build directory:

    SASP_BUILDDIR=. SASP_SRCDIR=/path/to/sasp python3 tests/server/constraint_cost.py [RUNS]
"""
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("SASP_SRCDIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
import test_server as T  # noqa: E402

MODEL = os.path.join(T.SRC, "models", "sasp-small")
LONG_STRING = {"type": "object", "properties": {"code": {"type": "string", "minLength": 180, "maxLength": 180}},
               "required": ["code"]}
FIELD = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "kind": {"type": "string", "enum": ["function", "class", "module"]},
    "lines": {"type": "integer"}, "score": {"type": "number"}, "pure": {"type": "boolean"}},
    "required": ["name", "kind", "lines", "score", "pure"]}
MANY_FIELDS = {"type": "array", "items": FIELD, "minItems": 3, "maxItems": 3}
CASES = [("plain", None), ("schema: one long string", LONG_STRING), ("schema: many short fields", MANY_FIELDS)]


def run(s, schema, seed):
    req = {"prompt": "def parse_config(path):", "stream": False, "token_healing": False, "ignore_eos": True,
           "options": {"num_predict": 240, "seed": seed, "temperature": 0.8}}
    if schema:
        req["format"] = schema
    m0 = s.metrics()
    st, r = s.post("/api/generate", req)
    assert st == 200, r
    if schema:
        json.loads(r["response"])  # the constrained output parses
    m1 = s.metrics()
    masked = m1["sasp_constrained_tokens_total"] - m0["sasp_constrained_tokens_total"]
    mask_s = m1["sasp_constraint_seconds_total"] - m0["sasp_constraint_seconds_total"]
    return r["eval_count"] / (r["eval_duration"] / 1e9), r["eval_count"], mask_s / masked * 1e6 if masked else 0.0


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    T.MODEL = MODEL
    s = T.Server("--parallel", "1", name="constraint-cost")
    try:
        results = {label: [] for label, _ in CASES}
        for seed in range(runs):
            for label, schema in CASES:
                results[label].append(run(s, schema, seed))
        print("model %s, 1 thread, 1 slot, num_predict 240, %d runs each (interleaved)" % (MODEL, runs))
        for label, _ in CASES:
            rates = [x[0] for x in results[label]]
            print("%-26s %6.1f tokens/s median (runs %s), tokens %s, mask %.0f us/token" % (
                label, statistics.median(rates), " ".join("%.1f" % x for x in rates),
                [x[1] for x in results[label]], statistics.median(x[2] for x in results[label])))
    finally:
        s.stop()


if __name__ == "__main__":
    main()
