#!/usr/bin/env python
"""Subword tokenization, time and peak memory: fitlam's `SentencePieceTokenizer` vs fastai 2.8.12's, on IMDb, in one run.

Both sides do what a user waits for when they tokenize a new corpus with SentencePiece: ULMFiT's default rules on
every review, a unigram model trained on the rules' output (`vocab_sz` the same on both sides: `--vocab-sz`, or
None for each library's own default, which is the same formula, a quarter of the corpus's word types, at most
30,000), then every review encoded into pieces with `--workers` worker processes.

- fitlam: `tokenize_corpus(ListSource(texts), SentencePieceTokenizer(vocab_sz=...), cache_dir=<fresh>, n_workers=2)`
  (it trains the model on the texts, keeps it in the token cache, then tokenizes into memory-mapped arrays).
- fastai: `tokenize_df(df, ['text'], n_workers=2, tok=SentencePieceTokenizer(vocab_sz=..., cache_dir=<fresh>))`
  (its `parallel_tokenize` calls the tokenizer's `setup`, which writes the rules' output to a file and trains
  the model, then tokenizes with a process pool), run by the peer's python.

Each side runs in a fresh process per repeat, its CSV read (pandas, the first `--n` rows) before the clock
starts; the time is one cold call (nothing cached), the median over `--repeats`. Peak memory: `_common.PeakMem`
samples the process tree every 20 ms (RSS and PSS summed over the process and its workers), imports included
(fitlam's torch, fastai's torch). The two models differ (fastai's special tokens are `▁xxbos`..., it skips
sentences over 4,192 bytes and uses SentencePiece's 16 training threads), so the token counts are reported,
not compared token for token. The peer's virtualenv needs `sentencepiece` (`pip install sentencepiece`).

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/sp_tokenize.py              # 22,500 reviews, 3 repeats
    .venv/bin/python bench/sp_tokenize.py --n 500 --repeats 1                         # a quick look
"""
from __future__ import annotations
import argparse, json, os, platform, statistics, subprocess, sys, tempfile
from datetime import datetime, timezone
from pathlib import Path

from _common import OUT, PEER_PYTHON, ROOT, PeakMem, command, data_dir, loadavg, print_block, require_peer_python, write_json


# 1. The two sides, each a script run in a fresh process: argv = csv, n, vocab_sz ('None' or a number), n_workers, work folder.
FITLAM_CODE = r'''
import json, sys, time
import pandas as pd
from fitlam.corpus import ListSource, tokenize_corpus
from fitlam.subword import SentencePieceTokenizer
csv, n, vocab_sz, n_workers, work = sys.argv[1], int(sys.argv[2]), (None if sys.argv[3] == 'None' else int(sys.argv[3])), int(sys.argv[4]), sys.argv[5]
texts = pd.read_csv(csv, nrows=n)['text'].astype(str).tolist()
t0 = time.perf_counter()
c = tokenize_corpus(ListSource(texts), SentencePieceTokenizer('en', vocab_sz=vocab_sz), cache_dir=work, n_workers=n_workers, progress=False)
dt = time.perf_counter() - t0
from fitlam.tokenizer import Tokenizer
tok = Tokenizer.from_config(c.meta['tokenizer'], sp_model=c.sp_model)
print(json.dumps(dict(time_s=dt, n_docs=c.n_docs, n_tokens=c.n_tokens, n_pieces=len(tok.pieces()), first=c.doc_tokens(0)[:12])))
'''

PEER_CODE = r'''
import json, sys, time
import pandas as pd
from fastai.text.all import SentencePieceTokenizer, tokenize_df
import fastai
csv, n, vocab_sz, n_workers, work = sys.argv[1], int(sys.argv[2]), (None if sys.argv[3] == 'None' else int(sys.argv[3])), int(sys.argv[4]), sys.argv[5]
df = pd.read_csv(csv, nrows=n)[['text']].astype(str)
t0 = time.perf_counter()
tok = SentencePieceTokenizer('en', vocab_sz=vocab_sz, cache_dir=work)
res, cnt = tokenize_df(df, ['text'], n_workers=n_workers, tok=tok)
dt = time.perf_counter() - t0
print(json.dumps(dict(time_s=dt, n_docs=len(res), n_tokens=int(res['text_length'].sum()), n_pieces=tok.tok.GetPieceSize(),
                      first=list(res['text'][0][:12]), fastai=fastai.__version__)))
'''


def run_side(python: str, code: str, csv: Path, n: int, vocab_sz, n_workers: int, env: dict | None = None) -> dict:
    "One cold run in a fresh process: its JSON line, with the process tree's peak memory."
    with tempfile.TemporaryDirectory(prefix='sp-bench-') as work:
        proc = subprocess.Popen([python, '-c', code, str(csv), str(n), repr(vocab_sz), str(n_workers), work], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=work, env=env)
        with PeakMem(proc.pid) as mem: stdout, stderr = proc.communicate()
    if proc.returncode: raise SystemExit(f'{python} failed:\n{stderr[-3000:]}')
    return dict(json.loads(stdout.strip().splitlines()[-1]), **mem.mb())


def summarize(runs: list[dict]) -> dict:
    out = {k: v for k, v in runs[0].items() if k not in ('time_s', 'peak_rss_mb', 'peak_pss_mb')}
    return dict(out, times_s=[round(r['time_s'], 3) for r in runs], median_s=statistics.median(r['time_s'] for r in runs),
                peak_rss_mb=max(r['peak_rss_mb'] for r in runs), peak_pss_mb=max(r['peak_pss_mb'] for r in runs))


# 2. The run.
def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('data', nargs='?', default=None, help='the IMDb train.csv, or a folder holding it (default: $FITLAM_DATA or ../shared/data, /imdb/train.csv)')
    p.add_argument('--n', type=int, default=22_500, help='the first N reviews (default: all 22,500)')
    p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--vocab-sz', type=int, default=None, help="the model's size on both sides (default: each library's default, the same formula)")
    p.add_argument('--peer-python', default=PEER_PYTHON)
    p.add_argument('--json', default=str(OUT/'sp_tokenize.json'))
    a = p.parse_args()
    csv = Path(a.data) if a.data else data_dir()/'imdb'/'train.csv'
    if csv.is_dir(): csv = csv/'train.csv' if (csv/'train.csv').exists() else csv/'imdb'/'train.csv'
    if not csv.exists(): raise SystemExit(f'{csv}: not found (set FITLAM_DATA or pass the path); the benchmark needs the IMDb data')
    require_peer_python(a.peer_python)
    if subprocess.run([a.peer_python, '-c', 'import sentencepiece'], capture_output=True).returncode:
        raise SystemExit(f'{a.peer_python}: no sentencepiece in the peer\'s virtualenv; {Path(a.peer_python).parent}/pip install sentencepiece')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + ([os.environ['PYTHONPATH']] if os.environ.get('PYTHONPATH') else [])))
    load0, started = loadavg(), datetime.now(timezone.utc)
    fl_runs, fa_runs = [], []
    for r in range(a.repeats):                       # alternating, so that a change in the machine's load hits both sides
        for name, runs, python, code, e in (('fitlam', fl_runs, sys.executable, FITLAM_CODE, env), ('fastai', fa_runs, a.peer_python, PEER_CODE, None)):
            print(f'{name}, run {r + 1}/{a.repeats}, {a.n:,} reviews of {csv} ...', flush=True)
            runs.append(run_side(python, code, csv, a.n, a.vocab_sz, a.workers, e))
            print(json.dumps(runs[-1], ensure_ascii=False), flush=True)
    fl, fa = summarize(fl_runs), summarize(fa_runs)
    from importlib.metadata import version
    import fitlam
    info = dict(started=started.isoformat(timespec='seconds'), machine=platform.node(), cpus=os.cpu_count(), python=platform.python_version(),
                fitlam=fitlam.__version__, fastai=fa.get('fastai'), sentencepiece=version('sentencepiece'), csv=str(csv), n=a.n,
                vocab_sz=a.vocab_sz, repeats=a.repeats, n_workers=a.workers, loadavg_start=load0, loadavg_end=loadavg(), command=command())
    result = dict(info=info, fitlam=fl, fastai=fa, time_ratio=fl['median_s'] / fa['median_s'],
                  rss_ratio=fl['peak_rss_mb'] / fa['peak_rss_mb'], pss_ratio=fl['peak_pss_mb'] / fa['peak_pss_mb'])
    write_json(a.json, result)
    lines = [f"IMDb {csv.name}, the first {fl['n_docs']:,} reviews, SentencePiece unigram ({fl['n_pieces']:,} pieces fitlam, {fa['n_pieces']:,} fastai), "
             f"{a.workers} workers, median of {a.repeats} cold runs (load average {' '.join(load0)} -> {' '.join(info['loadavg_end'])}):", '',
             f"| | fastai {fa.get('fastai')} | fitlam | fitlam / fastai |", '|---|---|---|---|',
             f"| time: train + tokenize (s) | {fa['median_s']:.1f} | {fl['median_s']:.1f} | **{result['time_ratio']:.2f}** |",
             f"| peak RSS, process tree (MB) | {fa['peak_rss_mb']:,} | {fl['peak_rss_mb']:,} | **{result['rss_ratio']:.2f}** |",
             f"| peak PSS, process tree (MB) | {fa['peak_pss_mb']:,} | {fl['peak_pss_mb']:,} | {result['pss_ratio']:.2f} |",
             f"| tokens | {fa['n_tokens']:,} | {fl['n_tokens']:,} | {fl['n_tokens'] / fa['n_tokens']:.2f} |",
             f"| processes | {fa['max_processes']} | {fl['max_processes']} | |"]
    print_block(lines, a.json)


if __name__ == '__main__':
    main()
