#!/usr/bin/env python
"""Learner benchmark: fitlam vs fastai 2.8.12, in one run (alternating).

1. loop overhead: a small MLP on pre-batched tensors (128 batches of 32 per epoch, 8 validation batches),
   Adam, default callbacks, no progress bar: median seconds per training+validation epoch over --epochs,
   divided by the number of training batches; a bare PyTorch loop (same model, same batches) for reference.
2. optimizer step: Adam over the parameter shapes of a 400/1152/3 AWD-LSTM LM with a 10k vocab (24M
   parameters), gradients set, median time of one step: fitlam's `adam` (torch fused AdamW) vs fastai's `Adam`.

Usage: .venv/bin/python bench/learner.py [--peer-python /tmp/fitlam-peer-venv/bin/python]
(run alone: flock -x /tmp/fitlam-cpu.lock ...).
"""
import argparse, json, statistics, subprocess, sys, time

from _common import PEER_PYTHON

SHAPES = [(10000, 400), (4608, 400), (4608, 1152), (4608,), (4608,), (4608, 1152), (4608, 1152), (4608,), (4608,),
          (1600, 400), (1600, 1152), (1600,), (1600,), (10000,)]


def make_batches(torch, n, bs, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 16, generator=g)
    y = x @ torch.randn(16, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return [(x[i:i + bs], y[i:i + bs]) for i in range(0, n, bs)]


def make_model(torch, seed):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


class Loader:
    "Pre-batched tensors: isolates the learner loop from data loading."
    def __init__(self, batches): self.batches = batches
    def __len__(self): return len(self.batches)
    def __iter__(self): return iter(self.batches)


def worker(impl, epochs):
    import torch
    torch.set_num_threads(2)
    import torch.nn.functional as F
    train, valid = make_batches(torch, 4096, 32, 0), make_batches(torch, 256, 32, 1)
    model = make_model(torch, 0)
    epoch_times = []
    if impl == 'torch':
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            t = time.perf_counter()
            model.train()
            for xb, yb in train:
                loss = F.mse_loss(model(xb), yb); loss.backward(); opt.step(); opt.zero_grad()
            model.eval()
            with torch.no_grad():
                for xb, yb in valid: F.mse_loss(model(xb), yb).item()
            epoch_times.append(time.perf_counter() - t)
    elif impl == 'fitlam':
        from fitlam.callback import Callback
        from fitlam.learner import Learner; from fitlam.optimizer import adam
        class Data: train_dl, valid_dl = Loader(train), Loader(valid)
        class Timer(Callback):
            def before_epoch(self): self.t = time.perf_counter()
            def after_epoch(self): epoch_times.append(time.perf_counter() - self.t)
        learn = Learner(Data(), model, F.mse_loss, opt_func=adam, lr=1e-3, progress=False, cbs=Timer())
        learn.fit(epochs)
    elif impl == 'fastai':
        from fastai.basics import Learner, DataLoaders, Adam, Callback
        class Timer(Callback):
            def before_epoch(self): self.t = time.perf_counter()
            def after_epoch(self): epoch_times.append(time.perf_counter() - self.t)
        dls = DataLoaders(Loader(train), Loader(valid), device=torch.device('cpu'))
        learn = Learner(dls, model, loss_func=F.mse_loss, opt_func=Adam, lr=1e-3, cbs=Timer())
        with learn.no_logging(): learn.fit(epochs)     # fastai.basics adds no progress bar
    step = None
    if impl in ('fitlam', 'fastai'):
        ps = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
        for p in ps: p.grad = torch.randn_like(p)
        if impl == 'fitlam':
            from fitlam.optimizer import adam
            opt = adam([dict(params=ps, weight_decay=0.01)], lr=1e-3)
        else:
            from fastai.basics import Adam
            opt = Adam(ps, lr=1e-3, wd=0.01)
        times = []
        for i in range(13):
            t = time.perf_counter(); opt.step(); times.append(time.perf_counter() - t)
        step = statistics.median(times[3:])
    return dict(impl=impl, per_batch_ms=1000 * statistics.median(epoch_times[1:]) / len(train), opt_step_ms=step and 1000 * step)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--peer-python', default=PEER_PYTHON)
    ap.add_argument('--epochs', type=int, default=6)
    ap.add_argument('--rounds', type=int, default=2)
    ap.add_argument('--worker', default=None)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.epochs))); return
    results = {}
    for _ in range(args.rounds):        # alternate, so drifting machine load hits both alike
        for impl, py in [('torch', sys.executable), ('fitlam', sys.executable), ('fastai', args.peer_python)]:
            out = subprocess.run([py, __file__, '--worker', impl, '--epochs', str(args.epochs)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            results.setdefault(impl, []).append(r)
    med = {k: {m: statistics.median(r[m] for r in v) if v[0][m] is not None else None for m in ('per_batch_ms', 'opt_step_ms')} for k, v in results.items()}
    print(json.dumps(med, indent=1))
    f, p, t = med['fitlam'], med['fastai'], med['torch']
    print('| measure | bare torch | fitlam | fastai 2.8.12 | fastai / fitlam |')
    print('|---|---|---|---|---|')
    print(f"| MLP train+valid, ms per training batch | {t['per_batch_ms']:.3f} | {f['per_batch_ms']:.3f} | {p['per_batch_ms']:.3f} | {p['per_batch_ms'] / f['per_batch_ms']:.2f}x |")
    print(f"| Adam step, 24M params (AWD-LSTM 400/1152/3, 10k vocab), ms | | {f['opt_step_ms']:.1f} | {p['opt_step_ms']:.1f} | {p['opt_step_ms'] / f['opt_step_ms']:.2f}x |")


if __name__ == '__main__':
    main()
