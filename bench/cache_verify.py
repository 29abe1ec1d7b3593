#!/usr/bin/env python
"""What checking a token cache entry costs: a cache hit on IMDb's unlabelled reviews with and without the CRC-32 check.

A cache hit (`tokenize_corpus` on a source tokenized before) hashes the source for the cache key, opens the entry
and memory-maps it. The first open of an entry in a process also reads its files once more to check their CRC-32
checksums and the ranges of the token ids and offsets (`TokenizedCorpus._verify`); later opens of the same, unchanged
files skip it. Each timing below is a fresh process (nothing in memory but the OS page cache, warm after the first
run), the median of `--repeats`:

- `hit, checked`: `tokenize_corpus(CSVSource(unsup_0.csv, unsup_1.csv))` as a user calls it,
- `hit, unchecked`: the same with `_verify` skipped (what a cache hit cost before the checksums),
- `checksum pass`: `_verify` alone on the entry.

    FITLAM_DATA=../shared/data .venv/bin/python bench/cache_verify.py          # ~5 min: tokenizes 11.7M words once (fitlam only)
"""
from __future__ import annotations
import argparse, os, platform, statistics, subprocess, sys, tempfile, time
from pathlib import Path

from _common import OUT, data_dir, write_json

CHILD = '''
import sys, time
t0 = time.perf_counter()
from fitlam import corpus as T
from fitlam.corpus import CSVSource, IterSource, TokenizedCorpus, tokenize_corpus
files, cache, mode = sys.argv[1].split(','), sys.argv[2], sys.argv[3]
def source():
    parts = [CSVSource(f) for f in files]
    return IterSource(lambda: (t for p in parts for t in p.texts()), '+'.join(p.fingerprint() for p in parts), 'imdb unsup')
if mode == 'unchecked': T.TokenizedCorpus._verify = lambda self: None
t_import = time.perf_counter()
c = tokenize_corpus(source(), cache_dir=cache, progress=False)
t_hit = time.perf_counter()
assert c.from_cache or mode == 'build', 'not a cache hit'
if mode == 'pass':
    T._VERIFIED.clear(); t = time.perf_counter(); c._verify(); t_hit = t_import + time.perf_counter() - t
print(t_hit - t_import, c.n_tokens, sum(f.stat().st_size for f in c.path.iterdir()))
'''


def run(files, cache, mode):
    r = subprocess.run([sys.executable, '-c', CHILD, ','.join(map(str, files)), str(cache), mode], capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    s, n_tokens, n_bytes = r.stdout.split()
    return float(s), int(n_tokens), int(n_bytes)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--cache', default=None, help='token cache folder (default: a temporary one, tokenized first)')
    a = ap.parse_args()
    data = data_dir()
    files = [data/'imdb'/'unsup_0.csv', data/'imdb'/'unsup_1.csv']
    if not all(f.exists() for f in files): raise SystemExit(f'no IMDb unsup files under {data}/imdb: set FITLAM_DATA')
    cache = Path(a.cache or tempfile.mkdtemp(prefix='fitlam-cache-bench-'))
    t = time.perf_counter(); _, n_tokens, n_bytes = run(files, cache, 'build'); build = time.perf_counter() - t
    res = {m: [run(files, cache, m)[0] for _ in range(a.repeats)] for m in ('checked', 'unchecked', 'pass')}
    med = {m: statistics.median(v) for m, v in res.items()}
    out = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count(), load=os.getloadavg()), tokens=n_tokens,
               cache_bytes=n_bytes, build_s=build, runs=res, median=med)
    write_json(OUT/'cache_verify.json', out)
    print(f'IMDb unsup: {n_tokens:,} tokens, cache entry {n_bytes / 2**20:.0f} MiB, tokenized in {build:.0f} s\n')
    print('| cache hit (fresh process, median of %d) | seconds |' % a.repeats)
    print('|---|---|')
    print(f"| unchecked (sizes only) | {med['unchecked']:.3f} |")
    print(f"| checked (CRC-32 + id/offset ranges, first open in a process) | {med['checked']:.3f} |")
    print(f"| of which the checksum pass | {med['pass']:.3f} ({med['pass'] / med['checked']:.0%} of the checked hit) |")


if __name__ == '__main__':
    main()
