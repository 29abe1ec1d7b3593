"""The LM's decoder + loss alone, forward and backward: logits then `lm_cross_entropy` (unfused) against the fused
`decoder_cross_entropy` at several block sizes, for several vocab sizes. fitlam only (a diagnostic for the fused loss's block size).

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/diagnostics/lm_loss.py 10000,30000,60000

4,480 rows (bs 64 x bptt 70) of 400 features, the tied decoder (vocab x 400) with a bias, random ids; 2 threads; the best
of 3 timed calls after one untimed. Prints seconds per forward + backward; the row count without a label is the default block.
"""
import sys, time, torch
torch.set_num_threads(2)
from fitlam.models.kernels import DecoderInput, decoder_cross_entropy, decoder_linear, lm_cross_entropy

N, D = 4480, 400

def best_of(f, k: int = 3) -> float:
    f(); ts = []
    for _ in range(k):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return round(min(ts), 3)

for V in map(int, (sys.argv[1] if len(sys.argv) > 1 else '10000,30000,60000').split(',')):
    torch.manual_seed(0)
    h = (torch.randn(N, D) * 0.3).requires_grad_()
    W, b = (torch.randn(V, D) * 0.1).requires_grad_(), torch.zeros(V, requires_grad=True)
    y = torch.randint(0, V, (N,))
    res = {'unfused': best_of(lambda: lm_cross_entropy(decoder_linear(h, W, b), y).backward())}
    default = max(256, (1 << 22) // V)
    for rows in sorted({(1 << 22) // V, 128, 256, 512, 1024, default}):
        res[f'{rows} rows' + (' (default)' if rows == default else '')] = best_of(
            lambda: decoder_cross_entropy(DecoderInput(h, W, b), y, block=rows).backward())
    print(f'vocab {V:,}: ' + ', '.join(f'{k} {v} s' for k, v in res.items()), flush=True)
