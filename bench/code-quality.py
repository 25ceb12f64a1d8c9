#!/usr/bin/env python3
"""code-quality.py: judge a code model the way a person does, against a running sasp-server.

Completes the prompts of bench/completion_prompts.py (function and class headers with docstrings,
written for this test) with the server's default sampling (the request names only the prompt,
max_tokens and a seed) and reports:
  valid        the share of completions that add code after which the file parses (Python's ast): the
               prompt plus the completion cut at its last complete line (the whole completion when
               the model ended it itself, finish_reason "stop") parses, and that part has at least one
               line that is neither blank nor a comment (a run of "#" lines is not code)
  degenerate   the share that repeat themselves: one to three words repeated back to back five times
               or more ("init_init_init_init_init", "self.x = self.x = ..."), or one line four times
               in a row ("#", "#", "#", "#")
  distinct-2   distinct word bigrams over all word bigrams of all completions (higher: more varied)
  empty        the share with nothing but white space
and for fill-in-the-middle, the share of middles with which prefix + middle + suffix parses, and the
share equal to the original middle (after stripping white space). FIM requests go to /infill when the
server has it, else to /v1/completions with the prompt as token ids:
<|fim_prefix|> prefix <|fim_suffix|> suffix <|fim_middle|>.

  python3 bench/code-quality.py --url http://127.0.0.1:8080 --samples 2 --json out.json --show 3
Only the standard library; any python3.
"""
import argparse
import ast
import json
import os
import re
import sys
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from completion_prompts import COMPLETIONS, FIM  # noqa: E402

WORD = re.compile(r"[A-Za-z0-9]+")


def post(url, body, timeout=300):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def parses(code):
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):
        return False


def complete_part(text, finish_reason):
    """The completion as judged: whole when the model stopped itself, else cut at its last newline."""
    if finish_reason == "stop":
        return text if text.endswith("\n") else text + "\n"
    cut = text.rfind("\n")
    return text[:cut + 1] if cut >= 0 else ""


def has_code(text):
    return any(ln.strip() and not ln.strip().startswith("#") for ln in text.splitlines())


def degenerate(text, times=5, line_times=4):
    """Whether one to three words repeat back to back `times` times or more, or one non-blank line
    `line_times` times in a row."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i in range(len(lines) - line_times + 1):
        if len(set(lines[i:i + line_times])) == 1:
            return True
    words = WORD.findall(text)
    for n in (1, 2, 3):
        for i in range(len(words) - n * times + 1):
            phrase = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == phrase for k in range(1, times)):
                return True
    return False


def bigrams(text):
    w = WORD.findall(text)
    return list(zip(w, w[1:]))


def complete(url, prompt, seed, max_tokens, healing=True, extra=None):
    """The completion of prompt; extra: more request fields (sampling settings)."""
    body = dict(extra or {}, prompt=prompt, max_tokens=max_tokens, seed=seed)
    if not healing:
        body["token_healing"] = False
    r = post(url + "/v1/completions", body)
    c = r["choices"][0]
    return c["text"], c.get("finish_reason")


def infill(url, prefix, suffix, seed, max_tokens, mode, extra=None):
    """The middle the model writes between prefix and suffix, and whether /infill was used."""
    if mode in ("auto", "infill"):
        try:
            r = post(url + "/infill", dict(extra or {}, input_prefix=prefix, input_suffix=suffix,
                                           n_predict=max_tokens, seed=seed))
            return r["content"], "infill"
        except urllib.error.HTTPError as e:
            if mode == "infill" or e.code != 404:
                raise
    tok = lambda s: post(url + "/tokenize", {"content": s})["tokens"]  # noqa: E731
    special = {s: tok_special(url, s) for s in ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")}
    ids = [special["<|fim_prefix|>"]] + tok(prefix) + [special["<|fim_suffix|>"]] + tok(suffix) + \
        [special["<|fim_middle|>"]]
    r = post(url + "/v1/completions", dict(extra or {}, prompt=ids, max_tokens=max_tokens, seed=seed))
    return r["choices"][0]["text"], "tokens"


_SPECIAL = {}


def tok_special(url, s):
    if s not in _SPECIAL:
        ids = post(url + "/tokenize", {"content": s, "parse_special": True})["tokens"]
        if len(ids) != 1:
            sys.exit(f"code-quality: the model has no single token for {s} (no fill-in-the-middle)")
        _SPECIAL[s] = ids[0]
    return _SPECIAL[s]


def judge_completion(i, prompt, seed, text, finish):
    judged = complete_part(text, finish)
    return {"prompt": i, "seed": seed, "text": text, "finish_reason": finish,
            "valid": parses(prompt + judged) and has_code(judged), "degenerate": degenerate(text),
            "empty": not text.strip()}


def evaluate(url, prompts, fim_cases, seeds, max_tokens, fim_mode="auto", extra=None, fim_extra=None,
             healing=True, jobs=1):
    """Complete every prompt and fill every FIM case with each seed, sending extra (and fim_extra on the
    FIM requests) with each request, jobs requests at a time. Returns (summary, rows, fim_rows)."""
    from concurrent.futures import ThreadPoolExecutor
    work = [(i, p, s) for i, p in enumerate(prompts) for s in seeds]
    fim_work = [] if fim_mode == "off" else [(i, c, s) for i, c in enumerate(fim_cases) for s in seeds]

    def one(item):
        i, prompt, s = item
        text, finish = complete(url, prompt, s, max_tokens, healing, extra)
        return judge_completion(i, prompt, s, text, finish)

    def one_fim(item):
        i, (prefix, middle, suffix), s = item
        got, how = infill(url, prefix, suffix, s, min(max_tokens, 64), fim_mode, dict(extra or {}, **(fim_extra or {})))
        return {"case": i, "seed": s, "middle": got, "via": how, "valid": parses(prefix + got + suffix),
                "exact": got.strip() == middle.strip()}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        rows = list(pool.map(one, work))
        fim_rows = list(pool.map(one_fim, fim_work))
    return summarize(rows, fim_rows), rows, fim_rows


def summarize(rows, fim_rows):
    all_bigrams = [b for r in rows for b in bigrams(r["text"])]
    n, nf = max(1, len(rows)), max(1, len(fim_rows))
    return {"completions": len(rows), "valid": sum(r["valid"] for r in rows) / n,
            "degenerate": sum(r["degenerate"] for r in rows) / n,
            "empty": sum(r["empty"] for r in rows) / n,
            "distinct_2": len(set(all_bigrams)) / max(1, len(all_bigrams)),
            "fim_cases": len(fim_rows), "fim_valid": sum(r["valid"] for r in fim_rows) / nf,
            "fim_exact": sum(r["exact"] for r in fim_rows) / nf}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--samples", type=int, default=2, help="completions per prompt (seeds 1..N)")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--fim", choices=["auto", "infill", "tokens", "off"], default="auto")
    ap.add_argument("--json", help="write the figures and every completion here")
    ap.add_argument("--show", type=int, default=0, help="print this many completions and middles")
    ap.add_argument("--label", default="", help="a name for the Markdown row")
    ap.add_argument("--no-token-healing", action="store_true", help="send token_healing: false")
    args = ap.parse_args(argv)

    summary, rows, fim_rows = evaluate(args.url, COMPLETIONS, FIM, range(1, args.samples + 1), args.max_tokens,
                                       args.fim, healing=not args.no_token_healing)
    print("| model | completions | valid Python | degenerate | empty | distinct-2 | FIM middles | FIM file parses | FIM exact |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.label} | {summary['completions']} | {summary['valid']:.0%} | {summary['degenerate']:.0%} | "
          f"{summary['empty']:.0%} | {summary['distinct_2']:.2f} | {len(fim_rows)} | {summary['fim_valid']:.0%} | "
          f"{summary['fim_exact']:.0%} |")
    for r in rows[:args.show]:
        print(f"\n--- prompt {r['prompt']} seed {r['seed']} (valid {r['valid']}, degenerate {r['degenerate']})")
        print(COMPLETIONS[r["prompt"]] + r["text"])
    for r in fim_rows[:args.show]:
        print(f"\n--- FIM case {r['case']} seed {r['seed']} (parses {r['valid']}); the middle:\n{r['middle']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "completions": rows, "fim": fim_rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
