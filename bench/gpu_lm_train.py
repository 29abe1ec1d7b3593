#!/usr/bin/env python
"""AWD-LSTM language-model training speed on a CUDA GPU: fitlam's learner vs a plain cuDNN `nn.LSTM` LM (and fastai).

For each model size (default emb 400 / hid 1152 / 3 layers, and 200 / 512 / 2), vocab ~10k, bs 64, bptt 70 (fixed,
no variable BPTT, so every side gets the same batch shapes), in fp32 and in bf16 autocast:

- fitlam: `language_model_learner(data, config, bf16=...)` on a `TextLMDataBunch` of a synthetic corpus (the
  generator of bench/lm_train.py: a word is followed by one of 4 words fixed by it 60% of the time, else a Zipf word),
  trained by `fit_one_cycle` (AR/TAR, weight drop and all dropouts on, fused AdamW, `lm_cross_entropy`, which on a
  GPU is `F.cross_entropy`);
- cudnn-ref: embedding -> one `nn.LSTM` (cuDNN, flattened weights) per layer -> tied decoder, `F.cross_entropy`, fused
  AdamW; no dropout, weight drop or AR/TAR: the speed an LM of these sizes can reach on this GPU with stock PyTorch;
- fitlam-qrnn, fitlam-qrnn-eqp (`--qrnn`): the same learner with MultiFiT's QRNN encoder (`arch='qrnn'`, window 2
  in the first layer), of the same sizes, and with its hidden size raised until it has the AWD-LSTM's weight count
  (bench/qrnn_speed.py's `equal_params_hid`): on a GPU the LSTM runs on cuDNN, the QRNN's scan on plain PyTorch ops;
- fitlam-lean-ce (`--ablate-loss`): the same learner with the CPU's lean loss forced, `lm_cross_entropy(block=64)`
  (many small kernels per batch);
- fastai (optional, `--fastai-path DIR` holding fastai 2.8 and fastcore 2; put before fitlam's own packages):
  `language_model_learner(dls, AWD_LSTM, config, pretrained=False)` over `LMDataLoader`s of the same token ids,
  `to_bf16()` for bf16; run in a subprocess (fastai needs fastcore 2, fitlam fastcore 1).

Two speeds per row: `synced` = bs*bptt / median batch time, with `torch.cuda.synchronize()` before and after each batch
(forward + loss + backward + step, as the CPU benchmark times it); `pipelined` = tokens / wall time of the next
`--batches` batches with no synchronisation inside (data loading included, the CPU may run ahead of the GPU): what a
real fit gets. Peak GPU memory is `torch.cuda.max_memory_allocated()` over the fit.

    python bench/gpu_lm_train.py                                    # fitlam + cudnn-ref, both sizes, fp32 and bf16
    python bench/gpu_lm_train.py --fastai-path /tmp/site_fa         # with fastai
    python bench/gpu_lm_train.py --configs 200,512,2 --batches 20   # a quick look
    python bench/gpu_lm_train.py --qrnn --precisions fp32 bf16      # with MultiFiT's QRNN beside the AWD-LSTM
"""
from __future__ import annotations
import argparse, gc, json, os, platform, statistics, subprocess, sys, time
from datetime import datetime, timezone

from _common import OUT, ROOT, write_json
from lm_train import write_corpus          # bench/lm_train.py's corpus generator


class Timing:
    "Per-batch times with a sync before and after each of the first `warmup + batches` batches, then the wall time of `batches` more unsynced."
    def __init__(self, torch, warmup: int, batches: int):
        self.torch, self.warmup, self.batches = torch, warmup, batches
        self.i, self.synced, self.losses, self.tokens, self.t0, self.p0, self.pipelined = 0, [], [], [], None, None, None

    @property
    def n_synced(self): return self.warmup + self.batches

    def start(self):
        if self.i < self.n_synced: self.torch.cuda.synchronize(); self.t0 = time.perf_counter()
        elif self.i == self.n_synced: self.torch.cuda.synchronize(); self.p0 = time.perf_counter()

    def end(self, loss, n_tokens: int) -> bool:
        "Record the batch; True when done."
        if self.i < self.n_synced:
            self.torch.cuda.synchronize()
            self.synced.append(time.perf_counter() - self.t0)
            self.losses.append(float(loss)); self.tokens.append(n_tokens)
        self.i += 1
        if self.i == self.n_synced + self.batches:
            self.torch.cuda.synchronize()
            self.pipelined = time.perf_counter() - self.p0
            return True
        return False

    def result(self, bs_bptt: int) -> dict:
        bt = self.synced[self.warmup:]
        return dict(batch_s_median=round(statistics.median(bt), 5), batch_s_min=round(min(bt), 5), batch_s_max=round(max(bt), 5),
                    synced_tok_s=round(bs_bptt / statistics.median(bt), 1),
                    pipelined_tok_s=round(self.batches * bs_bptt / self.pipelined, 1) if self.pipelined else None,
                    first_loss=round(self.losses[0], 4), last_loss=round(self.losses[-1], 4), timed_batches=len(bt))


def build_data(a, n_needed: int):
    from fitlam.data import TextLMDataBunch
    corpus = OUT/f'gpu_lm_corpus_{a.vocab}_{n_needed}_{a.seed}.txt'
    if not corpus.exists(): write_corpus(corpus, a.vocab - 10, n_needed, a.seed)
    lines = [l for l in corpus.read_text().splitlines() if l.strip()]
    t = time.perf_counter()
    data = TextLMDataBunch.from_texts(lines, bs=a.bs, bptt=a.bptt, valid_pct=0.02, seed=a.seed, max_vocab=60_000, min_freq=3,
                                      progress=False, variable_bptt=False)
    print(f'data: {data} in {time.perf_counter() - t:.1f} s', file=sys.stderr, flush=True)
    return data


def lean_ce(pred, yb):
    "`lm_cross_entropy` forced onto its CPU path, 64 rows per block (the `--ablate-loss` row)."
    from fitlam.models.kernels import lm_cross_entropy
    return lm_cross_entropy(pred, yb, block=64)


def qrnn_config(emb, hid, layers, vocab: int, equal_params: bool):
    "MultiFiT's QRNN of the AWD-LSTM's sizes, or with the hidden size that gives it the AWD-LSTM's weight count."
    from fitlam.models.awdlstm import AWDLSTMConfig
    from fitlam.models.qrnn import QRNNConfig
    from qrnn_speed import equal_params_hid
    if equal_params: hid = equal_params_hid(AWDLSTMConfig(emb_sz=emb, n_hid=hid, n_layers=layers), vocab)
    return QRNNConfig(emb_sz=emb, n_hid=hid, n_layers=layers)


def run_fitlam(a, data, emb, hid, layers, bf16, loss_func=None, config=None, device='cuda') -> dict:
    "fitlam's learner for one fit, timed: an AWD-LSTM of the sizes, or `config` (a QRNN)."
    import torch
    from fitlam.callback import Callback, CancelFitException
    from fitlam.core import set_seed
    from fitlam.models.awdlstm import AWDLSTMConfig
    from fitlam.text_learner import language_model_learner
    timing = Timing(torch, a.warmup, a.batches)

    class Timer(Callback):
        order = 99
        def before_batch(self):
            if self.learn.training: timing.start()
        def after_batch(self):
            if self.learn.training and timing.end(self.learn.loss if timing.i < timing.n_synced else 0., self.learn.xb.numel()):
                raise CancelFitException()

    set_seed(a.seed)
    config = config or AWDLSTMConfig(emb_sz=emb, n_hid=hid, n_layers=layers)
    learn = language_model_learner(data, config=config, drop_mult=a.drop_mult, bf16=bf16, progress=False, device=device)
    if loss_func is not None: learn.loss_func = loss_func
    assert len(data.train_dl) >= timing.n_synced + a.batches, (len(data.train_dl), timing.n_synced + a.batches)
    torch.cuda.reset_peak_memory_stats()
    learn.fit_one_cycle(1, lr=a.lr, cbs=Timer())
    res = dict(timing.result(a.bs * a.bptt), peak_mem_mb=round(torch.cuda.max_memory_allocated() / 2**20),
               params=sum(p.numel() for p in learn.model.parameters()), model_hid=config.n_hid)
    del learn; gc.collect(); torch.cuda.empty_cache()
    return res


def run_cudnn_ref(a, data, emb, hid, layers, bf16) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.manual_seed(a.seed)
    V = len(data.vocab)

    class CudnnLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, emb)
            sizes = [emb] + [hid] * (layers - 1) + [emb]
            self.rnns = nn.ModuleList(nn.LSTM(sizes[l], sizes[l + 1], batch_first=True) for l in range(layers))
            self.dec = nn.Linear(emb, V)
            self.dec.weight = self.emb.weight
        def forward(self, x, hidden):
            x, new = self.emb(x), []
            for l, rnn in enumerate(self.rnns):
                x, hc = rnn(x, None if hidden is None else hidden[l])
                new.append(tuple(t.detach() for t in hc))
            return self.dec(x), new

    model = CudnnLM().cuda().train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01, fused=True)
    timing, hidden = Timing(torch, a.warmup, a.batches), None
    torch.cuda.reset_peak_memory_stats()
    for xb, yb in data.train_dl:
        xb, yb = xb.cuda(non_blocking=True), yb.cuda(non_blocking=True)
        timing.start()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=bf16):
            pred, hidden = model(xb, hidden)
        loss = F.cross_entropy(pred.float().view(-1, V), yb.reshape(-1))
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
        if timing.end(loss.detach() if timing.i < timing.n_synced else 0., xb.numel()): break
    res = dict(timing.result(a.bs * a.bptt), peak_mem_mb=round(torch.cuda.max_memory_allocated() / 2**20),
               params=sum(p.numel() for p in model.parameters()))
    del model, opt; gc.collect(); torch.cuda.empty_cache()
    return res


def fastai_worker(a):
    "Run in a subprocess with fastai on the path: train fastai's AWD-LSTM LM on the saved ids; print one JSON line."
    import torch
    from fastai.text.all import (AWD_LSTM, awd_lstm_lm_config, language_model_learner, LMDataLoader, DataLoaders, Callback,
                                 CancelFitException, set_seed)
    import fastai
    saved = torch.load(a.ids, weights_only=True)
    set_seed(a.seed)
    train_dl = LMDataLoader(list(torch.split(saved['train'], 2000)), bs=a.bs, seq_len=a.bptt, shuffle=True, drop_last=True)
    valid_dl = LMDataLoader([saved['valid']], bs=a.bs, seq_len=a.bptt)
    dls = DataLoaders(train_dl, valid_dl, device='cuda'); dls.vocab = saved['itos']
    cfg = dict(awd_lstm_lm_config, emb_sz=a.emb, n_hid=a.hid, n_layers=a.layers)
    learn = language_model_learner(dls, AWD_LSTM, config=cfg, pretrained=False, drop_mult=a.drop_mult)
    if a.bf16: learn = learn.to_bf16()
    timing = Timing(torch, a.warmup, a.batches)

    class Timer(Callback):
        order = 99
        def before_batch(self):
            if self.training: timing.start()
        def after_batch(self):
            if self.training and timing.end(self.learn.loss if timing.i < timing.n_synced else 0., self.learn.xb[0].numel()):
                raise CancelFitException()

    assert len(train_dl) >= timing.n_synced + a.batches, (len(train_dl), timing.n_synced + a.batches)
    torch.cuda.reset_peak_memory_stats()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, a.lr, cbs=Timer())
    print(json.dumps(dict(timing.result(a.bs * a.bptt), peak_mem_mb=round(torch.cuda.max_memory_allocated() / 2**20),
                          params=sum(p.numel() for p in learn.model.parameters()), fastai=fastai.__version__)))


def run_fastai(a, ids_path, emb, hid, layers, bf16) -> dict:
    cmd = [sys.executable, __file__, '--fastai-worker', '--ids', str(ids_path), '--emb', str(emb), '--hid', str(hid),
           '--layers', str(layers), '--bs', str(a.bs), '--bptt', str(a.bptt), '--warmup', str(a.warmup), '--batches', str(a.batches),
           '--lr', str(a.lr), '--seed', str(a.seed), '--drop-mult', str(a.drop_mult)] + ['--bf16'] * bf16
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join([a.fastai_path] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.timeout)
    if p.returncode != 0: raise RuntimeError(f'fastai worker failed ({p.returncode}):\n{p.stderr[-3000:]}')
    return json.loads([l for l in p.stdout.splitlines() if l.startswith('{')][-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--configs', nargs='+', default=['400,1152,3', '200,512,2'], help='emb,hid,layers')
    ap.add_argument('--precisions', nargs='+', default=['fp32', 'bf16'], choices=['fp32', 'bf16'])
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--vocab', type=int, default=10_000)
    ap.add_argument('--batches', type=int, default=50, help='timed batches, synced; as many again pipelined')
    ap.add_argument('--warmup', type=int, default=5)
    ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--drop-mult', type=float, default=1.0)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--ablate-loss', action='store_true', help="also fitlam with lm_cross_entropy(block=64), the CPU's lean loss")
    ap.add_argument('--no-ref', action='store_true', help='skip the cudnn-ref rows')
    ap.add_argument('--qrnn', action='store_true', help="also fitlam's QRNN LM: same sizes, and equal parameters")
    ap.add_argument('--fastai-path', default=None, help='a folder holding fastai 2.8 + fastcore 2 (pip install --target)')
    ap.add_argument('--timeout', type=float, default=600, help='seconds per fastai process')
    ap.add_argument('--json', default=str(OUT/'gpu_lm_train.json'))
    ap.add_argument('--fastai-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--ids', help=argparse.SUPPRESS)
    ap.add_argument('--emb', type=int); ap.add_argument('--hid', type=int); ap.add_argument('--layers', type=int)
    ap.add_argument('--bf16', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fastai_worker: fastai_worker(a); return

    try: import fitlam  # noqa: F401
    except ImportError: sys.path.insert(0, str(ROOT))
    import torch
    if not torch.cuda.is_available(): sys.exit('no CUDA device: this benchmark needs a GPU')
    started = datetime.now(timezone.utc)
    n_batches = a.warmup + 2 * a.batches + 2
    data = build_data(a, int(n_batches * a.bs * a.bptt * 1.08))
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    ids_path = None
    if a.fastai_path:
        import numpy as np
        def stream(dl): return torch.from_numpy(np.concatenate([dl.docs[i] for i in range(len(dl.docs))]).astype(np.int64))
        ids_path = OUT/'gpu_lm_ids.pt'
        torch.save(dict(train=stream(data.train_dl), valid=stream(data.valid_dl), itos=list(data.vocab.itos)), ids_path)
    sides = [('fitlam', run_fitlam)]
    if a.qrnn:
        for side, eqp in (('fitlam-qrnn', False), ('fitlam-qrnn-eqp', True)):
            sides.append((side, lambda a, d, emb, hid, layers, bf16, eqp=eqp:
                          run_fitlam(a, d, emb, hid, layers, bf16, config=qrnn_config(emb, hid, layers, len(d.vocab), eqp))))
    if a.ablate_loss: sides.append(('fitlam-lean-ce', lambda *args: run_fitlam(*args, loss_func=lean_ce)))
    if not a.no_ref: sides.append(('cudnn-ref', run_cudnn_ref))
    if a.fastai_path: sides.append(('fastai', lambda a, d, *cfg: run_fastai(a, ids_path, *cfg)))
    rows = []
    for cfg in a.configs:
        emb, hid, layers = map(int, cfg.split(','))
        for prec in a.precisions:
            for side, fn in sides:
                try: r = fn(a, data, emb, hid, layers, prec == 'bf16')
                except Exception as e:
                    r = dict(error=f'{type(e).__name__}: {str(e)[-600:]}')
                rows.append(dict(side=side, emb=emb, hid=hid, layers=layers, precision=prec, **r))
                log(f'[{cfg} {prec} {side}] ' + (r['error'] if 'error' in r else
                    f"{r['synced_tok_s']:,.0f} tok/s synced, {r['pipelined_tok_s']:,.0f} pipelined, {r['peak_mem_mb']} MiB, "
                    f"loss {r['first_loss']} -> {r['last_loss']}"))
    props = torch.cuda.get_device_properties(0)
    meta = dict(date=started.strftime('%Y-%m-%d %H:%M UTC'), device=torch.cuda.get_device_name(0), sm=f'{props.major}.{props.minor}',
                torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(), python=platform.python_version(),
                vocab=len(data.vocab), bs=a.bs, bptt=a.bptt, warmup=a.warmup, batches=a.batches, lr=a.lr,
                command='python ' + ' '.join([os.path.relpath(__file__, ROOT)] + sys.argv[1:]))
    write_json(a.json, dict(meta=meta, rows=rows))

    ref = {(r['emb'], r['hid'], r['layers'], r['precision']): r for r in rows if r['side'] == 'cudnn-ref' and 'error' not in r}
    print(f"\n`{meta['command']}` ({meta['date']}; {meta['device']}, torch {meta['torch']}, CUDA {meta['cuda']}, cuDNN {meta['cudnn']}; "
          f"vocab {meta['vocab']}, bs {a.bs}, bptt {a.bptt}; median of {a.batches} synced batches after {a.warmup} warm-up, "
          f"then {a.batches} pipelined)\n")
    print('| model (emb/hid/layers) | side | precision | tok/s, synced median batch | tok/s, pipelined | % of cudnn-ref (pipelined) | '
          'peak GPU MiB | loss first -> last |')
    print('|---|---|---|---|---|---|---|---|')
    for r in rows:
        m = f"{r['emb']}/{r.get('model_hid', r['hid'])}/{r['layers']}"
        if 'error' in r: print(f"| {m} | {r['side']} | {r['precision']} | error: {r['error'][:120]} | | | | |"); continue
        base = ref.get((r['emb'], r['hid'], r['layers'], r['precision']))
        pct = f"{100 * r['pipelined_tok_s'] / base['pipelined_tok_s']:.0f}%" if base else '-'
        print(f"| {m} | {r['side']} | {r['precision']} | {r['synced_tok_s']:,.0f} | {r['pipelined_tok_s']:,.0f} | {pct} | "
              f"{r['peak_mem_mb']:,} | {r['first_loss']:.3f} -> {r['last_loss']:.3f} |")


if __name__ == '__main__':
    main()
