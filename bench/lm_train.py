#!/usr/bin/env python
"""AWD-LSTM language-model training speed: fitlam vs fastai 2.8.12, in one run.

For each model size (default: emb 400 / hid 1152 / 3 layers, and 200 / 512 / 2), vocab 10k, bs 64,
bptt 70, this script alternates two fresh processes per round:

- fitlam: `fitlam.models.get_language_model` trained by a plain loop (no learner): cross-entropy +
  AR/TAR (alpha 2, beta 1, on `model.last_rnn_outputs`), `torch.optim.AdamW(fused=True)` with
  fastai's hyper-parameters (betas (mom, 0.99), eps 1e-5, decoupled wd 0.01, none on biases) and
  fastai's one-cycle schedule (lr from lr/25 up to lr over 25% of the batches then down to lr/1e5,
  momentum 0.8 -> 0.7 -> 0.8, as `fit_one_cycle` on a `language_model_learner`);
- fastai: ../shared/peer/peer_lm_bench.py (`language_model_learner(...).fit_one_cycle(1, lr)`) in
  the peer's virtualenv.

Both read the same token stream: a synthetic corpus with something to learn (each word is followed
by one of 4 words fixed by it 60% of the time, else a Zipf-distributed word) written to bench/out/,
that fastai tokenizes with its own tokenizer, cut into 2,000-token documents and shuffled, so the
loss curves can be compared. Per batch we time forward + loss + backward + optimizer step (the
peer's `before_batch` -> `after_batch`) and quote the median; tokens/s = bs * bptt / median.
The same run measures the machine's fp32 matmul GFLOP/s and the fraction of it the LM reaches
(LSTM + decoder FLOPs, fwd + bwd = 3 x fwd). Optionally (`--malloc-tuned`) both sides again with
glibc told not to return big buffers to the OS, and (`--bf16-batches`) fitlam under bf16 autocast.

    python bench/lm_train.py                       # the default comparison (~30 min on 2 cores)
    python bench/lm_train.py --configs 200,512,2 --batches 10 --rounds 1   # a quick look
"""
from __future__ import annotations
import argparse, json, math, os, platform, random, resource, statistics, subprocess, sys, time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT/'bench'/'out'
PEER_SCRIPT = ROOT.parent/'shared'/'peer'/'peer_lm_bench.py'
MALLOC_TUNED = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(1 << 40)}


def loadavg() -> list[str]:
    with open('/proc/loadavg') as f: return f.read().split()[:3]


# 1. The corpus: 'w0 w17 ...' lines, learnable, every word seen >= 3 times so both vocabs have all of them.
def write_corpus(path: Path, n_words: int, n_tokens: int, seed: int):
    rng = random.Random(seed)
    ranks = list(range(n_words)); rng.shuffle(ranks)
    zipf_w = [1 / (r + 1) ** 1.1 for r in range(n_words)]
    zipf = rng.choices(ranks, weights=zipf_w, k=n_tokens)            # pre-drawn Zipf words
    P, Q = 7919, 1237                                                # w -> (w*P + k*Q) % n_words, k in 0..3: a bijection per k
    lines, n, zi = [], 0, 0
    for _ in range(3):                                               # min_freq 3: every word 3 times
        words = list(range(n_words)); rng.shuffle(words)
        for i in range(0, n_words, 100): lines.append(words[i:i + 100]); n += len(lines[-1]) + 1
    while n < n_tokens:
        w, line = rng.randrange(n_words), []
        for _ in range(rng.randint(50, 150)):
            line.append(w)
            nxt = (w * P + rng.randrange(4) * Q) % n_words if rng.random() < 0.6 else zipf[zi % n_tokens]
            zi += 1
            w = nxt if nxt != w else (w + 1) % n_words                   # no immediate repeats (fastai would write xxwrep)
        lines.append(line); n += len(line) + 1
    rng.shuffle(lines)
    names = word_names(n_words)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('\n'.join(' '.join(names[w] for w in l) for l in lines) + '\n')

def word_names(n: int) -> list[str]:
    "`n` words 'w0', 'w1', ... skipping those with a character 3 times in a row (fastai's tokenizer would write xxrep)."
    names, i = [], 0
    while len(names) < n:
        s = f'w{i}'
        if not any(s[j] == s[j + 1] == s[j + 2] for j in range(len(s) - 2)): names.append(s)
        i += 1
    return names


# 2. fitlam's side, in its own process.
def fitlam_stream(corpus: Path, bs: int, bptt: int, n_needed: int, seed: int):
    "The peer's stream: xxbos + tokens per line, repeated to n_needed, cut in 2,000-token docs, shuffled, in bs rows."
    import torch
    from fitlam.core import BOS
    from fitlam.vocab import Vocab
    docs = [[BOS] + l.split() for l in corpus.read_text().splitlines() if l.strip()]
    vocab = Vocab.from_tokens(docs, max_vocab=60_000, min_freq=3)
    ids = torch.from_numpy(vocab.numericalize([t for d in docs for t in d])).long()
    if len(ids) < n_needed: ids = ids.repeat(-(-n_needed // len(ids)))
    chunks = list(torch.split(ids, 2000))
    order = torch.randperm(len(chunks), generator=torch.Generator().manual_seed(seed)).tolist()
    stream = torch.cat([chunks[i] for i in order])
    bl = (len(stream) - 1) // bs * bs // bs                          # fastai's LMDataLoader: batch length
    x = stream[:bs * bl].view(bs, bl); y = stream[1:bs * bl + 1].view(bs, bl)
    n_batches = bl // bptt + int(bl % bptt != 0)
    return vocab, [(x[:, i:i + bptt], y[:, i:i + bptt]) for i in range(0, bl, bptt)], n_batches


def sched_cos(start, end, pos): return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2

def one_cycle(pos: float, lr: float, div=25., div_final=1e5, pct_start=0.25, moms=(0.8, 0.7, 0.8)):
    "fastai's fit_one_cycle: (lr, mom) at training position `pos` in [0, 1)."
    if pos < pct_start: p = pos / pct_start; return sched_cos(lr / div, lr, p), sched_cos(moms[0], moms[1], p)
    p = (pos - pct_start) / (1 - pct_start); return sched_cos(lr, lr / div_final, p), sched_cos(moms[1], moms[2], p)


def matmul_gflops(threads: int, n: int = 2048, reps: int = 7) -> float:
    "Median fp32 GFLOP/s of an n x n @ n x n matmul."
    import torch
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2): a @ b
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); a @ b; ts.append(time.perf_counter() - t)
    return 2 * n ** 3 / statistics.median(ts) / 1e9


def lm_flops_per_token(emb: int, hid: int, layers: int, vocab: int) -> float:
    "Training FLOPs per token: LSTM gates (2 * 4h * (n_in + h) per layer) + decoder (2 * emb * vocab), fwd + bwd = 3 x fwd."
    sizes = [emb] + [hid] * (layers - 1) + [emb]
    fwd = sum(2 * 4 * sizes[l + 1] * (sizes[l] + sizes[l + 1]) for l in range(layers)) + 2 * emb * vocab
    return 3 * fwd


def fitlam_worker(a):
    t_start = time.perf_counter()
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(a.threads)
    from fitlam.core import set_seed
    from fitlam.models.awdlstm import AWDLSTMConfig, get_language_model, lm_cross_entropy
    loss_func = lm_cross_entropy if a.loss == 'lean' else lambda pred, yb: F.cross_entropy(pred.reshape(-1, pred.shape[-1]), yb.reshape(-1))
    gflops = matmul_gflops(a.threads)
    set_seed(a.seed)
    n_needed = (a.batches + a.warmup) * a.bs * a.bptt + a.bs * (a.bptt + 2) + 1
    vocab, batches, n_total = fitlam_stream(Path(a.corpus), a.bs, a.bptt, n_needed, a.seed)
    model = get_language_model(len(vocab), AWDLSTMConfig(emb_sz=a.emb, n_hid=a.hid, n_layers=a.layers), drop_mult=a.drop_mult)
    decay = [p for n, p in model.named_parameters() if not n.endswith('bias')]
    no_decay = [p for n, p in model.named_parameters() if n.endswith('bias')]
    opt = torch.optim.AdamW([{'params': decay}, {'params': no_decay, 'weight_decay': 0.}], lr=a.lr, betas=(0.8, 0.99),
                            eps=1e-5, weight_decay=0.01, fused=True)
    model.train(); model.reset()
    n_run = a.warmup + a.batches
    stamps, btimes, losses = [], [], []
    t_setup = time.perf_counter() - t_start
    for i, (xb, yb) in enumerate(batches[:n_run]):
        t0 = time.perf_counter()
        lr, mom = one_cycle(i / n_total, a.lr)
        for g in opt.param_groups: g['lr'], g['betas'] = lr, (mom, 0.99)
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=a.bf16):
            pred = model(xb)
        loss = loss_func(pred.float(), yb)
        raw, dropped = model.last_rnn_outputs
        reg = 2. * dropped.float().pow(2).mean() + 1. * (raw[:, 1:] - raw[:, :-1]).float().pow(2).mean()
        (loss + reg).backward()
        opt.step(); opt.zero_grad(set_to_none=True)
        now = time.perf_counter()
        stamps.append(now); btimes.append(now - t0); losses.append(loss.item())
    bt = btimes[a.warmup:]
    wall = stamps[-1] - stamps[a.warmup - 1] if a.warmup else stamps[-1] - (stamps[0] - btimes[0])
    return dict(side='fitlam', loss_func=a.loss, torch=torch.__version__, threads=torch.get_num_threads(), emb=a.emb, hid=a.hid, layers=a.layers,
                bs=a.bs, bptt=a.bptt, vocab=len(vocab), params=sum(p.numel() for p in model.parameters()),
                tokens=sum(len(b[0].reshape(-1)) for b in batches), n_batches_total=n_total, bf16=a.bf16,
                timed_batches=len(bt), tokens_per_s=round(len(bt) * a.bs * a.bptt / wall, 1),
                batch_s_median=round(statistics.median(bt), 4), batch_s_min=round(min(bt), 4), batch_s_max=round(max(bt), 4),
                tokens_per_s_from_median_batch=round(a.bs * a.bptt / statistics.median(bt), 1),
                losses=[round(l, 4) for l in losses], first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4),
                setup_s=round(t_setup, 2), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                matmul_gflops=round(gflops, 1))


# 3. The driver: alternate fresh fitlam and fastai processes.
def run(cmd: list[str], env_extra: dict | None, timeout: float) -> dict:
    env = {**os.environ, **(env_extra or {})}
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    if p.returncode != 0: raise RuntimeError(f'{cmd[:3]} failed ({p.returncode}):\n{p.stderr[-3000:]}')
    res = json.loads([l for l in p.stdout.splitlines() if l.startswith('{')][-1])
    res['process_s'] = round(time.perf_counter() - t, 1)
    return res


def side_cmd(a, side: str, emb: int, hid: int, layers: int, batches: int, warmup: int, bf16: bool = False) -> list[str]:
    common = ['--bs', str(a.bs), '--bptt', str(a.bptt), '--batches', str(batches), '--warmup', str(warmup), '--lr', str(a.lr),
              '--seed', str(a.seed), '--threads', str(a.threads), '--corpus', str(a.corpus_path),
              '--emb', str(emb), '--hid', str(hid), '--layers', str(layers), '--drop-mult', str(a.drop_mult)]
    if side == 'fastai': return [a.peer_python, str(PEER_SCRIPT)] + common
    return [sys.executable, __file__, '--worker', '--loss', a.loss] + common + (['--bf16'] if bf16 else [])


def summarize(rows: list[dict]) -> dict:
    med = lambda k: statistics.median(r[k] for r in rows)
    return dict(n=len(rows), tokens_per_s=med('tokens_per_s_from_median_batch'), wall_tokens_per_s=med('tokens_per_s'),
                batch_s=med('batch_s_median'), peak_rss_mb=max(r['peak_rss_mb'] for r in rows),
                first_loss=statistics.mean(r['first_loss'] for r in rows), last_loss=statistics.mean(r['last_loss'] for r in rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--configs', nargs='+', default=['400,1152,3', '200,512,2'], help='emb,hid,layers')
    ap.add_argument('--emb', type=int); ap.add_argument('--hid', type=int); ap.add_argument('--layers', type=int)
    ap.add_argument('--corpus', help=argparse.SUPPRESS)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--vocab', type=int, default=10_000)
    ap.add_argument('--batches', type=int, default=20, help='timed training batches per process')
    ap.add_argument('--warmup', type=int, default=3, help='untimed batches first')
    ap.add_argument('--rounds', type=int, default=2, help='fitlam/fastai process pairs per config (order alternates)')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--drop-mult', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--bf16', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--loss', choices=['lean', 'torch'], default='lean',
                    help="fitlam's loss: `lm_cross_entropy` (lean) or `F.cross_entropy` (torch)")
    ap.add_argument('--bf16-batches', type=int, default=1, help='timed bf16-autocast batches of fitlam on the smallest config (0: skip)')
    ap.add_argument('--malloc-tuned', action='store_true', help=f'also run both sides with {MALLOC_TUNED}')
    ap.add_argument('--peer-python', default='/tmp/fitlam-peer-venv/bin/python')
    ap.add_argument('--timeout', type=float, default=1800, help='seconds per process')
    ap.add_argument('--json', default=str(OUT/'lm_train.json'))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(fitlam_worker(a))); return

    if not Path(a.peer_python).exists(): sys.exit(f'{a.peer_python}: the peer virtualenv is missing (bash ../shared/peer/setup.sh)')
    n_needed = (a.batches + a.warmup) * a.bs * a.bptt + a.bs * (a.bptt + 2) + 1
    a.corpus_path = OUT/f'lm_corpus_v2_{a.vocab}_{n_needed}_{a.seed}.txt'
    if not a.corpus_path.exists(): write_corpus(a.corpus_path, a.vocab - 10, n_needed + a.bs * a.bptt, a.seed)
    started, load0 = datetime.now(timezone.utc), loadavg()
    results = {}
    envs = [('default', None)] + ([('malloc-tuned', MALLOC_TUNED)] if a.malloc_tuned else [])
    for cfg in a.configs:
        emb, hid, layers = map(int, cfg.split(','))
        for env_name, env in envs:
            rows = {'fitlam': [], 'fastai': []}
            for r in range(a.rounds):
                for side in (['fitlam', 'fastai'] if r % 2 == 0 else ['fastai', 'fitlam']):
                    res = run(side_cmd(a, side, emb, hid, layers, a.batches, a.warmup), env, a.timeout)
                    rows[side].append(res)
                    print(f'[{cfg} {env_name} round {r}] {side}: {res["tokens_per_s_from_median_batch"]} tok/s, '
                          f'median batch {res["batch_s_median"]} s, loss {res["first_loss"]} -> {res["last_loss"]}, '
                          f'peak RSS {res["peak_rss_mb"]} MB', file=sys.stderr, flush=True)
            results[f'{cfg} {env_name}'] = dict(emb=emb, hid=hid, layers=layers, env=env_name, rows=rows,
                                                fitlam=summarize(rows['fitlam']), fastai=summarize(rows['fastai']))
    if a.bf16_batches:
        emb, hid, layers = min((tuple(map(int, c.split(','))) for c in a.configs), key=lambda t: t[0] * t[1] * t[2])
        res = run(side_cmd(a, 'fitlam', emb, hid, layers, a.bf16_batches, 0, bf16=True), None, a.timeout)
        results['bf16'] = dict(emb=emb, hid=hid, layers=layers, row=res)
        print(f'[bf16 {emb},{hid},{layers}] {res["tokens_per_s_from_median_batch"]} tok/s', file=sys.stderr, flush=True)

    gf = statistics.median(r['matmul_gflops'] for v in results.values() if 'rows' in v for r in v['rows']['fitlam'])
    meta = dict(date=started.strftime('%Y-%m-%d %H:%M UTC'), python=platform.python_version(), cpus=os.cpu_count(),
                cpu=platform.processor() or platform.machine(), threads=a.threads, bs=a.bs, bptt=a.bptt, vocab=a.vocab,
                batches=a.batches, warmup=a.warmup, rounds=a.rounds, lr=a.lr, matmul_gflops=gf,
                loadavg_start=load0, loadavg_end=loadavg(), command='python ' + ' '.join(sys.argv))
    OUT.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(dict(meta=meta, results=results), indent=1))

    # 4. The markdown block for docs/benchmarks.md.
    print(f'\n`{meta["command"]}` ({meta["date"]}; {a.threads} threads; bs {a.bs}, bptt {a.bptt}, vocab {a.vocab}; '
          f'{a.rounds} process pair(s) per row, {a.batches} timed batches each after {a.warmup} warm-up; '
          f'fp32 matmul {gf:.0f} GFLOP/s (2048^3, same run); load average {load0[0]} -> {meta["loadavg_end"][0]})\n')
    print('| model (emb/hid/layers) | allocator | fastai tok/s | fitlam tok/s | speed-up | fitlam % of matmul peak | '
          'peak RSS fastai / fitlam | loss first -> last, fastai | fitlam |')
    print('|---|---|---|---|---|---|---|---|---|')
    for v in results.values():
        if 'rows' not in v: continue
        fa, fl = v['fastai'], v['fitlam']
        flops = lm_flops_per_token(v['emb'], v['hid'], v['layers'], a.vocab)
        print(f'| {v["emb"]}/{v["hid"]}/{v["layers"]} | {v["env"]} | {fa["tokens_per_s"]:,.0f} | {fl["tokens_per_s"]:,.0f} | '
              f'**{fl["tokens_per_s"] / fa["tokens_per_s"]:.2f}x** | {100 * fl["tokens_per_s"] * flops / 1e9 / gf:.0f}% '
              f'(fastai {100 * fa["tokens_per_s"] * flops / 1e9 / gf:.0f}%) | {fa["peak_rss_mb"]:,.0f} / {fl["peak_rss_mb"]:,.0f} MB | '
              f'{fa["first_loss"]:.3f} -> {fa["last_loss"]:.3f} | {fl["first_loss"]:.3f} -> {fl["last_loss"]:.3f} |')
    if 'bf16' in results:
        r = results['bf16']['row']
        print(f'\nfitlam under bf16 autocast, {r["emb"]}/{r["hid"]}/{r["layers"]}: {r["tokens_per_s_from_median_batch"]:,.1f} tok/s '
              f'({r["timed_batches"]} batch(es)); fp32 above.')


if __name__ == '__main__':
    main()
