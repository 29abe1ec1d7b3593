#!/usr/bin/env python
"""Language-model training speed: MultiFiT's QRNN against fitlam's AWD-LSTM, in one process, on this CPU.

Each pair is an AWD-LSTM LM and a QRNN LM of the same depth, either of the **same sizes** (emb / hid / layers: the
QRNN then has fewer weights, 3 gate matrices and no hidden-to-hidden one) or of **equal parameters** (the QRNN's
hidden size raised until its weight count matches the LSTM's, to within 1%). Both train the way a fitlam learner
does: the tied decoder fused with the loss (`defer_decoder` + `lm_cross_entropy`), AR/TAR on the last layer's
outputs, every dropout on, fitlam's Adam (`ulmfit_adam`), bs 64, bptt 70, the hidden state carried. The two models
take turns, `--batches` batches each per round, for `--rounds` rounds (after one warm-up batch each), so both see the
same machine; we quote the median batch and tokens/s = bs * bptt / median, and the ratio.

    .venv/bin/python bench/qrnn_speed.py                      # the documented run (~6 min on 2 cores)
    .venv/bin/python bench/qrnn_speed.py --pairs 200,512,2 --batches 2 --rounds 1   # a quick look
    .venv/bin/python bench/qrnn_speed.py --profile            # where each LM's batch goes (~2 min)

`--profile` times two batches of each model (after a warm-up one) under `torch.profiler` and splits them into
matrix products (the gates' projections, the decoder and their gradients: the same time per weight in either
architecture), oneDNN's fused LSTM layers and everything else: the bound on what fusing the QRNN's element-wise
passes could give.
"""
from __future__ import annotations
import argparse, math, platform, statistics, time
from datetime import datetime, timezone

import torch

from _common import OUT, command, loadavg, write_json
from fitlam.models.awdlstm import AWDLSTMConfig, LanguageModel
from fitlam.models.kernels import lm_cross_entropy
from fitlam.models.qrnn import QRNNConfig
from fitlam.optimizer import ulmfit_adam


def n_params(config, vocab: int) -> int: return sum(p.numel() for p in LanguageModel(vocab, config).parameters())

def equal_params_hid(awd: AWDLSTMConfig, vocab: int) -> int:
    "The QRNN hidden size whose LM has as many weights as `awd`'s (bisection on the count)."
    target, lo, hi = n_params(awd, vocab), 8, 8 * awd.n_hid
    while lo < hi:
        mid = (lo + hi) // 2
        if n_params(QRNNConfig(emb_sz=awd.emb_sz, n_hid=mid, n_layers=awd.n_layers), vocab) < target: lo = mid + 1
        else: hi = mid
    return lo

class Runner:
    "One LM training as a fitlam learner does it, a batch at a time."
    def __init__(self, config, vocab: int, bs: int, bptt: int, seed: int = 0):
        torch.manual_seed(seed)
        self.lm, self.vocab, self.bs, self.bptt = LanguageModel(vocab, config).train(), vocab, bs, bptt
        self.lm.defer_decoder = True
        self.opt = ulmfit_adam([{'params': list(self.lm.parameters())}], 1e-3)
        self.n = sum(p.numel() for p in self.lm.parameters())
        self.times: list[float] = []

    def batch(self, record: bool = True):
        x, y = torch.randint(2, self.vocab, (2, self.bs, self.bptt))
        t = time.perf_counter()
        loss = lm_cross_entropy(self.lm(x), y)
        raw, dropped = self.lm.last_rnn_outputs
        loss = loss + 2 * dropped.pow(2).mean() + (raw[:, 1:] - raw[:, :-1]).pow(2).mean()   # AR, TAR
        loss.backward()
        self.opt.step(); self.opt.zero_grad()
        if record: self.times.append(time.perf_counter() - t)

    @property
    def tokens_per_s(self) -> float: return self.bs * self.bptt / statistics.median(self.times)

MATMULS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::addmv', 'aten::mv', 'mkldnn::_linear_pointwise')
LSTM_OPS = ('aten::mkldnn_rnn_layer', 'aten::mkldnn_rnn_layer_backward')    # oneDNN's LSTM: its products and gates in one op

def profile(run: Runner, batches: int = 2) -> dict:
    "Profile `batches` training batches of `run`: ms per batch, the shares in matrix products and in oneDNN's fused LSTM layers, and the 5 costliest other ops."
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(batches): run.batch(record=False)
    ops = [(e.key, e.self_cpu_time_total / 1000 / batches) for e in prof.key_averages()]
    total = sum(ms for _, ms in ops)
    share = lambda names: round(sum(ms for k, ms in ops if k in names) / total, 3)
    others = sorted(((k, ms) for k, ms in ops if k not in MATMULS + LSTM_OPS), key=lambda o: -o[1])[:5]
    return dict(batch_ms=round(total), matmul_share=share(MATMULS), lstm_share=share(LSTM_OPS), top_other_ms={k: round(ms) for k, ms in others})

def race(awd: AWDLSTMConfig, qrnn: QRNNConfig, vocab: int, batches: int, rounds: int, bs: int, bptt: int) -> dict:
    a, q = Runner(awd, vocab, bs, bptt), Runner(qrnn, vocab, bs, bptt)
    a.batch(False); q.batch(False)
    for r in range(rounds):
        first, second = (a, q) if r % 2 == 0 else (q, a)       # alternate who goes first
        for _ in range(batches): first.batch()
        for _ in range(batches): second.batch()
    row = lambda c, run: dict(model=f'{c.emb_sz}/{c.n_hid}/{c.n_layers}', params_M=round(run.n / 1e6, 2),
                              median_ms=round(1000 * statistics.median(run.times)), tokens_per_s=round(run.tokens_per_s))
    return dict(awd_lstm=row(awd, a), qrnn=row(qrnn, q), speedup=round(q.tokens_per_s / a.tokens_per_s, 2))

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--pairs', nargs='+', default=['200,512,2', '400,1152,3'], help='AWD-LSTM sizes emb,hid,layers')
    p.add_argument('--vocab', type=int, default=15_000)
    p.add_argument('--batches', type=int, default=3); p.add_argument('--rounds', type=int, default=2)
    p.add_argument('--bs', type=int, default=64); p.add_argument('--bptt', type=int, default=70)
    p.add_argument('--profile', action='store_true', help='profile two batches of each model instead of racing them')
    args = p.parse_args()
    if args.profile: return main_profile(args)
    rows = []
    for pair in args.pairs:
        emb, hid, layers = map(int, pair.split(','))
        awd = AWDLSTMConfig(emb_sz=emb, n_hid=hid, n_layers=layers)
        for match, qhid in (('same sizes', hid), ('equal parameters', equal_params_hid(awd, args.vocab))):
            r = race(awd, QRNNConfig(emb_sz=emb, n_hid=qhid, n_layers=layers), args.vocab, args.batches, args.rounds, args.bs, args.bptt)
            rows.append(dict(match=match, **r)); print(rows[-1], flush=True)
    cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')), platform.processor())
    res = dict(command=command(), date=datetime.now(timezone.utc).isoformat(timespec='seconds'), cpu=cpu, threads=torch.get_num_threads(),
               torch=torch.__version__, loadavg=loadavg(), vocab=args.vocab, bs=args.bs, bptt=args.bptt, rows=rows)
    write_json(OUT/'qrnn_speed.json', res)
    print(f"\n{cpu}, {res['threads']} threads, vocab {args.vocab:,}, bs {args.bs}, bptt {args.bptt}\n")
    print('| match | AWD-LSTM | params | tokens/s | QRNN | params | tokens/s | QRNN / AWD-LSTM |\n|---|---|---|---|---|---|---|---|')
    for r in rows:
        a, q = r['awd_lstm'], r['qrnn']
        print(f"| {r['match']} | {a['model']} | {a['params_M']}M | {a['tokens_per_s']:,} | {q['model']} | {q['params_M']}M | {q['tokens_per_s']:,} | **{r['speedup']}x** |")

def main_profile(args):
    "Each pair's models, a warm-up batch then 2 profiled batches each: where the time goes."
    rows = []
    for pair in args.pairs:
        emb, hid, layers = map(int, pair.split(','))
        awd = AWDLSTMConfig(emb_sz=emb, n_hid=hid, n_layers=layers)
        qrnn = QRNNConfig(emb_sz=emb, n_hid=equal_params_hid(awd, args.vocab), n_layers=layers)
        for name, config in (('awd_lstm', awd), ('qrnn', qrnn)):
            run = Runner(config, args.vocab, args.bs, args.bptt)
            run.batch(False)
            rows.append(dict(arch=name, model=f'{config.emb_sz}/{config.n_hid}/{config.n_layers}', **profile(run))); print(rows[-1], flush=True)
    write_json(OUT/'qrnn_profile.json', dict(command=command(), date=datetime.now(timezone.utc).isoformat(timespec='seconds'),
                                             threads=torch.get_num_threads(), torch=torch.__version__, loadavg=loadavg(), rows=rows))
    print('\n| arch | model | batch ms (profiled) | matrix products | LSTM layers (oneDNN, fused) | everything else | costliest other ops (ms per batch) |'
          '\n|---|---|---|---|---|---|---|')
    for r in rows:
        rest = 1 - r['matmul_share'] - r['lstm_share']
        print(f"| {r['arch']} | {r['model']} | {r['batch_ms']:,} | {r['matmul_share']:.0%} | {r['lstm_share']:.0%} | {rest:.0%} | "
              + ', '.join(f'{k} {v}' for k, v in r['top_other_ms'].items()) + ' |')

if __name__ == '__main__': main()
