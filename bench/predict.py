#!/usr/bin/env python
"""Prediction speed: fitlam vs fastai 2.8.12, in one run. Raw text in, class probabilities out.

Both sides get the same classifier: an AWD-LSTM text classifier of the same size (--config; default `small` =
emb 400 / hid 1152 / 3 layers, fastai's `awd_lstm_clas_config`), BPT3C with the same bptt (72) and max_len (1440,
fastai's defaults), the same head (concat pooling, lin_ftrs [50]), the same vocab and the **same weights**:
- the vocab is built once by fitlam from imdb/train.csv (--vocab-docs reviews; min_freq 3, max_vocab 60k, the
  defaults of both libraries) and handed to fastai as `TextDataLoaders.from_df(..., text_vocab=itos)` (the two
  tokenizers give the same tokens, see bench/tokenize_speed.py, so the ids are the same);
- fastai builds `text_classifier_learner(dls, AWD_LSTM, config=..., pretrained=False)` (random weights: speed does
  not depend on them) and saves its state dict; fitlam loads it (encoder through `fastai_to_fitlam`, head by
  position). So the two sides' probabilities can be compared: `predict` of one text must agree to float noise.
  (In batches the libraries may differ more: on texts longer than max_len they keep different tokens for
  pooling, fitlam exactly the last max_len, fastai whole bptt chunks; and see the checks below.)

Measured on --n-docs reviews spread evenly over imdb/valid.csv (default: all 2,500), each side in its own fresh
process (torch 2 threads, no progress bars, after an untimed warm-up). On 2 CPU cores the 35M-parameter classifier
reads ~5 reviews/s on either side, so the whole split takes ~17 minutes; docs/benchmarks.md quotes 640 reviews.
- batch: fastai `learn.get_preds(dl=learn.dls.test_dl(texts, bs=bs))`; fitlam `learn.predict_proba(texts, bs=bs)`.
  One timed call each, tokenization included (that is what a user pays). fitlam's tokenization alone
  (`texts_to_loader`, what `predict_proba` calls first) is timed separately and its time subtracted for the
  "model only" figure; fastai's time is split into `test_dl` (it tokenizes every text once there, to sort by
  length) and `get_preds` (it tokenizes them again while batching).
- single text: `learn.predict(text)` on --n-single reviews spread over the set (median ms), and on the same
  reviews cut to their first 30 words (short inputs: overhead rather than LSTM time).
Checks: every row sums to 1, as many rows as texts, the batch rows of the single texts equal their `predict`
probabilities (so the batch comes back in input order), and fitlam's `predict` probabilities equal fastai's.

--int8 adds fitlam-int8 rows: the same fitlam learner after `learn.to_int8()` (what `load_learner(path, int8=True)`
does: the LSTMs run through torch's dynamic quantization), timed the same way in the same process after the float32
runs, with its agreement with float32 on the same reviews (max and mean |p_int8 - p_fp32|, same predicted class).
--bf16 adds the same rows for bf16 autocast (`Learner(bf16=True)`: oneDNN's bf16 LSTM where the CPU has it), run
before the int8 ones.
The weights are random (see above), so the probabilities are close to uniform and "same predicted class" is a
pessimistic figure: a trained classifier's margins are wider.
(fastai's own batch rows differ from its `predict` by ~1e-3: its batched BPT3C skips the tokens of some short
rows, see docs/benchmarks.md; so the batch-level fitlam/fastai difference is of that size too.)

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/predict.py --n-docs 640          # ~7 min on 2 cores (all: ~17)
    flock -s /tmp/fitlam-cpu.lock .venv/bin/python bench/predict.py --n-docs 64 --n-single 3 --config tiny --vocab-docs 500
    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/predict.py --n-docs 640 --int8 --bf16   # + int8 and bf16 rows (~3-4 min more)
"""
from __future__ import annotations
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

from _common import OUT, PEER_PYTHON, ROOT, command, data_dir, loadavg, print_block, require_peer_python, write_json

CONFIGS = dict(small=(400, 1152, 3), mid=(200, 512, 2), tiny=(64, 128, 2))    # as ../shared/peer/peer_lm_bench.py
HEAD_KEYS = {'1.layers.0.0.': 'head.0.', '1.layers.0.2.': 'head.2.', '1.layers.1.0.': 'head.4.', '1.layers.1.2.': 'head.6.'}


def read_texts(csv: str, n: int | None = None) -> list[str]:
    "The texts of `csv`, or `n` of them spread evenly over the file (every (len/n)-th: the same length mix as the whole)."
    import pandas as pd
    texts = pd.read_csv(csv)['text'].astype(str).tolist()
    if not n or n >= len(texts): return texts
    return [texts[i] for i in single_indices(len(texts), n)]


def single_indices(n_docs: int, n_single: int) -> list[int]:
    "`n_single` indices spread evenly over `range(n_docs)`."
    k = min(n_single, n_docs)
    return sorted({round(i * (n_docs - 1) / max(1, k - 1)) for i in range(k)})


def train_sample(spec: dict):
    "The (unused) training data both sides build their learner from: `dls_docs` train.csv rows, as many of each class, 20% valid."
    import numpy as np, pandas as pd
    df = pd.read_csv(spec['train_csv'])[['text', 'label']].astype(str)
    df = df.groupby('label').head(spec['dls_docs'] // df['label'].nunique()).reset_index(drop=True)
    df['is_valid'] = np.arange(len(df)) % 5 == 0
    return df


def short(text: str, n_words: int = 30) -> str: return ' '.join(text.split()[:n_words])


def timed(fn):
    t = time.perf_counter(); out = fn(); return out, time.perf_counter() - t


# 1. The two sides, each run as `python bench/predict.py --worker fastai|fitlam SPEC.json` (in its own virtualenv).
def worker_fastai(spec: dict) -> dict:
    import numpy as np, pandas as pd, torch
    torch.set_num_threads(spec['threads'])
    from fastai.text.all import AWD_LSTM, awd_lstm_clas_config, text_classifier_learner, TextDataLoaders
    import fastai
    itos = json.loads(Path(spec['itos']).read_text(encoding='utf-8'))
    df = train_sample(spec)
    dls = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', text_vocab=itos, bs=spec['bs'],
                                  seq_len=spec['bptt'], num_workers=0, device=torch.device('cpu'))
    assert list(dls.vocab[0]) == itos, 'fastai changed the vocab it was given'
    cfg = awd_lstm_clas_config.copy(); cfg.update(emb_sz=spec['emb'], n_hid=spec['hid'], n_layers=spec['layers'])
    learn = text_classifier_learner(dls, AWD_LSTM, config=cfg, pretrained=False, seq_len=spec['bptt'], max_len=spec['max_len'])
    learn.model.eval()
    torch.save(learn.model.state_dict(), spec['weights'])
    texts = read_texts(spec['valid_csv'], spec['n_docs'])
    singles = [texts[i] for i in spec['single_idx']]
    bs = spec['bs']
    with learn.no_bar(), learn.no_logging():
        learn.predict(singles[0]); learn.get_preds(dl=dls.test_dl([short(t) for t in texts[:bs]], bs=bs))   # warm-up, untimed
        t0 = time.perf_counter()
        dl = learn.dls.test_dl(texts, bs=bs)
        t1 = time.perf_counter()
        probs, _ = learn.get_preds(dl=dl)
        t2 = time.perf_counter()
        single, single_probs, short_t = [], [], []
        for t in singles:
            (_, _, p), dt = timed(lambda: learn.predict(t)); single.append(dt); single_probs.append(p.float().numpy())
        for t in singles:
            _, dt = timed(lambda: learn.predict(short(t))); short_t.append(dt)
    np.save(spec['probs'], probs.float().numpy()); np.save(spec['single_probs'], np.stack(single_probs))
    return dict(version=fastai.__version__, torch=torch.__version__, threads=torch.get_num_threads(), classes=list(dls.vocab[1]),
                vocab=len(itos), n_params=sum(p.numel() for p in learn.model.parameters()), batch_s=t2 - t0, test_dl_s=t1 - t0,
                get_preds_s=t2 - t1, single_s=single, short_s=short_t)


def worker_fitlam(spec: dict) -> dict:
    import numpy as np, pandas as pd, torch
    torch.set_num_threads(spec['threads'])
    import fitlam
    from fitlam.data import TextClasDataBunch
    from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_CLAS_CONFIG
    from fitlam.models.pretrained import fastai_to_fitlam
    from fitlam.text_learner import text_classifier_learner, texts_to_loader
    from fitlam.vocab import Vocab
    vocab = Vocab(json.loads(Path(spec['itos']).read_text(encoding='utf-8')))
    df = train_sample(spec)
    data = TextClasDataBunch.from_df(df, valid_col='is_valid', vocab=vocab, bs=spec['bs'], cache_dir=spec['cache_dir'], progress=False)
    config = AWDLSTMConfig(**{**FASTAI_CLAS_CONFIG.to_dict(), 'emb_sz': spec['emb'], 'n_hid': spec['hid'], 'n_layers': spec['layers']})
    learn = text_classifier_learner(data, config=config, bptt=spec['bptt'], max_len=spec['max_len'], progress=False, device='cpu')
    # fastai's weights: the encoder through fitlam's own converter, the head by position (BN, dropout, linear, ReLU, ...)
    sd = torch.load(spec['weights'], map_location='cpu', weights_only=True)
    state = fastai_to_fitlam(sd)
    for k, v in sd.items():
        for a, b in HEAD_KEYS.items():
            if k.startswith(a): state[b + k[len(a):]] = v
    learn.model.load_state_dict(state, strict=True)
    learn.model.eval()
    texts = read_texts(spec['valid_csv'], spec['n_docs'])
    singles = [texts[i] for i in spec['single_idx']]
    bs = spec['bs']

    def measure(probs_path: str, single_path: str) -> tuple[float, list, list]:
        "Warm up, then time the batch, each single review and each short text; save the probabilities."
        learn.predict(singles[0]); learn.predict_proba([short(t) for t in texts[:bs]], bs=bs)             # warm-up, untimed
        probs, batch_s = timed(lambda: learn.predict_proba(texts, bs=bs))
        single, single_probs, short_t = [], [], []
        for t in singles:
            pred, dt = timed(lambda: learn.predict(t)); single.append(dt); single_probs.append(pred.probs.float().numpy())
        for t in singles:
            _, dt = timed(lambda: learn.predict(short(t))); short_t.append(dt)
        np.save(probs_path, probs.float().numpy()); np.save(single_path, np.stack(single_probs))
        return batch_s, single, short_t

    batch_s, single, short_t = measure(spec['probs'], spec['single_probs'])
    # what predict_proba does first (ClassifierLearner._loader): tokenize, numericalize, sort into batches
    loader, tok_s = timed(lambda: texts_to_loader(texts, learn.tokenizer, learn.vocab, bs=bs, backwards=learn.backwards, n_workers=2))
    np.save(spec['lengths'], np.asarray(loader.lengths))
    res = dict(version=fitlam.__version__, torch=torch.__version__, threads=torch.get_num_threads(), classes=list(learn.classes),
               vocab=len(vocab), n_params=sum(p.numel() for p in learn.model.parameters()), batch_s=batch_s, tokenize_s=tok_s,
               single_s=single, short_s=short_t)
    # the same learner in lower precision, timed the same way: bf16 autocast (Learner(bf16=True)), then int8 LSTMs
    # (`to_int8`, what load_learner(path, int8=True) does)
    for v in spec.get('variants', []):
        _, res[f'{v}_convert_s'] = timed(lambda: setattr(learn, 'bf16', True) if v == 'bf16' else learn.to_fp32().to_int8())
        res[f'{v}_batch_s'], res[f'{v}_single_s'], res[f'{v}_short_s'] = measure(spec[f'{v}_probs'], spec[f'{v}_single_probs'])
    return res


def run_worker(python: str, impl: str, spec_path: Path) -> dict:
    out = subprocess.run([python, __file__, '--worker', impl, str(spec_path)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode: raise SystemExit(f'{impl} worker failed:\n{out.stderr[-4000:]}')
    return json.loads(out.stdout.strip().splitlines()[-1])


# 2. The checks.
def check(probs, n: int, name: str) -> dict:
    import numpy as np
    sums = probs.sum(1)
    return dict(rows=int(probs.shape[0]), rows_ok=probs.shape[0] == n, finite=bool(np.isfinite(probs).all()),
                max_sum_err=float(np.abs(sums - 1).max()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--n-docs', type=int, default=None, help='N reviews of imdb/valid.csv, spread evenly over it (default: all 2,500)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--config', default='small', choices=sorted(CONFIGS), help='small = 400/1152/3 (fastai default), mid = 200/512/2, tiny = 64/128/2')
    p.add_argument('--bptt', type=int, default=72, help="BPT3C chunk length (fastai's seq_len default)")
    p.add_argument('--max-len', type=int, default=72 * 20, help="tokens kept for pooling (fastai's default)")
    p.add_argument('--n-single', type=int, default=50, help='texts for the single-text latency')
    p.add_argument('--vocab-docs', type=int, default=None, help='build the vocab from N reviews of train.csv (default: all)')
    p.add_argument('--dls-docs', type=int, default=500, help='train.csv rows both sides build their (unused) training data from')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--int8', action='store_true', help='add fitlam-int8 rows: learn.to_int8() (= load_learner(path, int8=True)), and its agreement with float32')
    p.add_argument('--bf16', action='store_true', help='add fitlam-bf16 rows: bf16 autocast (Learner(bf16=True)), and its agreement with float32')
    p.add_argument('--peer-python', default=PEER_PYTHON)
    p.add_argument('--json', default=str(OUT/'predict.json'))
    p.add_argument('--worker', nargs=2, metavar=('IMPL', 'SPEC'), default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        impl, spec = args.worker[0], json.loads(Path(args.worker[1]).read_text())
        print(json.dumps((worker_fastai if impl == 'fastai' else worker_fitlam)(spec))); return

    data = data_dir()/'imdb'
    if not (data/'valid.csv').exists(): raise SystemExit(f'{data}/valid.csv: not found (set FITLAM_DATA); the benchmark needs the IMDb data')
    require_peer_python(args.peer_python)
    load0, started = loadavg(), datetime.now(timezone.utc)
    import numpy as np, pandas as pd
    n_docs = len(read_texts(str(data/'valid.csv'), args.n_docs))
    emb, hid, layers = CONFIGS[args.config]
    variants = [v for v in ('bf16', 'int8') if getattr(args, v)]
    work = Path(tempfile.mkdtemp(prefix='fitlam-predict-bench-'))
    try:
        # the shared vocab: fitlam's, from the training reviews (not timed)
        from fitlam.corpus import tokenize_corpus
        from fitlam.vocab import Vocab
        train = read_texts(str(data/'train.csv'), args.vocab_docs)   # all by default
        print(f'vocab from {len(train):,} training reviews ...', flush=True)
        corpus = tokenize_corpus(train, cache_dir=work/'tokens', progress=False)   # (cache_dir=False: TypeError in fitlam 0.1.0's _temp_cache)
        vocab = Vocab.from_counts(corpus.counter(), max_vocab=60_000, min_freq=3)
        del train, corpus
        (work/'itos.json').write_text(json.dumps(vocab.itos, ensure_ascii=False), encoding='utf-8')
        spec = dict(itos=str(work/'itos.json'), train_csv=str(data/'train.csv'), valid_csv=str(data/'valid.csv'), n_docs=n_docs,
                    dls_docs=args.dls_docs, bs=args.bs, bptt=args.bptt, max_len=args.max_len, emb=emb, hid=hid, layers=layers,
                    threads=args.threads, single_idx=single_indices(n_docs, args.n_single), weights=str(work/'fastai_clas.pth'),
                    cache_dir=str(work/'tokens'), variants=variants)
        res = {}
        for impl, py in [('fastai', args.peer_python), ('fitlam', sys.executable)]:     # fastai first: it writes the weights
            s = dict(spec, probs=str(work/f'{impl}_probs.npy'), single_probs=str(work/f'{impl}_single.npy'), lengths=str(work/'lengths.npy'),
                     **{f'{v}_{k}': str(work/f'{v}_{k}.npy') for v in variants for k in ('probs', 'single_probs')})
            (work/f'{impl}.json').write_text(json.dumps(s))
            print(f'{impl}: {n_docs:,} reviews, bs {args.bs}, {args.config} {emb}/{hid}/{layers}, vocab {len(vocab):,} ...', flush=True)
            res[impl] = run_worker(py, impl, work/f'{impl}.json')
            res[impl]['probs'] = np.load(s['probs']); res[impl]['single_probs'] = np.load(s['single_probs'])
            for v in variants if impl == 'fitlam' else []:
                res[f'fitlam_{v}'] = dict(probs=np.load(s[f'{v}_probs']), single_probs=np.load(s[f'{v}_single_probs']))
            print(json.dumps({k: v for k, v in res[impl].items() if 'probs' not in k}), flush=True)
        lengths = np.load(work/'lengths.npy')
    finally:
        shutil.rmtree(work, ignore_errors=True)

    fa, fl = res['fastai'], res['fitlam']
    idx = spec['single_idx']
    checks = {k: check(r['probs'], n_docs, k) for k, r in res.items()}
    for k, r in res.items():    # the batch comes back in input order: its rows of the single texts are their `predict` probabilities
        checks[k]['batch_vs_single_max_diff'] = float(np.abs(r['probs'][idx] - r['single_probs']).max())
    lowp = {}                   # bf16 / int8 vs float32: same learner, same reviews
    for v in variants:
        pv, dv = res[f'fitlam_{v}']['probs'], np.abs(res[f'fitlam_{v}']['probs'] - fl['probs']).max(1)
        lowp[v] = dict(max_diff=float(dv.max()), mean_diff=float(dv.mean()), same_argmax=float((pv.argmax(1) == fl['probs'].argmax(1)).mean()),
                       single_max_diff=float(np.abs(res[f'fitlam_{v}']['single_probs'] - fl['single_probs']).max()),
                       same_argmax_vs_fastai=float((pv.argmax(1) == fa['probs'].argmax(1)).mean()))
    within = lengths <= args.max_len
    diff = np.abs(fl['probs'] - fa['probs']).max(1)
    agree = dict(same_classes=fa['classes'] == fl['classes'], same_n_params=fa['n_params'] == fl['n_params'],
                 single_max_diff=float(np.abs(fl['single_probs'] - fa['single_probs']).max()),
                 max_diff_within_max_len=float(diff[within].max()) if within.any() else None, n_within_max_len=int(within.sum()),
                 max_diff_longer=float(diff[~within].max()) if (~within).any() else None,
                 same_argmax=float((fl['probs'].argmax(1) == fa['probs'].argmax(1)).mean()))
    med = lambda xs: 1000 * statistics.median(xs)
    summary = dict(fastai_docs_s=n_docs / fa['batch_s'], fitlam_docs_s=n_docs / fl['batch_s'],
                   fitlam_docs_s_no_tok=n_docs / (fl['batch_s'] - fl['tokenize_s']),
                   fastai_single_ms=med(fa['single_s']), fitlam_single_ms=med(fl['single_s']),
                   fastai_short_ms=med(fa['short_s']), fitlam_short_ms=med(fl['short_s']))
    summary.update(speedup=summary['fitlam_docs_s'] / summary['fastai_docs_s'],
                   latency_ratio=summary['fitlam_single_ms'] / summary['fastai_single_ms'],
                   short_latency_ratio=summary['fitlam_short_ms'] / summary['fastai_short_ms'])
    for v in variants:
        summary.update({f'fitlam_{v}_docs_s': n_docs / fl[f'{v}_batch_s'], f'fitlam_{v}_docs_s_no_tok': n_docs / (fl[f'{v}_batch_s'] - fl['tokenize_s']),
                        f'fitlam_{v}_single_ms': med(fl[f'{v}_single_s']), f'fitlam_{v}_short_ms': med(fl[f'{v}_short_s'])})
        summary.update({f'{v}_speedup': summary[f'fitlam_{v}_docs_s'] / summary['fastai_docs_s'],
                        f'{v}_latency_ratio': summary[f'fitlam_{v}_single_ms'] / summary['fastai_single_ms'],
                        f'{v}_short_latency_ratio': summary[f'fitlam_{v}_short_ms'] / summary['fastai_short_ms'],
                        f'{v}_vs_fp32_speedup': fl['batch_s'] / fl[f'{v}_batch_s'],
                        f'{v}_vs_fp32_latency': summary[f'fitlam_{v}_single_ms'] / summary['fitlam_single_ms']})
    import fitlam
    info = dict(started=started.isoformat(timespec='seconds'), machine=platform.node(), cpus=os.cpu_count(), python=platform.python_version(),
                fitlam=fitlam.__version__, fastai=fa['version'], torch=fl['torch'], torch_peer=fa['torch'], threads=fl['threads'],
                n_docs=n_docs, bs=args.bs, config=args.config, emb=emb, hid=hid, layers=layers, bptt=args.bptt, max_len=args.max_len,
                vocab=len(vocab), n_params=fl['n_params'], n_single=len(idx), tokens_mean=float(lengths.mean()),
                tokens_max=int(lengths.max()), loadavg_start=load0, loadavg_end=loadavg(),
                command=command())
    strip = lambda r: {k: v for k, v in r.items() if 'probs' not in k}
    result = dict(info=info, fastai=strip(fa), fitlam=strip(fl), checks=checks, agreement=agree, summary=summary, lower_precision=lowp)
    write_json(args.json, result)

    S = summary
    ok = lambda c: 'yes' if c['rows_ok'] and c['finite'] and c['max_sum_err'] < 1e-5 else 'NO'
    lines = [f"IMDb valid.csv, {n_docs:,} reviews{' spread evenly over its 2,500' if args.n_docs and n_docs < 2500 else ''} ({info['tokens_mean']:.0f} tokens on average, at most {info['tokens_max']:,}), "
             f"AWD-LSTM classifier {emb}/{hid}/{layers} ({info['n_params'] / 1e6:.1f}M parameters, vocab {len(vocab):,}), bs {args.bs}, "
             f"bptt {args.bptt}, max_len {args.max_len}, {info['threads']} threads (load average {' '.join(load0)} -> {' '.join(info['loadavg_end'])}):", '',
             '| | fastai 2.8.12 | fitlam | fitlam / fastai | goal |', '|---|---|---|---|---|',
             f"| batch, docs/s (tokenization included) | {S['fastai_docs_s']:.1f} | {S['fitlam_docs_s']:.1f} | **{S['speedup']:.2f}x** | >= 2x |",
             f"| batch, seconds | {fa['batch_s']:.1f} (test_dl {fa['test_dl_s']:.1f} + get_preds {fa['get_preds_s']:.1f}) | "
             f"{fl['batch_s']:.1f} (of which tokenization {fl['tokenize_s']:.1f}) | {fl['batch_s'] / fa['batch_s']:.2f} | |",
             f"| batch, docs/s, fitlam without tokenization | | {S['fitlam_docs_s_no_tok']:.1f} | | |",
             f"| single review, median ms ({len(idx)} reviews) | {S['fastai_single_ms']:.0f} | {S['fitlam_single_ms']:.0f} | **{S['latency_ratio']:.2f}** | <= 0.1 |",
             f"| single short text (first 30 words), median ms | {S['fastai_short_ms']:.1f} | {S['fitlam_short_ms']:.1f} | {S['short_latency_ratio']:.2f} | |",
             f"| batch: one row per text, each summing to 1 | {ok(checks['fastai'])} | {ok(checks['fitlam'])} | | |",
             f"| batch row vs `predict` of the same review, max abs diff | {checks['fastai']['batch_vs_single_max_diff']:.1g} | "
             f"{checks['fitlam']['batch_vs_single_max_diff']:.1g} | | |",
             '', f"Same weights on both sides: `predict` probabilities of the {len(idx)} single reviews, max |p_fitlam - p_fastai| = "
             f"{agree['single_max_diff']:.1g}. Batch: max |p_fitlam - p_fastai| = {agree['max_diff_within_max_len']:.2g} over the "
             f"{agree['n_within_max_len']:,} reviews of at most {args.max_len} tokens"
             + (f", {agree['max_diff_longer']:.2g} over the {n_docs - agree['n_within_max_len']} longer ones" if agree['max_diff_longer'] is not None else '')
             + f"; same predicted class for {100 * agree['same_argmax']:.1f}% of the reviews."]
    what = dict(int8='int8 LSTMs (`learn.to_int8()`, = `load_learner(path, int8=True)`)', bf16='bf16 autocast (`Learner(bf16=True)`)')
    for v in variants:
        L = lowp[v]
        lines += ['', f"fitlam {v}: {what[v]}, same process, after the float32 runs:", '',
                  f'| | fastai 2.8.12 | fitlam {v} | fitlam {v} / fastai | goal | fitlam {v} / fitlam fp32 |', '|---|---|---|---|---|---|',
                  f"| batch, docs/s (tokenization included) | {S['fastai_docs_s']:.1f} | {S[f'fitlam_{v}_docs_s']:.1f} | **{S[f'{v}_speedup']:.2f}x** | >= 2x | "
                  f"{S[f'{v}_vs_fp32_speedup']:.2f}x |",
                  f"| batch, docs/s, fitlam without tokenization | | {S[f'fitlam_{v}_docs_s_no_tok']:.1f} | | | "
                  f"{S[f'fitlam_{v}_docs_s_no_tok'] / S['fitlam_docs_s_no_tok']:.2f}x |",
                  f"| single review, median ms ({len(idx)} reviews) | {S['fastai_single_ms']:.0f} | {S[f'fitlam_{v}_single_ms']:.0f} | "
                  f"**{S[f'{v}_latency_ratio']:.2f}** | <= 0.1 | {S[f'{v}_vs_fp32_latency']:.2f} |",
                  f"| single short text (first 30 words), median ms | {S['fastai_short_ms']:.1f} | {S[f'fitlam_{v}_short_ms']:.1f} | "
                  f"{S[f'{v}_short_latency_ratio']:.2f} | | {S[f'fitlam_{v}_short_ms'] / S['fitlam_short_ms']:.2f} |",
                  f"| batch: one row per text, each summing to 1 | | {ok(checks[f'fitlam_{v}'])} | | | |",
                  f"| batch row vs `predict` of the same review, max abs diff | | {checks[f'fitlam_{v}']['batch_vs_single_max_diff']:.1g} | | | |",
                  '', f"{v} vs float32 (same weights, same reviews): max |p_{v} - p_fp32| = {L['max_diff']:.2g} (mean over reviews of the "
                  f"row max: {L['mean_diff']:.2g}; `predict` of the {len(idx)} single reviews: {L['single_max_diff']:.2g}); same predicted class "
                  f"for {100 * L['same_argmax']:.1f}% of the reviews (vs fastai: {100 * L['same_argmax_vs_fastai']:.1f}%; random weights, "
                  "near-uniform probabilities: a pessimistic figure)."]
    print_block(lines, args.json)


if __name__ == '__main__':
    main()
