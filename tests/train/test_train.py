#!/usr/bin/python3
"""test_train.py: the training pipeline (train/corpus.py, train/train.py, train/eval_perplexity.py)
on a tiny corpus made here: the validation split is deterministic and about 2%, training lowers the
loss, a run stopped and resumed gives bit for bit the weights of a run that was not stopped, the
schedule has its warm-up and decay, the export loads with checkpoint_io, and eval_perplexity.py
scores a file as the trainer does. Small sizes: a few seconds on one core."""
import contextlib
import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import unittest

import numpy as np
import torch

SRC = os.environ.get("SASP_SRCDIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "train"))
import bpe  # noqa: E402
import corpus  # noqa: E402
import eval_perplexity  # noqa: E402
import train  # noqa: E402
from checkpoint_io import load_checkpoint  # noqa: E402

TINY = ["--d-model", "32", "--n-layers", "2", "--n-heads", "2", "--ctx", "32", "--batch-size", "4",
        "--eval-every", "10", "--eval-windows", "4", "--threads", "1", "--log-every", "5"]


def make_corpus(d):
    """A corpus directory as corpus.py writes it, from this repository's own Python files."""
    texts = []
    for root in ("train", "tests"):
        for dirpath, _, files in os.walk(os.path.join(SRC, root)):
            for f in sorted(files):
                if f.endswith(".py"):
                    with open(os.path.join(dirpath, f), encoding="utf-8") as fh:
                        texts.append(fh.read())
    texts = sorted(set(texts))
    paths = []
    for i, t in enumerate(texts):
        p = os.path.join(d, f"doc{i}.py")
        with open(p, "w", encoding="utf-8") as fh:
            fh.write(t)
        paths.append(p)
    docs = []
    for p in paths:
        with open(p, "rb") as fh:
            docs.append(fh.read())
    tokens, merges = bpe.train(docs, 400, log=io.StringIO())
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(bpe.tokenizer_json(tokens, merges), fh)
    tok = bpe.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    ids = []
    for t in texts:
        ids += tok.encode(t) + [0]
    ids = np.asarray(ids, dtype=np.uint16)
    cut = len(ids) * 9 // 10
    ids[:cut].tofile(os.path.join(d, "train.bin"))
    ids[cut:].tofile(os.path.join(d, "val.bin"))
    with open(os.path.join(d, "val.txt"), "wb") as fh:
        fh.write(tok.decode(ids[cut:].tolist()))
    with open(os.path.join(d, "manifest.json"), "w") as fh:
        json.dump({"corpus_sha256": "test", "tokenizer": {"vocab_size": tok.vocab_size, "eot_id": 0}}, fh)


def run_train(args):
    with contextlib.redirect_stderr(io.StringIO()):
        return train.main(args)


class Corpus(unittest.TestCase):
    def test_split_is_deterministic_and_about_two_percent(self):
        digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(20000)]
        val = [d for d in digests if corpus.is_val(d)]
        self.assertEqual(val, [d for d in digests if corpus.is_val(d)])
        self.assertTrue(0.015 < len(val) / len(digests) < 0.025, len(val))

    def test_tokenizer_subset_is_capped_and_in_order(self):
        docs = {f"{i:02x}": ("p", "x" * (10 + i)) for i in range(50)}
        order = sorted(docs)
        sub, total = corpus.tokenizer_subset(order, docs, 200)
        self.assertEqual(sub, order[:len(sub)])
        self.assertLessEqual(total, 200)
        self.assertGreater(total + len(docs[order[len(sub)]][1]), 200)


class Training(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = tempfile.mkdtemp(prefix="sasp-train-test-")
        cls.data = os.path.join(cls.tmp, "data")
        os.makedirs(cls.data)
        make_corpus(cls.data)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def out(self, name):
        return os.path.join(self.tmp, name)

    def log(self, name):
        return train.read_log(os.path.join(self.out(name), "log.jsonl"))

    def test_schedule(self):
        a = train.parse_args(["--out", "x", "--steps", "100"])
        lrs = [train.lr_at(s, 100, a) for s in range(100)]
        self.assertAlmostEqual(lrs[4], a.lr)                     # 5 warm-up steps, then the peak
        self.assertTrue(all(x < y for x, y in zip(lrs[:4], lrs[1:5])))
        self.assertTrue(all(x >= y for x, y in zip(lrs[5:], lrs[6:])))
        self.assertAlmostEqual(train.lr_at(100, 100, a), a.lr * a.min_lr_frac)

    def test_loss_falls_and_export_loads(self):
        run_train(["--data", self.data, "--out", self.out("a"), "--steps", "60",
                   "--export", self.out("a-model")] + TINY)
        rows = self.log("a")
        val = [r["val_loss"] for r in rows if r["kind"] == "val"]
        self.assertLess(val[-1], val[0] - 0.2, val)
        self.assertLess(val[0], math.log(400) + 0.5)
        final = [r for r in rows if r["kind"] == "final"][0]
        self.assertEqual(final["step"], 60)
        self.assertTrue(os.path.isfile(os.path.join(self.out("a"), "loss.png")))
        model, cfg = load_checkpoint(self.out("a-model"))
        self.assertEqual((cfg.d_model, cfg.n_layers, cfg.max_seq_len), (32, 2, 32))
        self.assertEqual(model.checkpoint_metadata["steps"], "60")
        self.assertAlmostEqual(float(model.checkpoint_metadata["val_loss"]), final["val_loss_full"],
                               places=4)
        # eval_perplexity on the validation text, against the trainer's loss on the same windows
        # computed here (the file's tokens in non-overlapping windows of max_seq_len)
        tok = bpe.Tokenizer.from_file(os.path.join(self.out("a-model"), "tokenizer.json"))
        with open(os.path.join(self.data, "val.txt"), "rb") as fh:
            ids = tok.encode(fh.read(), allow_special=True)
        windows = [np.asarray(ids[s:s + 32]) for s in range(0, len(ids), 32)]
        full = [w for w in windows if len(w) == 32]
        want = train.mean_loss(model, full, batch=8)
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
            eval_perplexity.main(["-m", self.out("a-model"), os.path.join(self.data, "val.txt"),
                                  "--threads", "1"])
        got = float([ln for ln in out.getvalue().splitlines() if ln.startswith("mean NLL")][0].split()[2])
        # the same except the last, shorter window
        self.assertLess(abs(got - want) / want, 0.02, (got, want))

    def test_resume_is_exact(self):
        run_train(["--data", self.data, "--out", self.out("straight"), "--steps", "30", "--no-final-eval"] + TINY)
        # the same run, stopped after 14 steps (the checkpoint a SIGTERM writes) and resumed
        state = {}
        orig = train.save_state

        def save_and_stop(path, model, opt, step, *rest, **kw):
            orig(path, model, opt, step, *rest, **kw)
            state["step"] = step
        train.save_state = save_and_stop
        try:
            import signal
            calls = {"n": 0}
            real_lr = train.lr_at

            def lr_then_signal(step, total, args):
                calls["n"] += 1
                if calls["n"] == 15:
                    os.kill(os.getpid(), signal.SIGTERM)
                return real_lr(step, total, args)
            train.lr_at = lr_then_signal
            rc = run_train(["--data", self.data, "--out", self.out("stopped"), "--steps", "30",
                            "--no-final-eval"] + TINY)
        finally:
            train.lr_at = real_lr
            train.save_state = orig
        self.assertEqual(rc, 3)
        self.assertEqual(state["step"], 15)
        run_train(["--data", self.data, "--out", self.out("stopped"), "--resume", "--no-final-eval",
                   "--threads", "1", "--eval-every", "10", "--log-every", "5"])
        a = torch.load(os.path.join(self.out("straight"), "ckpt.pt"))
        b = torch.load(os.path.join(self.out("stopped"), "ckpt.pt"))
        self.assertEqual(a["step"], 30)
        self.assertEqual(b["step"], 30)
        for k in a["model"]:
            self.assertTrue(torch.equal(a["model"][k], b["model"][k]), k)

    def test_preln_trains_with_the_same_code(self):
        run_train(["--data", self.data, "--out", self.out("preln"), "--arch", "preln", "--steps", "20",
                   "--no-final-eval"] + TINY)
        start = self.log("preln")[0]
        self.assertEqual(start["config"]["architecture"], "preln")
        val = [r["val_loss"] for r in self.log("preln") if r["kind"] == "val"]
        self.assertLess(val[-1], val[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
