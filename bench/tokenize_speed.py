#!/usr/bin/env python
"""Tokenization speed and memory: fitlam vs fastai 2.8.12 on IMDb, in one run.

- fitlam: `fitlam.tokenizer.tokenize_corpus(CSVSource(train.csv))`, in this process, 2 worker processes,
  default rules, into a fresh cache folder each time (cold: nothing cached). The time covers everything a
  user waits for: hashing the CSV for the cache key, starting the workers, reading the CSV, tokenizing,
  numericalizing, writing the memory-mapped arrays. The cache-hit time (the same call again) is reported
  beside it.
- fastai: its own path, `tokenize_df(df, ['text'], n_workers=2, tok=SpacyTokenizer('en'))` with the default
  rules (what `Tokenizer.from_df(...).setup` calls), run by the peer's python in a subprocess. As in
  ../shared/peer/peer_tokenize_bench.py: one untimed warm-up call, then `--repeats` timed calls on the
  DataFrame already in memory (so fastai's time leaves out reading the CSV, which fitlam's includes).

tokens/s = tokens (after the rules, `xxbos`/`xxmaj`/... included) / median seconds. Both sides also hash
their token lists, so the run checks that fitlam's tokens are fastai's, document for document.

Peak memory: a thread samples /proc every 20 ms and sums over the process tree (the measuring process and
all its descendants: fitlam's workers; fastai's subprocess and its pool) both RSS (what `top` shows; pages
shared between processes count in each) and PSS (shared pages divided among the processes sharing them:
the memory really used). For fitlam the tree is this process, so its baseline (pandas, torch imported by
fitlam.core) is included, as fastai's imports are on its side.

Then fitlam alone on imdb/unsup_0.csv + unsup_1.csv (49,730 reviews), cold.

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/tokenize_speed.py      # ~6 min on 2 cores
    .venv/bin/python bench/tokenize_speed.py --repeats 1 --no-unsup             # a quick look
"""
from __future__ import annotations
import argparse, hashlib, json, os, platform, shutil, statistics, subprocess, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

from _common import OUT, PEER_PYTHON, PeakMem, command, data_dir, loadavg, print_block, require_peer_python, write_json


# 1. Memory: `_common.PeakMem` samples the process tree's summed RSS and PSS every 20 ms. The token hash:
def token_hash(docs) -> str:
    "A hash of a list of token lists (the same on both sides when the tokens are the same)."
    h = hashlib.sha1()
    for d in docs: h.update('\x00'.join(d).encode('utf-8', 'surrogatepass')); h.update(b'\x01')
    return h.hexdigest()


# 2. fastai, in the peer's virtualenv (mirrors ../shared/peer/peer_tokenize_bench.py, plus the token hash).
PEER_CODE = r'''
import json, statistics, sys, time, hashlib
import pandas as pd
from fastai.text.all import tokenize_df, SpacyTokenizer
import fastai, spacy
csv, repeats, n_workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
df = pd.read_csv(csv)[['text']].astype(str)
tok = SpacyTokenizer('en')
res, cnt = tokenize_df(df, ['text'], n_workers=n_workers, tok=tok)            # warm-up, untimed
h = hashlib.sha1()
for d in res['text']: h.update('\x00'.join(d).encode('utf-8', 'surrogatepass')); h.update(b'\x01')
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    res, cnt = tokenize_df(df, ['text'], n_workers=n_workers, tok=tok)
    times.append(time.perf_counter() - t0)
print(json.dumps(dict(fastai=fastai.__version__, spacy=spacy.__version__, n_docs=len(df), times_s=times,
                      n_tokens=int(res['text_length'].sum()), n_types=len(cnt), token_hash=h.hexdigest())))
'''

def run_fastai(python: str, csv: Path, repeats: int, n_workers: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen([python, '-c', PEER_CODE, str(csv), str(repeats), str(n_workers)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=d)
        with PeakMem(proc.pid) as mem:        # the peer's process tree: its python and its pool
            stdout, stderr = proc.communicate()
    if proc.returncode: raise SystemExit(f'fastai run failed:\n{stderr[-3000:]}')
    out = json.loads(stdout.strip().splitlines()[-1])
    out.update(mem.mb(), median_s=statistics.median(out['times_s']))
    return out


# 3. fitlam, in this process.
def run_fitlam(sources: list, repeats: int, n_workers: int, check_hash: bool) -> dict:
    from fitlam.corpus import tokenize_corpus
    times, hit_times, mem_all = [], [], []
    for r in range(repeats):
        cache = Path(tempfile.mkdtemp(prefix='fitlam-bench-'))
        try:
            with PeakMem() as mem:
                t0 = time.perf_counter()
                corpora = [tokenize_corpus(s, cache_dir=cache, n_workers=n_workers, progress=False) for s in sources]
                times.append(time.perf_counter() - t0)
            mem_all.append(mem.mb())
            t0 = time.perf_counter()
            hits = [tokenize_corpus(s, cache_dir=cache, n_workers=n_workers, progress=False) for s in sources]
            hit_times.append(time.perf_counter() - t0)
            assert all(h.from_cache for h in hits) and not any(c.from_cache for c in corpora)
            n_tokens, n_docs = sum(c.n_tokens for c in corpora), sum(c.n_docs for c in corpora)
            if check_hash and r == 0:
                c = corpora[0]
                h = token_hash(c.doc_tokens(i) for i in range(c.n_docs))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    out = dict(times_s=times, median_s=statistics.median(times), cache_hit_s=statistics.median(hit_times), n_tokens=n_tokens,
               n_docs=n_docs, peak_rss_mb=max(m['peak_rss_mb'] for m in mem_all), peak_pss_mb=max(m['peak_pss_mb'] for m in mem_all),
               max_processes=max(m['max_processes'] for m in mem_all))
    if check_hash: out['token_hash'] = h
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--csv', default=None, help='default: $FITLAM_DATA (or ../shared/data)/imdb/train.csv')
    p.add_argument('--peer-python', default=PEER_PYTHON)
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--no-unsup', action='store_true', help='skip the timing on imdb/unsup_*.csv')
    p.add_argument('--json', default=str(OUT/'tokenize.json'))
    args = p.parse_args()
    csv = Path(args.csv) if args.csv else data_dir()/'imdb'/'train.csv'
    if not csv.exists(): raise SystemExit(f'{csv}: not found (set FITLAM_DATA or pass --csv); the benchmark needs the IMDb data')
    require_peer_python(args.peer_python)
    load0, started = loadavg(), datetime.now(timezone.utc)
    from fitlam.corpus import CSVSource
    from importlib.metadata import version
    import fitlam

    print(f'fitlam on {csv} ...', flush=True)
    fl = run_fitlam([CSVSource(csv)], args.repeats, args.workers, check_hash=True)
    print(json.dumps(fl), flush=True)
    print(f'fastai on {csv} ...', flush=True)
    fa = run_fastai(args.peer_python, csv, args.repeats, args.workers)
    print(json.dumps(fa), flush=True)
    unsup = None
    if not args.no_unsup:
        files = [csv.parent/'unsup_0.csv', csv.parent/'unsup_1.csv']
        if all(f.exists() for f in files):
            print('fitlam on unsup ...', flush=True)
            unsup = run_fitlam([CSVSource(f) for f in files], args.repeats, args.workers, check_hash=False)
            print(json.dumps(unsup), flush=True)

    same = fl['token_hash'] == fa['token_hash'] and fl['n_tokens'] == fa['n_tokens']
    speed = (fl['n_tokens'] / fl['median_s']) / (fa['n_tokens'] / fa['median_s'])
    info = dict(started=started.isoformat(timespec='seconds'), machine=platform.node(), cpus=os.cpu_count(),
                python=platform.python_version(), fitlam=fitlam.__version__, spacy=version('spacy'), torch=version('torch'),
                fastai=fa['fastai'], csv=str(csv), repeats=args.repeats, n_workers=args.workers,
                loadavg_start=load0, loadavg_end=loadavg(), command=command())
    result = dict(info=info, fitlam=fl, fastai=fa, unsup=unsup, identical_tokens=same, speedup=speed,
                  rss_ratio=fl['peak_rss_mb'] / fa['peak_rss_mb'], pss_ratio=fl['peak_pss_mb'] / fa['peak_pss_mb'])
    write_json(args.json, result)

    tps = lambda r: f"{r['n_tokens'] / r['median_s'] / 1e3:,.0f}k"
    lines = [f"IMDb train.csv, {fl['n_docs']:,} reviews, {fl['n_tokens']:,} tokens, {args.workers} workers, "
             f"median of {args.repeats} (load average {' '.join(load0)} -> {' '.join(info['loadavg_end'])}):", '',
             '| | fastai 2.8.12 | fitlam | fitlam / fastai |', '|---|---|---|---|',
             f"| time (s) | {fa['median_s']:.1f} | {fl['median_s']:.1f} (cold) | {fl['median_s'] / fa['median_s']:.2f} |",
             f"| tokens/s | {tps(fa)} | {tps(fl)} | **{speed:.1f}x** |",
             f"| peak RSS, process tree (MB) | {fa['peak_rss_mb']:,} | {fl['peak_rss_mb']:,} | **{result['rss_ratio']:.2f}** |",
             f"| peak PSS, process tree (MB) | {fa['peak_pss_mb']:,} | {fl['peak_pss_mb']:,} | {result['pss_ratio']:.2f} |",
             f"| processes | {fa['max_processes']} | {fl['max_processes']} | |",
             f"| cache hit (s) | - | {fl['cache_hit_s']:.2f} | |",
             f"| same tokens, every document | | {'yes' if same else 'NO'} | |"]
    if unsup:
        lines += ['', f"fitlam on imdb/unsup_0.csv + unsup_1.csv ({unsup['n_docs']:,} reviews, {unsup['n_tokens']:,} tokens), cold: "
                      f"{unsup['median_s']:.1f} s ({tps(unsup)} tokens/s), peak RSS {unsup['peak_rss_mb']:,} MB, "
                      f"PSS {unsup['peak_pss_mb']:,} MB; cache hit {unsup['cache_hit_s']:.2f} s."]
    print_block(lines, args.json)


if __name__ == '__main__':
    main()
