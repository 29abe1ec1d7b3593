#!/usr/bin/env python
"""Time to quality: LM pretraining recipes raced for the same wall-clock training budget, scored in bits per character.

Each contestant (`CONTESTANTS`: an encoder, AWD-LSTM or QRNN; a tokenizer, spaCy words or SentencePiece unigram
subwords trained on the training text; its sizes, `drop_mult` and LR; bs 64, bptt 70, seed 42) runs in a fresh
process of the same python (this script with `--worker`), one after the other, so that each has the machine to
itself and its peak RSS is its own. In that process:

1. tokenize (timed apart): Gutenberg's paragraphs (`gutenberg/books`, 7.3M words; `--max-words` for a quick check)
   as the training text, WikiText-2's validation articles (`wikitext2/wiki.valid.tokens`) as the validation set;
   a word vocab keeps the `vocab` most frequent words seen 3+ times, a subword vocab every piece of the
   `vocab`-piece SentencePiece model seen in the training text;
2. build the LM (`language_model_learner(pretrained=False)`, seeded), and time `--probe-batches` training batches
   after two warm-up ones with `lr_find` from lr/100 to lr (it puts the weights, optimizer and RNGs back, so they
   do not count as training; checked): R tokens/s, the median batch's;
3. the budget is R x 60 x `--minutes` tokens: one epoch of `fit_one_cycle(1, lr)` on a seeded random subset of the
   paragraphs whose lengths add up to at most the budget (`tutorial_pretrain`'s), or, where the budget holds the
   whole text, as many whole epochs as it holds (to the nearest) of all of it; no validation inside the timed fit;
4. score: the WikiText-2 validation loss (nats per token: comparable only within a tokenizer), then
   `fitlam.lm_eval.lm_bits_per_char` on WikiText-2's test and validation articles (the measure that compares
   tokenizers). The test file is only ever evaluated on, never trained or tuned on.

The WikiText files are detokenized (`@,@` -> `,`) and their `<unk>` become `xxunk` (`fitlam.download.Corpus`),
so these bpc figures compare the contestants with each other, not with published character-level results on the
raw WikiText-2. A word LM predicts each unknown word as one cheap `xxunk`: the table's unk rate says how much
of that discount it got.

Prints a markdown table (tokens/s: trained tokens over the timed fit's seconds; the probe's estimate is in the JSON;
peak RSS: the contestant's process, VmHWM, its tokenizer workers apart: `peak_tree_rss_mb`, sampled every 0.5 s, has
them), writes bench/out/lm_race.json (machine, settings, one record per contestant; a contestant whose process fails
is recorded with its error and the race goes on). The token cache and the SentencePiece models go to $FITLAM_CACHE
(else ~/.cache/fitlam): a second race tokenizes from the cache.

    FITLAM_DATA=../shared/data .venv/bin/python bench/lm_race.py --contestants qrnn_sp,awd_words --save /tmp/race/lms   # the documented race (2 x 30 min)
    FITLAM_DATA=../shared/data .venv/bin/python bench/lm_race.py --contestants awd_words,awd_sp,qrnn_words,qrnn_sp   # every pairing (4 x 30 min)
    OMP_NUM_THREADS=1 FITLAM_DATA=../shared/data .venv/bin/python bench/lm_race.py --contestants awd_words,awd_sp \\
        --minutes 0.3 --max-words 30000 --sizes awd_words=32,64,2 --sizes awd_sp=32,64,2 --vocab awd_sp=2000   # a quick check (~2 min)
"""
from __future__ import annotations
import argparse, json, os, platform, subprocess, sys, tempfile, time
from datetime import datetime, timezone
from pathlib import Path

from _common import OUT, PeakRSS, command, data_dir, loadavg, write_json

# name: the encoder, the tokenizer, its vocab (a word vocab's max_vocab, a SentencePiece model's vocab_sz), emb/hid/layers,
# drop_mult, LR, and fields of the encoder's config beyond the sizes (QRNN: `window`, the first layer's convolution width, as
# fastai's AWD-QRNN: 2 on the first layer, 1 above)
CONTESTANTS = {
    'awd_words':  dict(arch='awd_lstm', tokenizer='spacy', vocab=10_000, sizes=(200, 512, 2), drop_mult=0.3, lr=5e-3),  # tutorial_pretrain's quick LM
    'awd_sp':     dict(arch='awd_lstm', tokenizer='sp', vocab=15_000, sizes=(200, 512, 2), drop_mult=0.3, lr=5e-3),
    'qrnn_words': dict(arch='qrnn', tokenizer='spacy', vocab=10_000, sizes=(256, 768, 3), drop_mult=0.3, lr=5e-3, config=dict(window=2)),
    'qrnn_sp':    dict(arch='qrnn', tokenizer='sp', vocab=15_000, sizes=(256, 768, 3), drop_mult=0.3, lr=5e-3, config=dict(window=2)),
}
BS, BPTT, MIN_FREQ, SEED = 64, 70, 3, 42


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--contestants', default='awd_words,qrnn_sp', help=f'comma list of {", ".join(CONTESTANTS)}')
    ap.add_argument('--minutes', type=float, default=30., help='training budget of each contestant (wall clock)')
    ap.add_argument('--max-words', type=int, default=None, help='the first N words of Gutenberg only (a quick check)')
    ap.add_argument('--sizes', action='append', default=[], metavar='NAME=EMB,HID,LAYERS', help="a contestant's sizes")
    ap.add_argument('--vocab', action='append', default=[], metavar='NAME=N', help="a contestant's max_vocab (words) or vocab_sz (subwords)")
    ap.add_argument('--probe-batches', type=int, default=30, help='training batches timed for the budget (after 2 warm-up ones)')
    ap.add_argument('--eval-bs', type=int, default=16, help="lm_bits_per_char's rows")
    ap.add_argument('--bf16', choices=('auto', 'on', 'off'), default='auto', help='bf16 autocast (auto: on a CUDA GPU)')
    ap.add_argument('--save', default=None, metavar='DIR', help='save each LM there as NAME.pth (learn.save_lm)')
    ap.add_argument('--out', default=str(OUT/'lm_race.json'))
    ap.add_argument('--worker', default=None, help=argparse.SUPPRESS)       # run one contestant (this script, re-invoked)
    ap.add_argument('--result', default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.argv = list(sys.argv[1:] if argv is None else argv)
    a.contestants = [c.strip() for c in a.contestants.split(',') if c.strip()]
    unknown = sorted({c for c in a.contestants} - set(CONTESTANTS))
    if unknown or not a.contestants: ap.error(f'--contestants: {unknown or "none"}; known: {", ".join(CONTESTANTS)}')
    if len(set(a.contestants)) < len(a.contestants): ap.error('--contestants: a name given twice')
    if not a.minutes > 0: ap.error('--minutes: expected a number > 0')
    a.table = {k: dict(v, sizes=tuple(v['sizes'])) for k, v in CONTESTANTS.items()}
    for opt, key, n in (('sizes', 'sizes', 3), ('vocab', 'vocab', 1)):
        for s in getattr(a, opt):
            name, _, val = s.partition('=')
            try: nums = tuple(int(x) for x in val.split(','))
            except ValueError: nums = ()
            if name not in a.table or len(nums) != n or min(nums) < 1:
                ap.error(f'--{opt} {s!r}: expected NAME={"EMB,HID,LAYERS" if n == 3 else "N"} (positive integers), NAME one of {", ".join(CONTESTANTS)}')
            a.table[name][key] = nums if n == 3 else nums[0]
    return a


# 1. One contestant, in its own process.
def peak_rss_mb() -> int:
    "This process's peak resident memory (VmHWM), MB."
    with open('/proc/self/status') as f: return round(next(int(l.split()[1]) for l in f if l.startswith('VmHWM:')) / 1024)

def run_contestant(name: str, a) -> dict:
    import numpy as np, torch
    from fitlam.callback import Callback
    from fitlam.core import set_seed
    from fitlam.data import TextLMDataBunch
    from fitlam.download import Corpus, get_corpus
    from fitlam.lm_eval import lm_bits_per_char
    from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_LM_CONFIG
    from fitlam.subword import get_tokenizer
    from fitlam.text_learner import language_model_learner

    c, root = a.table[name], data_dir()
    wt2, sp, lr = root/'wikitext2', c['tokenizer'] == 'sp', c['lr']
    cuda = torch.cuda.is_available()
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    say = lambda msg: print(f'[{name}] {msg}', flush=True)

    # tokenize
    t = time.perf_counter()
    data = TextLMDataBunch.from_sources(get_corpus(root/'gutenberg'/'books').source(max_words=a.max_words),
                                        Corpus([wt2/'wiki.valid.tokens']).source('documents'), bs=BS, bptt=BPTT, seed=SEED,
                                        tokenizer=get_tokenizer(c['tokenizer'], c['vocab'] if sp else None),
                                        max_vocab=60_000 if sp else c['vocab'], min_freq=1 if sp else MIN_FREQ, progress=False)
    tokenize_s = time.perf_counter() - t
    say(f'{data} in {tokenize_s:.0f} s')

    # the model, seeded
    if c['arch'] == 'qrnn': from fitlam.models.qrnn import QRNNConfig as Config   # the QRNN encoder, where fitlam has it
    else: Config = AWDLSTMConfig
    emb, hid, layers = c['sizes']
    config = Config(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': emb, 'n_hid': hid, 'n_layers': layers, **c.get('config', {})})
    set_seed(SEED)
    bf16 = a.bf16 == 'on' or (a.bf16 == 'auto' and cuda)
    learn = language_model_learner(data, config=config, pretrained=False, drop_mult=c['drop_mult'], progress=False, bf16=bf16)
    n_params = sum(p.numel() for p in learn.model.parameters())

    # the speed probe: lr_find's batches, weights and RNGs put back after
    class BatchClock(Callback):
        order = 1                                      # before LRFinder ends the fit in its after_batch
        def before_fit(self): self.marks = []
        def after_batch(self):
            if self.learn.training: sync(); self.marks.append((time.perf_counter(), self.learn.xb.numel()))
    valid_dl, data.valid_dl = data.valid_dl, None      # no validation in the probe or the timed fit
    before = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    clock = BatchClock()
    with learn.added_cbs(clock): learn.lr_find(lr / 100, lr, num_it=a.probe_batches + 2, stop_div=False, suggest=())
    after = learn.model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items()), 'lr_find did not put the weights back'
    (ts, ns) = map(np.array, zip(*clock.marks))
    tok_s = float(np.median(ns[2:] / np.diff(ts)[1:]))          # each batch after the two warm-up ones
    del before, after

    # the budget: a random subset of the paragraphs (tutorial_pretrain's), or whole epochs of all of them
    docs, n_all = data.train_dl.docs, data.train_dl.n_tokens
    budget = int(tok_s * 60 * a.minutes)
    if budget < n_all:
        perm = np.random.default_rng(SEED).permutation(len(docs))
        keep, epochs = np.sort(perm[np.cumsum(docs.lengths[perm]) <= budget]), 1
    else: keep, epochs = np.arange(len(docs)), max(1, round(budget / n_all))
    learn.data = TextLMDataBunch(docs.subset(keep), valid_dl.docs, data.vocab, data.tokenizer, bs=BS, bptt=BPTT, seed=SEED)
    learn.data.valid_dl = None
    say(f'{tok_s:,.0f} tokens/s -> {a.minutes:g} min = {budget:,} tokens: {epochs} epoch(s) of {len(keep):,} of {len(docs):,} paragraphs '
        f'({learn.data.train_dl.n_tokens:,} of {n_all:,} tokens)')

    # train
    if cuda: torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    learn.fit_one_cycle(epochs, lr=lr)
    sync(); train_s = time.perf_counter() - t
    trained = learn.data.train_dl.n_tokens * epochs
    learn.data, data.valid_dl = data, valid_dl
    say(f'trained {trained:,} tokens in {train_s:.0f} s ({trained / train_s:,.0f} tokens/s)')

    # score
    t = time.perf_counter()
    valid = learn.validate(dl=valid_dl)
    bpc = {split: lm_bits_per_char(learn, list(Corpus([wt2/f'wiki.{split}.tokens']).documents()), bs=a.eval_bs, bptt=BPTT)
           for split in ('test', 'valid')}
    eval_s = time.perf_counter() - t
    say(f"WikiText-2 valid loss {valid['valid_loss']:.3f}; bpc test {bpc['test']['bits_per_char']:.4f}, valid {bpc['valid']['bits_per_char']:.4f}")
    saved = str(learn.save_lm(Path(a.save).resolve()/f'{name}.pth')) if a.save else None
    return dict(name=name, **{k: list(v) if isinstance(v, tuple) else v for k, v in c.items()}, vocab_len=len(data.vocab), params=n_params,
                corpus_tokens=n_all, valid_tokens=valid_dl.n_tokens, tokenize_s=round(tokenize_s, 1), probe_tok_s=round(tok_s),
                budget_tokens=budget, epochs=epochs, train_docs=len(keep), trained_tokens=trained, train_s=round(train_s, 1),
                train_tok_s=round(trained / train_s), valid_loss=round(float(valid['valid_loss']), 4), wt2_test=bpc['test'],
                wt2_valid=bpc['valid'], eval_s=round(eval_s, 1), peak_rss_mb=peak_rss_mb(),
                peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None, bf16=bf16, saved=saved,
                device=torch.cuda.get_device_name() if cuda else 'cpu', threads=torch.get_num_threads(), torch=torch.__version__)


# 2. The race: each contestant in a fresh process, one after the other.
def race(a) -> list[dict]:
    results = []
    for name in a.contestants:
        print(f'\n== {name}: {a.table[name]}', flush=True)
        with tempfile.TemporaryDirectory() as d:
            out = Path(d)/'result.json'
            t = time.perf_counter()
            p = subprocess.Popen([sys.executable, __file__, *a.argv, '--worker', name, '--result', str(out)])
            with PeakRSS(p.pid, every=0.5) as mem: rc = p.wait()       # the process and its tokenizer workers, sampled
            rec = json.loads(out.read_text()) if out.exists() else {}
        if rc or 'error' in rec: rec = dict(name=name, **a.table[name], error=rec.get('error', f'exit status {rc}'))
        rec.update(wall_s=round(time.perf_counter() - t, 1), peak_tree_rss_mb=round(mem.peak))
        results.append(rec)
    return results

def machine() -> dict:
    import torch
    try: cpu = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): cpu = platform.processor() or platform.machine()
    return dict(platform=platform.platform(), cpu=cpu, cpus=os.cpu_count(), threads=torch.get_num_threads(), torch=torch.__version__,
                python=platform.python_version(), gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)

def table(results: list[dict]) -> list[str]:
    rows = ['| contestant | arch | tokenizer | vocab | params | tokens/s | trained tokens | train min | WT-2 test bpc | WT-2 valid bpc | unk rate | peak RSS MB |',
            '|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        head = f"| {r['name']} | {r['arch']} {'/'.join(map(str, r['sizes']))} | {r['tokenizer']} | "
        if 'error' in r: rows.append(head + f"{r['vocab']} | failed: {r['error'][:60]} (JSON) |" + ' |' * 7); continue
        rows.append(head + f"{r['vocab_len']:,} | {r['params']:,} | {r['train_tok_s']:,} | {r['trained_tokens']:,} | {r['train_s'] / 60:.1f} | "
                    f"{r['wt2_test']['bits_per_char']:.4f} | {r['wt2_valid']['bits_per_char']:.4f} | {r['wt2_test']['unk_rate']:.2%} | {r['peak_rss_mb']:,} |")
    return rows

def main(argv=None):
    a = parse_args(argv)
    if a.worker:
        try: rec = run_contestant(a.worker, a)
        except Exception as e: rec = dict(error=f'{type(e).__name__}: {e}'[:500]); raise     # the race records it and goes on
        finally: Path(a.result).write_text(json.dumps(rec))
        return
    root = data_dir()
    need = [root/'gutenberg'/'books', root/'wikitext2'/'wiki.valid.tokens', root/'wikitext2'/'wiki.test.tokens']
    if missing := [str(p) for p in need if not p.exists()]: raise SystemExit(f'{missing}: missing; set FITLAM_DATA (e.g. ../shared/data)')
    if any(a.table[n]['arch'] == 'qrnn' for n in a.contestants):
        import importlib.util
        if importlib.util.find_spec('fitlam.models.qrnn') is None: raise SystemExit('arch qrnn: this fitlam has no fitlam.models.qrnn (QRNNConfig)')
    started, load0 = datetime.now(timezone.utc), loadavg()
    results = race(a)
    lines = table(results)
    print('\n' + '\n'.join(lines))
    write_json(a.out, dict(date=started.strftime('%Y-%m-%d %H:%M UTC'), command=command(), machine=machine(), loadavg_start=load0,
                           loadavg_end=loadavg(), settings=dict(minutes=a.minutes, max_words=a.max_words, bs=BS, bptt=BPTT, seed=SEED,
                           min_freq_words=MIN_FREQ, probe_batches=a.probe_batches, eval_bs=a.eval_bs, bf16=a.bf16),
                           results=results, table=lines))
    print(f'\nJSON: {a.out}')


if __name__ == '__main__':
    main()
