#!/usr/bin/env python
"""AWD-LSTM language-model training speed: fitlam vs fastai 2.8.12, in one run.

For each model size (default: emb 400 / hid 1152 / 3 layers, and 200 / 512 / 2), vocab 10k, bs 64,
bptt 70, two sides train on the same token stream:

- fastai: `language_model_learner(dls, AWD_LSTM, config, pretrained=False).fit_one_cycle(1, lr)` over
  an `LMDataLoader`, as ../shared/peer/peer_lm_bench.py builds it (run with the peer's python);
- fitlam: as users run it, `language_model_learner(data, config).fit_one_cycle(1, lr, moms=(0.8, 0.7, 0.8))`
  over a `TextLMDataBunch` of the same stream (fixed bptt, like fastai's loader): its tied decoder on oneDNN
  fused with its lean `lm_cross_entropy` in training (the logits never written whole; `F.cross_entropy` on
  logits with `--loss torch`), AR/TAR (alpha 2, beta 1), fused AdamW
  (eps 1e-5, decoupled wd 0.01, none on biases) and the same one-cycle schedule as fastai's (lr from
  lr/25 to lr over 25% of the batches then down to lr/1e5, momentum 0.8 -> 0.7 -> 0.8). The fit runs
  in a thread that trains one batch per request, so both learners can take turns in one process.

The token stream is a synthetic corpus with something to learn (a word is followed by one of 4 words
fixed by it 60% of the time, else by a Zipf-distributed word), written to bench/out/, tokenized by
fastai's own tokenizer on its side, cut into 2,000-token documents and shuffled, so the loss curves
can be compared. Per batch we time forward + loss + backward + optimizer step (fastai's
`before_batch` -> `after_batch`) and quote the median; tokens/s = bs * bptt / median batch.

The machines are shared and noisy (other work, 2 threads on 2 cores), so the speed ratio comes from
**one process running both, batch by batch in turn** (the peer's python imports fitlam from this
checkout; same torch 2.13.0): fitlam's batch runs after fastai's on even batches and before it on odd
ones, so both see the same machine and neither always inherits the other's freed memory. Separate processes (the peer's own script, and fitlam alone) give the peak RSS of each side
and a standalone speed. The same run measures the machine's fp32 GFLOP/s, as the best of a 2048^3
`torch.matmul` (MKL) and one LSTM layer alone (oneDNN, which is ~1.8x faster than MKL on this AMD CPU),
and the fraction of it each side reaches (LSTM + decoder FLOPs, fwd + bwd = 3 x fwd). `--same-batches` feeds the interleaved
fitlam learners fastai's own batches (ids mapped by word), so the two loss curves compare step by step on the same data
(otherwise each side's loader cuts and shuffles the stream its own way). Options: `--ablate-loss` also
interleaves fitlam with `F.cross_entropy`; `--ablate-fuse` with logits and `lm_cross_entropy` instead of the fused decoder + loss; `--malloc-tuned` repeats the interleaved run with glibc
told to keep freed memory (no page faults on big buffers); `--bf16-batches` times fitlam under bf16
autocast.

    python bench/lm_train.py --rounds 2 --bf16-batches 3 --ablate-fuse --same-batches   # the documented run (~13 min)
    python bench/lm_train.py --configs 200,512,2 --batches 5 --bf16-batches 0   # a quick look
"""
from __future__ import annotations
import argparse, json, math, os, platform, random, resource, statistics, subprocess, sys, time
from datetime import datetime, timezone
from pathlib import Path

from _common import OUT, PEER_PYTHON, ROOT, SHARED, loadavg, write_json

PEER_SCRIPT = SHARED/'peer'/'peer_lm_bench.py'
MALLOC_TUNED = {'MALLOC_MMAP_MAX_': '0', 'MALLOC_TRIM_THRESHOLD_': str(1 << 40)}


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
def fitlam_stream(corpus: Path, n_needed: int, seed: int):
    "The peer's stream: xxbos + tokens per line, repeated to n_needed, cut in 2,000-token docs, shuffled; and a validation doc."
    import numpy as np
    from fitlam.core import BOS
    from fitlam.vocab import Vocab
    docs = [[BOS] + l.split() for l in corpus.read_text().splitlines() if l.strip()]
    vocab = Vocab.from_tokens(docs, max_vocab=60_000, min_freq=3)
    ids = np.asarray(vocab.numericalize([t for d in docs for t in d]), np.int64)
    if len(ids) < n_needed: ids = np.tile(ids, -(-n_needed // len(ids)))
    chunks = [ids[i:i + 2000] for i in range(0, len(ids), 2000)]
    order = np.random.default_rng(seed).permutation(len(chunks))
    return vocab, [chunks[i] for i in order], ids[:2000]


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


def lstm_gflops(threads: int, hid: int, bs: int, bptt: int, reps: int = 3) -> float:
    "Best fp32 GFLOP/s of torch's LSTM kernel (oneDNN) alone: one hid -> hid layer, forward + backward over (bs, bptt)."
    import torch
    torch.set_num_threads(threads)
    lstm, x = torch.nn.LSTM(hid, hid, batch_first=True), torch.randn(bs, bptt, hid, requires_grad=True)
    ts = []
    for i in range(reps + 1):
        t = time.perf_counter(); lstm(x)[0].sum().backward()
        if i: ts.append(time.perf_counter() - t)
    return 3 * 2 * 4 * hid * 2 * hid * bs * bptt / min(ts) / 1e9


def lm_flops_per_token(emb: int, hid: int, layers: int, vocab: int) -> float:
    "Training FLOPs per token: LSTM gates (2 * 4h * (n_in + h) per layer) + decoder (2 * emb * vocab), fwd + bwd = 3 x fwd."
    sizes = [emb] + [hid] * (layers - 1) + [emb]
    fwd = sum(2 * 4 * sizes[l + 1] * (sizes[l] + sizes[l + 1]) for l in range(layers)) + 2 * emb * vocab
    return 3 * fwd


class FitlamTrainer:
    """fitlam's side as users run it: `language_model_learner(data, config).fit_one_cycle(1, lr, moms=(0.8, 0.7, 0.8))`.

    The fit runs in a thread that trains exactly one batch per `step()` and then waits: the caller's thread and the fit
    never compute at the same time, so fitlam's batches can be interleaved with fastai's in one process (a coroutine
    made of two semaphores). A batch is timed from the first callback's `before_batch` to the last one's `after_batch`.
    """
    def __init__(self, a, import_root: bool = False, fed=None):
        "`fed`: a `queue.Queue` of (x, y) batches to train on instead of fitlam's own loader (`--same-batches`; None ends the fit)."
        if import_root: sys.path.insert(0, str(ROOT))            # when run by the peer's python (interleaved mode)
        import threading, types
        import torch
        import torch.nn.functional as F
        from fitlam.callback import Callback, CancelFitException
        from fitlam.core import set_seed
        from fitlam.data import TextLMDataBunch
        from fitlam.models.awdlstm import AWDLSTMConfig
        from fitlam.text_learner import language_model_learner
        from fitlam.corpus import DocIds; from fitlam.tokenizer import Tokenizer
        self.torch, self.a = torch, a
        set_seed(a.seed)
        n_needed = (a.batches + a.warmup) * a.bs * a.bptt + a.bs * (a.bptt + 2) + 1
        self.vocab, docs, valid = fitlam_stream(Path(a.corpus), n_needed, a.seed)
        data = TextLMDataBunch(DocIds.from_lists(docs), DocIds.from_lists([valid]), self.vocab, Tokenizer(), bs=a.bs, bptt=a.bptt,
                               seed=a.seed, variable_bptt=False)          # fixed bptt, as fastai's LMDataLoader: same batch shapes
        self.n_total = len(data.train_dl)
        self.learn = learn = language_model_learner(data, AWDLSTMConfig(emb_sz=a.emb, n_hid=a.hid, n_layers=a.layers), drop_mult=a.drop_mult,
                                                    device='cpu', bf16=a.bf16, progress=False, metrics=[], fuse_loss=not a.no_fuse)
        if a.loss == 'torch': learn.loss_func = lambda pred, yb: F.cross_entropy(pred.reshape(-1, pred.shape[-1]), yb.reshape(-1))
        self.fed = fed
        if fed is not None:                                       # fastai's batches, as the interleaving callback hands them over
            learn.data = types.SimpleNamespace(train_dl=FedLoader(fed, a.fed_batches), valid_dl=data.valid_dl, vocab=data.vocab,
                                               tokenizer=data.tokenizer, bs=a.bs)
            self.n_total = a.fed_batches
        self.go, self.done, self.stop, self.error = threading.Semaphore(0), threading.Semaphore(0), False, None
        self.dt, self.loss = None, None
        trainer = self

        class Start(Callback):
            order = -10_000
            def before_batch(self):
                if not self.learn.training: return
                trainer.go.acquire()                              # wait for the next step()
                if trainer.stop: raise CancelFitException()
                trainer.threads = torch.get_num_threads()         # the fit thread's intra-op threads (should be --threads)
                trainer.t0 = time.perf_counter()

        class Stop(Callback):
            order = 10_000
            def after_batch(self):
                if not self.learn.training: return
                trainer.dt, trainer.loss = time.perf_counter() - trainer.t0, float(self.learn.loss)
                trainer.done.release()

        def fit():
            try: learn.fit_one_cycle(1, a.lr, moms=(0.8, 0.7, 0.8), cbs=[Start(), Stop()])   # fastai's LM learner's moms
            except BaseException as e: self.error = e
            finally: self.done.release()                              # never leave step() waiting
        self.thread = threading.Thread(target=fit, daemon=True)
        self.thread.start()

    @property
    def model(self): return self.learn.model

    def step(self) -> tuple[float, float]:
        "Train on the next batch: (seconds from `before_batch` to `after_batch`, loss)."
        self.go.release(); self.done.acquire()
        if self.error is not None: raise RuntimeError('fitlam fit failed') from self.error
        if self.dt is None: raise RuntimeError('fitlam: the fit ended before the requested batches')
        dt, self.dt = self.dt, None
        return dt, self.loss

    def close(self):
        self.stop = True
        if self.fed is not None: self.fed.put(None)               # a fit waiting for its next batch ends
        self.go.release(); self.thread.join()


class FedLoader:
    "A training loader of `n` batches taken from a queue (None: no more)."
    def __init__(self, q, n: int): self.q, self.n = q, n
    def __len__(self): return self.n
    def __iter__(self):
        for _ in range(self.n):
            item = self.q.get()
            if item is None: return
            yield item


def fitlam_worker(a):
    t_start = time.perf_counter()
    import torch
    torch.set_num_threads(a.threads)
    gflops = matmul_gflops(a.threads)
    tr = FitlamTrainer(a)
    t_setup = time.perf_counter() - t_start
    stamps, btimes, losses = [], [], []
    for _ in range(a.warmup + a.batches):
        dt, loss = tr.step()
        stamps.append(time.perf_counter()); btimes.append(dt); losses.append(loss)
    tr.close()
    bt = btimes[a.warmup:]
    wall = stamps[-1] - stamps[a.warmup - 1] if a.warmup else stamps[-1] - (stamps[0] - btimes[0])
    return dict(side='fitlam', loss_func=a.loss, torch=torch.__version__, threads=torch.get_num_threads(), fit_thread_threads=tr.threads, emb=a.emb, hid=a.hid, layers=a.layers,
                bs=a.bs, bptt=a.bptt, vocab=len(tr.vocab), params=sum(p.numel() for p in tr.model.parameters()),
                n_batches_total=tr.n_total, bf16=a.bf16,
                timed_batches=len(bt), tokens_per_s=round(len(bt) * a.bs * a.bptt / wall, 1),
                batch_s_median=round(statistics.median(bt), 4), batch_s_min=round(min(bt), 4), batch_s_max=round(max(bt), 4),
                tokens_per_s_from_median_batch=round(a.bs * a.bptt / statistics.median(bt), 1),
                losses=[round(l, 4) for l in losses], first_loss=round(losses[0], 4), last_loss=round(losses[-1], 4),
                setup_s=round(t_setup, 2), peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                matmul_gflops=round(gflops, 1))


def interleaved_worker(a):
    "Run by the peer's python: fastai's `language_model_learner` (as peer_lm_bench.py builds it) and fitlam, batch by batch in turn."
    import torch
    torch.set_num_threads(a.threads)
    from collections import Counter
    from fastai.text.all import (AWD_LSTM, awd_lstm_lm_config, language_model_learner, LMDataLoader, DataLoaders, Callback,
                                 CancelFitException, set_seed, tokenize_texts, SpacyTokenizer, make_vocab)
    set_seed(a.seed)
    n_needed = (a.batches + a.warmup) * a.bs * a.bptt + a.bs * (a.bptt + 2) + 1
    with open(a.corpus, encoding='utf8') as fh: lines = [l.strip() for l in fh if l.strip()]
    toks = tokenize_texts(lines, tok=SpacyTokenizer('en'))
    cnt = Counter()
    for t in toks: cnt.update(t)
    vocab = make_vocab(cnt)
    o2i = {w: i for i, w in enumerate(vocab)}
    ids = torch.tensor([o2i.get(w, 0) for t in toks for w in t], dtype=torch.long)
    if len(ids) < n_needed: ids = ids.repeat(-(-n_needed // len(ids)))
    docs = list(torch.split(ids, 2000))
    train_dl = LMDataLoader(docs, bs=a.bs, seq_len=a.bptt, shuffle=True, drop_last=True)
    valid_dl = LMDataLoader([ids[:a.bs * (a.bptt + 2) + 1]], bs=a.bs, seq_len=a.bptt)
    dls = DataLoaders(train_dl, valid_dl, device='cpu'); dls.vocab = vocab
    cfg = dict(awd_lstm_lm_config, emb_sz=a.emb, n_hid=a.hid, n_layers=a.layers)
    learn = language_model_learner(dls, AWD_LSTM, config=cfg, pretrained=False, drop_mult=a.drop_mult)
    import queue
    a.fed_batches = len(train_dl)
    queues = []
    def trainer(b, **kw):
        q = queue.Queue() if a.same_batches else None
        if q is not None: queues.append(q)
        return FitlamTrainer(b, fed=q, **kw)
    tr = trainer(a, import_root=True)
    trainers = {'fitlam': tr}
    if a.ablate_loss: trainers['fitlam-torch-ce'] = trainer(argparse.Namespace(**{**vars(a), 'loss': 'torch'}))
    if a.ablate_fuse: trainers['fitlam-unfused'] = trainer(argparse.Namespace(**{**vars(a), 'no_fuse': True}))
    fa_itos = list(vocab)
    to_fitlam = torch.tensor([tr.vocab.stoi.get(w, 0) for w in fa_itos])   # fastai id -> fitlam id, by the word
    unmapped = sorted(w for w in fa_itos if w not in tr.vocab.stoi and not w.startswith('xxfake'))
    rec = {k: [] for side in ['fastai', *trainers] for k in (side, f'{side}_loss')}

    def fitlam_steps():
        for side, t in trainers.items():
            dt, loss = t.step()
            rec[side].append(dt); rec[f'{side}_loss'].append(loss)

    class Interleave(Callback):
        "Time each fastai batch; run fitlam's batch after it on even batches, before it on odd ones (no side always follows the other)."
        order = 99                     # last, like the peer script's timer
        def before_batch(self):
            if self.training and a.same_batches:                  # fitlam trains on this very batch, its ids mapped by word
                x, y = (to_fitlam[t.as_subclass(torch.Tensor)] for t in (self.xb[0], self.yb[0]))
                for q in queues: q.put((x, y))
            if self.training and self.iter % 2 == 1: fitlam_steps()
            self.t0 = time.perf_counter()
        def after_batch(self):
            if not self.training: return
            rec['fastai'].append(time.perf_counter() - self.t0); rec['fastai_loss'].append(float(self.learn.loss))
            if self.iter % 2 == 0: fitlam_steps()
            if min(len(rec['fastai']), len(rec['fitlam'])) >= a.warmup + a.batches: raise CancelFitException()

    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, a.lr, cbs=Interleave())
    for t in trainers.values(): t.close()
    out = dict(emb=a.emb, hid=a.hid, layers=a.layers, vocab_fastai=len(vocab), vocab_fitlam=len(tr.vocab), same_batches=a.same_batches,
               unmapped_fastai_words=unmapped[:20])
    for side in ('fastai', *trainers):
        bt = rec[side][a.warmup:]
        out[side] = dict(batch_s_median=round(statistics.median(bt), 4), tokens_per_s_from_median_batch=round(a.bs * a.bptt / statistics.median(bt), 1),
                         batch_s=[round(t, 3) for t in rec[side]], losses=[round(l, 4) for l in rec[f'{side}_loss']])
    out['peak_rss_mb_both'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


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
    if side == 'interleaved': return [a.peer_python, __file__, '--interleaved-worker', '--loss', a.loss] + common + ['--ablate-loss'] * a.ablate_loss + ['--ablate-fuse'] * a.ablate_fuse + ['--same-batches'] * a.same_batches
    loss = 'torch' if side == 'fitlam-torch-ce' else a.loss
    return [sys.executable, __file__, '--worker', '--loss', loss] + common + (['--bf16'] if bf16 else [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--interleaved-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--configs', nargs='+', default=['400,1152,3', '200,512,2'], help='emb,hid,layers')
    ap.add_argument('--emb', type=int); ap.add_argument('--hid', type=int); ap.add_argument('--layers', type=int)
    ap.add_argument('--corpus', help=argparse.SUPPRESS)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--vocab', type=int, default=10_000)
    ap.add_argument('--batches', type=int, default=20, help='timed training batches per process')
    ap.add_argument('--warmup', type=int, default=3, help='untimed batches first')
    ap.add_argument('--rounds', type=int, default=1, help='interleaved runs per config')
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--drop-mult', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--bf16', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--loss', choices=['lean', 'torch'], default='lean',
                    help="fitlam's loss: `lm_cross_entropy` (lean) or `F.cross_entropy` (torch)")
    ap.add_argument('--bf16-batches', type=int, default=1, help='timed bf16-autocast batches of fitlam on the smallest config (0: skip)')
    ap.add_argument('--ablate-loss', action='store_true', help='also interleave fitlam with F.cross_entropy (fitlam-torch-ce)')
    ap.add_argument('--ablate-fuse', action='store_true', help='also interleave fitlam with logits and lm_cross_entropy, not the fused decoder + loss (fitlam-unfused)')
    ap.add_argument('--no-fuse', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--same-batches', action='store_true',
                    help="interleaved runs: fitlam trains on fastai's batches (ids mapped by word), so the losses compare step by step")
    ap.add_argument('--malloc-tuned', action='store_true', help=f'also run both sides with {MALLOC_TUNED}')
    ap.add_argument('--malloc-rounds', type=int, default=1, help='interleaved runs per config with --malloc-tuned')
    ap.add_argument('--peer-python', default=PEER_PYTHON)
    ap.add_argument('--timeout', type=float, default=1800, help='seconds per process')
    ap.add_argument('--json', default=str(OUT/'lm_train.json'))
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(fitlam_worker(a))); return
    if a.interleaved_worker:
        print(json.dumps(interleaved_worker(a))); return

    if not Path(a.peer_python).exists(): sys.exit(f'{a.peer_python}: the peer virtualenv is missing (bash ../shared/peer/setup.sh)')
    n_needed = (a.batches + a.warmup) * a.bs * a.bptt + a.bs * (a.bptt + 2) + 1
    a.corpus_path = OUT/f'lm_corpus_v2_{a.vocab}_{n_needed}_{a.seed}.txt'
    if not a.corpus_path.exists(): write_corpus(a.corpus_path, a.vocab - 10, n_needed + a.bs * a.bptt, a.seed)
    started, load0 = datetime.now(timezone.utc), loadavg()
    results, gflops, lstm_gf = {}, [], {}
    envs = [('default', None)] + ([('malloc-tuned', MALLOC_TUNED)] if a.malloc_tuned else [])
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    for cfg in a.configs:
        emb, hid, layers = map(int, cfg.split(','))
        lstm_gf[cfg] = lstm_gflops(a.threads, hid, a.bs, a.bptt)
        for env_name, env in envs:
            inter = []
            for r in range(a.rounds if env is None else a.malloc_rounds):       # 1. both in one process, batch by batch in turn
                gflops.append(matmul_gflops(a.threads))
                res = run(side_cmd(a, 'interleaved', emb, hid, layers, a.batches, a.warmup), env, a.timeout)
                inter.append(res)
                log(f'[{cfg} {env_name} interleaved {r}] ' + ', '.join(f'{k} {res[k]["tokens_per_s_from_median_batch"]} tok/s, loss '
                    f'{res[k]["losses"][0]} -> {res[k]["losses"][-1]}' for k in res if isinstance(res[k], dict)) + f'; matmul {gflops[-1]:.0f} GFLOP/s')
            sep = {}
            if env is None:
                for side in ('fitlam', 'fastai'):                              # 2. separate processes: peak RSS, standalone speed
                    sep[side] = run(side_cmd(a, side, emb, hid, layers, a.batches, a.warmup), env, a.timeout)
                    log(f'[{cfg} separate] {side}: {sep[side]["tokens_per_s_from_median_batch"]} tok/s, peak RSS {sep[side]["peak_rss_mb"]} MB')
            sides = [k for k in inter[0] if isinstance(inter[0][k], dict)]
            summary = {k: dict(tokens_per_s=statistics.median(x[k]['tokens_per_s_from_median_batch'] for x in inter),
                               first_loss=statistics.mean(x[k]['losses'][0] for x in inter),
                               last_loss=statistics.mean(x[k]['losses'][-1] for x in inter)) for k in sides}
            results[f'{cfg} {env_name}'] = dict(emb=emb, hid=hid, layers=layers, env=env_name, interleaved=inter, separate=sep, summary=summary)
    if a.bf16_batches:
        emb, hid, layers = min((tuple(map(int, c.split(','))) for c in a.configs), key=lambda t: t[0] * t[1] * t[2])
        res = run(side_cmd(a, 'fitlam', emb, hid, layers, a.bf16_batches, 0, bf16=True), None, a.timeout)
        results['bf16'] = dict(emb=emb, hid=hid, layers=layers, row=res)
        log(f'[bf16 {emb},{hid},{layers}] {res["tokens_per_s_from_median_batch"]} tok/s')

    gf = max(gflops)                      # the machine's fp32 matmul speed when nothing else runs: the best of this run's measurements
    peak = max(gf, *lstm_gf.values())     # torch.matmul (MKL) is slower than oneDNN's LSTM kernels on this AMD CPU: the best of both
    meta = dict(date=started.strftime('%Y-%m-%d %H:%M UTC'), python=platform.python_version(), cpus=os.cpu_count(),
                cpu=platform.processor() or platform.machine(), threads=a.threads, bs=a.bs, bptt=a.bptt, vocab=a.vocab,
                batches=a.batches, warmup=a.warmup, rounds=a.rounds, lr=a.lr, matmul_gflops=gf, matmul_gflops_all=gflops, lstm_gflops=lstm_gf, peak_gflops=peak,
                loadavg_start=load0, loadavg_end=loadavg(), command='python ' + ' '.join(sys.argv))
    write_json(a.json, dict(meta=meta, results=results))

    # 3. The markdown block for docs/benchmarks.md.
    print(f'\n`{meta["command"]}` ({meta["date"]}; {a.threads} threads; bs {a.bs}, bptt {a.bptt}, vocab {a.vocab}; '
          f'{a.batches} timed batches after {a.warmup} warm-up, {a.rounds} run(s) per row; '
          f'fp32 matmul {gf:.0f} GFLOP/s (2048^3, best of {len(gflops)} in this run, median {statistics.median(gflops):.0f}); '
          f'one LSTM layer alone, fwd + bwd: ' + ', '.join(f'hid {c.split(",")[1]}: {g:.0f}' for c, g in lstm_gf.items()) + ' GFLOP/s; '
          f'best fp32 kernel {peak:.0f} GFLOP/s; load average {load0[0]} -> {meta["loadavg_end"][0]}'
          + ("; interleaved fitlam trains on fastai's batches (--same-batches)" if a.same_batches else '') + ')\n')
    print('| model (emb/hid/layers) | allocator | fastai tok/s | fitlam tok/s | speed-up | % of the best fp32 kernel, fitlam (fastai) | '
          'loss first -> last, fastai | fitlam | fitlam ablations, interleaved | separate processes: fastai / fitlam tok/s, peak RSS |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for v in results.values():
        if 'summary' not in v: continue
        fa, fl, sep = v['summary']['fastai'], v['summary']['fitlam'], v['separate']
        flops = lm_flops_per_token(v['emb'], v['hid'], v['layers'], a.vocab)
        pct = lambda t: 100 * t * flops / 1e9 / peak
        abl = {k: s for k, s in v['summary'].items() if k.startswith('fitlam-')}
        ab = '; '.join(f'{k[7:]}: {s["tokens_per_s"]:,.0f} tok/s ({s["tokens_per_s"] / fa["tokens_per_s"]:.2f}x)' for k, s in abl.items())
        print(f'| {v["emb"]}/{v["hid"]}/{v["layers"]} | {v["env"]} | {fa["tokens_per_s"]:,.0f} | {fl["tokens_per_s"]:,.0f} | '
              f'**{fl["tokens_per_s"] / fa["tokens_per_s"]:.2f}x** | {pct(fl["tokens_per_s"]):.0f}% ({pct(fa["tokens_per_s"]):.0f}%) | '
              f'{fa["first_loss"]:.3f} -> {fa["last_loss"]:.3f} | {fl["first_loss"]:.3f} -> {fl["last_loss"]:.3f} | '
              + f'{ab or "-"} | '
              + (f'{sep["fastai"]["tokens_per_s_from_median_batch"]:,.0f} / {sep["fitlam"]["tokens_per_s_from_median_batch"]:,.0f} tok/s, '
                 f'{sep["fastai"]["peak_rss_mb"]:,.0f} / {sep["fitlam"]["peak_rss_mb"]:,.0f} MB |' if sep else '- |'))
    if 'bf16' in results:
        r = results['bf16']['row']
        print(f'\nfitlam under bf16 autocast, {r["emb"]}/{r["hid"]}/{r["layers"]}: {r["tokens_per_s_from_median_batch"]:,.1f} tok/s '
              f'({r["timed_batches"]} batch(es)); fp32 above.')


if __name__ == '__main__':
    main()
