#!/usr/bin/python3
"""corpus.py: build the Python-source training corpus from files that Debian packages install.

The corpus is defined by a list of Debian packages, not by paths: the .py files each package lists in
`dpkg -L` are read, files that are not valid UTF-8 or are larger than 1 MB (generated tables) are
skipped, identical files are kept once (by SHA-256 of their bytes), and the rest are split into
training and validation by file, deterministically from each file's content hash (about 2% validation;
never by line). The corpus hash is a SHA-256 over the sorted content hashes, so the same package
versions give the same hash wherever they are installed.

Steps (all under --out, default data/corpus/):
  manifest.json   packages and versions, file/byte counts per split, corpus hash, tokenizer facts
  train.txt       training documents joined by <|endoftext|>   (val.txt likewise, for the C check)
  tok-files.txt   the files the tokenizer is trained on (training split only, capped at --tok-mb MB)
  tokenizer.json  byte-level BPE from train/bpe.py
  train.bin, val.bin  uint16 token arrays (numpy), documents separated by the <|endoftext|> id

Usage:  /usr/bin/python3 train/corpus.py [--out data/corpus] [--vocab-size 8192] [--manifest train/corpus-manifest.json]
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# The CPython 3.11 standard library is split between -minimal and -stdlib; the rest are large
# pure-Python (or mostly Python) projects.
PACKAGES = [
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "python3-sympy",
    "python3-networkx",
    "python3-django",
    "python3-numpy",
    "python3-matplotlib",
]
EOT = "<|endoftext|>"
MAX_FILE_BYTES = 1 << 20   # larger .py files are generated tables, not code people write
VAL_MODULUS = 50           # a file is in validation when its hash % 50 == 0: about 2%


def log(msg):
    print(f"corpus: {msg}", file=sys.stderr, flush=True)


def package_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout:
        sys.exit(f"corpus: package {pkg} is not installed (scripts/install-deps.sh --train installs it)")
    return r.stdout.strip()


def package_files(pkg):
    r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    return [p for p in r.stdout.splitlines() if p.endswith(".py") and os.path.isfile(p)
            and not os.path.islink(p)]


def is_val(digest):
    return int(digest[:16], 16) % VAL_MODULUS == 0


def collect():
    """Returns (packages, docs, skipped): docs maps content sha256 -> (path, text)."""
    packages, docs, skipped = [], {}, {"not_utf8": 0, "too_large": 0, "duplicate": 0, "empty": 0,
                                 "has_separator": 0}
    for pkg in PACKAGES:
        version = package_version(pkg)
        files = sorted(package_files(pkg))
        kept = 0
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            if len(data) > MAX_FILE_BYTES:
                skipped["too_large"] += 1
                continue
            if not data.strip():
                skipped["empty"] += 1
                continue
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                skipped["not_utf8"] += 1
                continue
            if EOT in text:   # would be confused with the document separator
                skipped["has_separator"] += 1
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest in docs:
                skipped["duplicate"] += 1
                continue
            docs[digest] = (path, text)
            kept += 1
        packages.append({"name": pkg, "version": version, "py_files": len(files), "kept": kept})
        log(f"{pkg} {version}: {len(files)} .py files, {kept} kept")
    return packages, docs, skipped


def split_stats(digests, docs):
    return {"files": len(digests),
            "bytes": sum(len(docs[d][1].encode("utf-8")) for d in digests)}


def write_text(path, digests, docs):
    with open(path, "w", encoding="utf-8") as f:
        f.write(EOT.join(docs[d][1] for d in digests))


def tokenizer_subset(train, docs, cap_bytes):
    """The training files in hash order (a deterministic shuffle) up to cap_bytes."""
    out, total = [], 0
    for d in train:
        n = len(docs[d][1].encode("utf-8"))
        if total + n > cap_bytes and out:
            break
        out.append(d)
        total += n
    return out, total


def encode_docs(tok, digests, docs, eot_id):
    ids = []
    for i, d in enumerate(digests):
        ids.extend(tok.encode(docs[d][1], allow_special=False))
        ids.append(eot_id)
        if i % 500 == 0:
            log(f"  encoded {i}/{len(digests)} files, {len(ids)} tokens")
    return np.asarray(ids, dtype=np.uint16)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="data/corpus")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--tok-mb", type=float, default=30.0, help="cap on the tokenizer-training text (MB)")
    ap.add_argument("--manifest", default=os.path.join(HERE, "corpus-manifest.json"),
                    help="where to copy the manifest (committed); '' for none")
    ap.add_argument("--no-tokenize", action="store_true", help="stop after the text and the manifest")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    packages, docs, skipped = collect()
    digests = sorted(docs)
    train = [d for d in digests if not is_val(d)]
    val = [d for d in digests if is_val(d)]
    corpus_hash = hashlib.sha256("".join(d + "\n" for d in digests).encode()).hexdigest()
    manifest = {
        "description": "Python source from Debian packages; see train/corpus.py",
        "packages": packages,
        "filters": {"suffix": ".py", "max_file_bytes": MAX_FILE_BYTES, "utf8_only": True,
                    "dedup": "sha256 of file bytes", "separator": EOT,
                    "validation": f"int(sha256[:16], 16) % {VAL_MODULUS} == 0",
                    "order": "sorted by sha256"},
        "skipped": skipped,
        "files": len(digests),
        "bytes": sum(len(docs[d][1].encode("utf-8")) for d in digests),
        "corpus_sha256": corpus_hash,
        "corpus_sha256_method": "sha256 over the sorted hex sha256 of each kept file, one per line",
        "train": split_stats(train, docs),
        "val": split_stats(val, docs),
    }
    log(f"{manifest['files']} files, {manifest['bytes']} bytes, hash {corpus_hash} "
        f"(train {len(train)}, val {len(val)}) in {time.time() - t0:.1f}s")
    write_text(os.path.join(args.out, "train.txt"), train, docs)
    write_text(os.path.join(args.out, "val.txt"), val, docs)

    if not args.no_tokenize:
        import bpe
        sub, sub_bytes = tokenizer_subset(train, docs, int(args.tok_mb * 1e6))
        listing = os.path.join(args.out, "tok-files.txt")
        with open(listing, "w") as f:
            f.write("".join(docs[d][0] + "\n" for d in sub))
        tok_path = os.path.join(args.out, "tokenizer.json")
        log(f"training BPE (vocab {args.vocab_size}) on {len(sub)} files, {sub_bytes} bytes")
        t1 = time.time()
        subprocess.run([sys.executable, os.path.join(HERE, "bpe.py"), "train",
                        "--vocab-size", str(args.vocab_size), "--out", tok_path,
                        "--files-from", listing], check=True)
        tok_seconds = time.time() - t1
        log(f"tokenizer trained in {tok_seconds:.1f}s")
        tok = bpe.Tokenizer.from_file(tok_path)
        eot_ids = tok.encode(EOT, allow_special=True)
        if len(eot_ids) != 1:
            sys.exit(f"corpus: tokenizer does not map {EOT} to one id: {eot_ids}")
        eot_id = eot_ids[0]
        t2 = time.time()
        for name, split in (("train", train), ("val", val)):
            arr = encode_docs(tok, split, docs, eot_id)
            arr.tofile(os.path.join(args.out, f"{name}.bin"))
            manifest[name]["tokens"] = int(arr.size)
            log(f"{name}: {arr.size} tokens ({manifest[name]['bytes'] / arr.size:.2f} bytes/token)")
        manifest["tokenizer"] = {"vocab_size": args.vocab_size, "eot_id": eot_id,
                                 "trained_on_files": len(sub), "trained_on_bytes": sub_bytes,
                                 "train_seconds": round(tok_seconds, 1),
                                 "encode_seconds": round(time.time() - t2, 1),
                                 "sha256": hashlib.sha256(open(tok_path, "rb").read()).hexdigest()}

    text = json.dumps(manifest, indent=2) + "\n"
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        f.write(text)
    if args.manifest:
        with open(args.manifest, "w") as f:
            f.write(text)
    log(f"done in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
