#!/usr/bin/env python
"""Tokenization at scale: does fitlam's memory stay flat as the corpus grows? 2M vs 20M tokens.

A synthetic English-like corpus is generated on the fly, never whole in memory, and fed to
`fitlam.corpus.tokenize_corpus(IterSource(...), n_workers=2)` (a cold cache folder each time), once per size,
each size in a fresh subprocess of this script. The child reports:

- wall time of `tokenize_corpus` (generating the text included: the generator runs in the parent's main thread,
  between the chunks it feeds the workers; its own time is reported beside it), tokens and tokens/s;
- its own peak memory: `resource.getrusage(RUSAGE_SELF).ru_maxrss`, and VmHWM from /proc/self/status (the same
  peak, counted from its `exec`), after the imports (numpy, pandas, torch via fitlam.core) and at the end;
- `resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`, the peak RSS of the largest single worker as the kernel reports
  it (the maximum over the waited-for children, not their sum). Shown, but not used for the goal: a worker is
  forked from the main process, and `ru_maxrss` counts the RSS it inherits between `fork` and `exec` (the whole
  main process, ~230 MB here, page tables copied by `fork`), so it reads at least that whatever the worker does.

This script samples the child's process tree from /proc every 20 ms: the peak of the summed RSS (shared pages
counted in every process) and of the summed PSS (shared pages divided among their processes), the honest
"memory the tokenization needs at once", and each worker's VmHWM (its own peak since `exec`).
`main VmHWM + workers x largest worker VmHWM` is an upper bound of the tree's peak. This script imports neither
fitlam nor torch before the runs, so that the children's `ru_maxrss` does not inherit a large RSS from it.

The corpus: documents of log-normal length (median ~180 words), sentences of ~15 words with a capitalised first
word and a final `.`/`!`/`?`, commas, `'s`, names, a few ALL-CAPS words, numbers, quotes and `<br /><br />`
paragraph breaks. Words are drawn from a Zipf-like law (Lomax ranks, tail exponent 2.2, scale 600) over an
unbounded vocabulary of pronounceable pseudo-words, tuned so that the number of distinct words grows like IMDb's
(Heaps' law: ~36k distinct at 1.5M words, ~72k at 6.7M words, as in imdb/train.csv). So the vocabulary keeps
growing with the corpus, as a real one does: a memory that grows with the number of distinct tokens shows here.
The 2M corpus is a prefix of the 20M one (same seed).

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/tokenize_scale.py             # 2M + 20M, ~1 min on 2 cores
    flock -s /tmp/fitlam-cpu.lock .venv/bin/python bench/tokenize_scale.py --sizes 20000 200000   # a smoke test
"""
from __future__ import annotations
import argparse, json, os, platform, resource, shutil, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from _common import OUT, ROOT, Sampler, command, loadavg, print_block, tree_pids, write_json

GEN_VERSION = 'synthetic-en-v1'


# 1. The synthetic corpus.
_ONSETS = ['', 'b', 'c', 'd', 'f', 'g', 'h', 'j', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'w', 'br', 'cr', 'dr', 'gr',
           'pl', 'st', 'tr', 'sh', 'ch', 'th']
_NUCLEI = ['a', 'e', 'i', 'o', 'u', 'ea', 'ou', 'ai']
_CODAS = ['', 'n', 'r', 's', 't', 'l', 'm', 'nd', 'st', 'ng']
_SYLLABLES = [o + n + c for o in _ONSETS for n in _NUCLEI for c in _CODAS]     # 2,240 syllables


def pseudo_word(rank: int) -> str:
    "A distinct pronounceable lower-case word for each rank >= 0 (frequent ranks get short words)."
    out = []
    while True:
        rank, d = divmod(rank, len(_SYLLABLES)); out.append(_SYLLABLES[d])
        if rank == 0: return ''.join(out)
        rank -= 1


_TABLE_SIZE = 1 << 16
_TABLE: list[str] = []          # the 65,536 most frequent words, built once (the same for every corpus size)


def synthetic_texts(n_words: int, seed: int = 0, zipf_a: float = 2.2, zipf_scale: float = 600.) -> 'Iterator[str]':
    "Yield documents of English-like synthetic text, `n_words` words in all, deterministically from `seed`."
    if not _TABLE: _TABLE.extend(pseudo_word(r) for r in range(_TABLE_SIZE))
    table, rng, left = _TABLE, np.random.default_rng(seed), n_words
    while left > 0:
        n = int(min(left, max(10, rng.lognormal(5.2, 0.7))))           # words in this document (median ~180)
        left -= n
        u = rng.random(n)
        ranks = np.floor(zipf_scale * ((1 - u) ** (-1 / (zipf_a - 1)) - 1)).astype(np.int64)   # Lomax: p(r) ~ r^-2.2 in the tail
        words = [table[r] if r < _TABLE_SIZE else pseudo_word(r) for r in ranks.tolist()]
        # decorations, drawn vectorised; the loops below touch only the marked words
        v = rng.random((6, n))
        for i in np.flatnonzero(ranks % 17 == 5).tolist(): words[i] = words[i].capitalize()     # names: always capitalised
        for i in np.flatnonzero(v[0] < 0.003).tolist(): words[i] = words[i].upper()              # SHOUTING
        for i in np.flatnonzero(v[1] < 0.01).tolist(): words[i] = str(int(ranks[i]) % 2000)      # numbers
        for i in np.flatnonzero(v[2] < 0.012).tolist(): words[i] += "'s"
        for i in np.flatnonzero(v[3] < 0.05).tolist(): words[i] += ','
        for i in np.flatnonzero(v[4] < 0.004).tolist(): words[i] = f'"{words[i]}"'
        ends = np.flatnonzero(v[5] < 1 / 15).tolist() + [n - 1]                               # sentence ends (~15 words)
        starts = [0] + [e + 1 for e in ends[:-1] if e + 1 < n]
        for i in starts: words[i] = words[i][:1].upper() + words[i][1:]
        marks = rng.choice(['.', '.', '.', '.', '.', '.', '!', '?', '...', '.<br /><br />'], size=len(ends)).tolist()
        for i, m in zip(ends, marks): words[i] += m
        yield ' '.join(words)


def synthetic_source(n_words: int, seed: int = 0):
    "The corpus as a fitlam streaming source (generated anew at each pass)."
    from fitlam.corpus import IterSource
    return IterSource(lambda: synthetic_texts(n_words, seed), fingerprint=f'{GEN_VERSION} seed={seed} n_words={n_words}',
                      name=f'synthetic {n_words:,} words', n_chars=7 * n_words)


# 2. One size, in a fresh process.
def _vm_hwm_kb() -> int:
    "This process's peak RSS since its `exec` (kB)."
    with open('/proc/self/status') as f: return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))


def child(n_words: int, seed: int, n_workers: int, max_cache: int | None) -> dict:
    t_start = time.perf_counter()
    from fitlam.tokenizer import Tokenizer
    from fitlam.corpus import tokenize_corpus
    import fitlam.corpus as ft
    hwm_imports = _vm_hwm_kb()
    gen_time = [0.]
    def timed_texts():           # the generator's own time, accumulated between the chunks it hands over
        it = synthetic_texts(n_words, seed)
        while True:
            t = time.perf_counter()
            doc = next(it, None)
            gen_time[0] += time.perf_counter() - t
            if doc is None: return
            yield doc
    src = ft.IterSource(timed_texts, fingerprint=f'{GEN_VERSION} seed={seed} n_words={n_words}', name=f'synthetic {n_words:,} words',
                        n_chars=7 * n_words)
    tok = Tokenizer() if max_cache is None else Tokenizer(max_cache=max_cache)
    cache = Path(tempfile.mkdtemp(prefix='fitlam-scale-'))
    try:
        t0 = time.perf_counter()
        corpus = tokenize_corpus(src, tok, cache_dir=cache, n_workers=n_workers, progress=False)
        wall = time.perf_counter() - t0
        self_kb, hwm_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, _vm_hwm_kb()
        child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        disk = sum(f.stat().st_size for f in corpus.path.iterdir())
        out = dict(n_words=n_words, n_docs=corpus.n_docs, n_tokens=corpus.n_tokens, n_types=len(corpus.itos),
                   wall_s=wall, gen_s=gen_time[0], tokens_per_s=corpus.n_tokens / wall, n_workers=n_workers,
                   max_cache=tok.max_cache, hwm_imports_mb=hwm_imports / 1024, hwm_self_mb=hwm_kb / 1024,
                   ru_maxrss_self_mb=self_kb / 1024, ru_maxrss_children_mb=child_kb / 1024, cache_mb=disk / 2**20,
                   process_s=time.perf_counter() - t_start)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


class TreeMem(Sampler):
    """Sample the process tree under `pid` from /proc every `every` s: the peak of its summed RSS and PSS, and the
    peak RSS of each process since its `exec` (VmHWM; unlike `ru_maxrss`, it leaves out the RSS a process inherits
    for the moment between `fork` and `exec`, which for a worker is its parent's whole RSS)."""
    def reset(self):
        self.rss = self.pss = self.procs = 0
        self.hwm: dict[int, int] = {}
    def sample(self):
        rss = pss = n = 0
        for p in tree_pids(self.pid):
            try:
                with open(f'/proc/{p}/status') as f:
                    st = {l.split(':')[0]: l.split()[1] for l in f if l.startswith(('VmRSS', 'VmHWM'))}
                with open(f'/proc/{p}/smaps_rollup') as f:
                    pss += next(int(l.split()[1]) for l in f if l.startswith('Pss:'))
                rss += int(st['VmRSS']); self.hwm[p] = max(self.hwm.get(p, 0), int(st['VmHWM'])); n += 1
            except (OSError, KeyError, StopIteration): pass
        self.rss, self.pss, self.procs = max(self.rss, rss), max(self.pss, pss), max(self.procs, n)
    def workers_hwm_mb(self) -> float:
        "The largest VmHWM among the descendants (the workers), MB."
        return max([v for p, v in self.hwm.items() if p != self.pid] or [0]) / 1024


def run_size(n_words: int, args) -> dict:
    cmd = [sys.executable, __file__, '--child', str(n_words), '--seed', str(args.seed), '--workers', str(args.workers)]
    if args.max_cache is not None: cmd += ['--max-cache', str(args.max_cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    with TreeMem(proc.pid) as mem:
        stdout, stderr = proc.communicate()
    if proc.returncode: raise SystemExit(f'child for {n_words:,} words failed:\n{stderr[-3000:]}')
    out = json.loads(stdout.strip().splitlines()[-1])
    out.update(tree_rss_mb=mem.rss / 1024, tree_pss_mb=mem.pss / 1024, max_processes=mem.procs, worker_hwm_mb=mem.workers_hwm_mb())
    out['self_plus_workers_mb'] = out['hwm_self_mb'] + args.workers * out['worker_hwm_mb']
    return out


def tokens_per_word(seed: int, n_words: int = 40_000) -> float:
    "Tokens (after the rules, xxbos and xxmaj included) per generated word, on a small sample: to size the corpora in tokens."
    from fitlam.tokenizer import Tokenizer
    docs = list(synthetic_texts(n_words, seed))
    return sum(map(len, Tokenizer().tokenize(docs))) / n_words


def run_python(*args) -> str:
    "Run this script with `args` in a fresh process; its last line of output."
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode: raise SystemExit(f'{args} failed:\n{out.stderr[-3000:]}')
    return out.stdout.strip().splitlines()[-1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--sizes', type=int, nargs='+', default=[2_000_000, 20_000_000], help='corpus sizes in tokens (approximate)')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-cache', type=int, default=None, help="the tokenizer's max_cache (default: fitlam's)")
    p.add_argument('--goal', type=float, default=1.5, help='largest acceptable peak-memory ratio, largest size / smallest')
    p.add_argument('--json', default=str(OUT/'tokenize_scale.json'))
    p.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument('--calibrate', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.seed, args.workers, args.max_cache))); return
    if args.calibrate:
        print(tokens_per_word(args.seed)); return

    # This process imports neither fitlam nor torch before the runs: a child's ru_maxrss starts at the RSS of the
    # process it was forked from (fork copies the page tables; exec comes after), so that one must stay small.
    load0, started = loadavg(), datetime.now(timezone.utc)
    tpw = float(run_python('--calibrate', '--seed', str(args.seed)))
    print(f'{tpw:.3f} tokens per generated word', flush=True)
    runs = []
    for size in args.sizes:
        n_words = int(round(size / tpw))
        print(f'{size:,} tokens ({n_words:,} words) in a fresh process ...', flush=True)
        r = run_size(n_words, args); r['target_tokens'] = size
        print(json.dumps(r), flush=True)
        runs.append(r)

    import fitlam
    from importlib.metadata import version
    info = dict(started=started.isoformat(timespec='seconds'), machine=platform.node(), cpus=os.cpu_count(),
                python=platform.python_version(), fitlam=fitlam.__version__, spacy=version('spacy'), torch=version('torch'),
                generator=GEN_VERSION, seed=args.seed, n_workers=args.workers, tokens_per_word=tpw,
                loadavg_start=load0, loadavg_end=loadavg(), command=command())
    small, big = runs[0], runs[-1]
    # (key, label, counts for the goal)
    measures = [('ru_maxrss_self_mb', 'main process: ru_maxrss (RUSAGE_SELF)', True),
                ('hwm_self_mb', 'main process: VmHWM', True),
                ('ru_maxrss_children_mb', 'largest worker: ru_maxrss (RUSAGE_CHILDREN; includes the fork, see notes)', False),
                ('worker_hwm_mb', 'largest worker: VmHWM, sampled', True),
                ('self_plus_workers_mb', f'main VmHWM + {args.workers} x largest worker VmHWM (upper bound)', True),
                ('tree_rss_mb', 'whole tree: peak of summed RSS, sampled', True),
                ('tree_pss_mb', 'whole tree: peak of summed PSS, sampled', True)]
    ratios = {k: big[k] / small[k] if small[k] else None for k, _, _ in measures}   # no worker: the corpus was one chunk
    goal_ratios = [ratios[k] for k, _, g in measures if g and ratios[k] is not None]
    result = dict(info=info, runs=runs, ratios=ratios, goal=args.goal, goal_met=all(v <= args.goal for v in goal_ratios))
    write_json(args.json, result)

    fmt = lambda n: f'{n / 1e6:.1f}M' if n >= 1e6 else f'{n / 1e3:.0f}k'
    head = ' | '.join(f'{fmt(r["n_tokens"])} tokens' for r in runs)
    lines = [f"Synthetic corpus ({GEN_VERSION}, seed {args.seed}), `tokenize_corpus(IterSource(...), n_workers={args.workers})`, cold "
             f"cache, each size in a fresh process (load average {' '.join(load0)} -> {' '.join(info['loadavg_end'])}):", '',
             f'| | {head} | {fmt(big["n_tokens"])} / {fmt(small["n_tokens"])} |', '|---|' + '---|' * (len(runs) + 1),
             '| documents | ' + ' | '.join(f'{r["n_docs"]:,}' for r in runs) + f' | {big["n_docs"] / small["n_docs"]:.1f}x |',
             '| distinct tokens (raw vocab) | ' + ' | '.join(f'{r["n_types"]:,}' for r in runs) + f' | {big["n_types"] / small["n_types"]:.1f}x |',
             '| wall time (s) | ' + ' | '.join(f'{r["wall_s"]:.1f}' for r in runs) + f' | {big["wall_s"] / small["wall_s"]:.1f}x |',
             '| of which generating the text (s) | ' + ' | '.join(f'{r["gen_s"]:.1f}' for r in runs) + ' | |',
             '| tokens/s | ' + ' | '.join(f'{r["tokens_per_s"] / 1e3:,.0f}k' for r in runs) + f' | {big["tokens_per_s"] / small["tokens_per_s"]:.2f} |',
             '| main process after imports, before tokenizing: VmHWM (MB) | ' + ' | '.join(f'{r["hwm_imports_mb"]:,.0f}' for r in runs) + ' | |']
    for k, label, g in measures:
        if ratios[k] is None: ratio = '-'
        elif not g: ratio = f'{ratios[k]:.2f}'
        else: ratio = f'**{ratios[k]:.2f}**' + ('' if ratios[k] <= args.goal else ' (over the goal)')
        lines.append(f'| peak memory, {label} (MB) | ' + ' | '.join(f'{r[k]:,.0f}' for r in runs) + f' | {ratio} |')
    lines.append(f"\nGoal: peak memory at {fmt(big['n_tokens'])} tokens within {args.goal}x of {fmt(small['n_tokens'])}: "
                 f"{'met' if result['goal_met'] else 'NOT met'} on every measure in bold" + ('' if result['goal_met'] else
                 f" (worst: {max(goal_ratios):.2f}x)") + '.')
    print_block(lines, args.json)


if __name__ == '__main__':
    main()
