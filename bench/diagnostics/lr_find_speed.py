#!/usr/bin/env python
"""How well does the LR range test predict training speed? (tutorial_pretrain's time budget rests on it.)

The quick pretraining setup (all of `$FITLAM_DATA/gutenberg`, WikiText-2 valid, 10k vocab, 200/512/2 AWD-LSTM,
bs 64, bptt 70): `lr_find(num_it=50)` with every training batch's end time-stamped, then `fit_one_cycle` on the
first 6,000 paragraphs. Prints the gaps between batches, the whole-test estimate, the batch-to-batch estimate from the tenth batch on, the median batch (what the notebook
uses) and the fit's speed.

    FITLAM_DATA=../shared/data python bench/diagnostics/lr_find_speed.py     # ~5 min on 2 cores; the tokenization is cached
    FITLAM_DATA=../shared/data python bench/diagnostics/lr_find_speed.py --compare --no-fit   # the range test after and before the fix
"""
import argparse, contextlib, math, sys, time
from unittest import mock

import numpy as np
import fitlam.learner
from fitlam.callback import Callback, CancelFitException
from fitlam.schedule import LRFinder
from fitlam.core import set_seed
from fitlam.data import TextLMDataBunch
from fitlam.download import Corpus, fitlam_data, get_corpus
from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_LM_CONFIG
from fitlam.text_learner import language_model_learner

def _smoothed_only(self):
    "LRFinder.after_batch with the stop rule on the smoothed loss alone (the 'before' of the comparison)."
    if not self.learn.training: return
    loss = float(self.learn.smooth_loss)
    self.lrs.append(self.lr); self.losses.append(loss)
    self.best = min(self.best, loss)
    if self.stop_div and (math.isnan(loss) or loss > 4 * self.best): raise CancelFitException()
    if self.learn.train_iter + 1 >= self.num_it: raise CancelFitException()

class Stamps(Callback):
    def before_fit(self): self.t0, self.stamps, self.tokens = time.perf_counter(), [], []
    def after_batch(self):
        if self.learn.training: self.stamps.append(time.perf_counter()); self.tokens.append(self.learn.xb.numel())

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--compare', action='store_true', help='also run the range test as before the fix (denormals kept, the stop rule on the smoothed loss alone)')
    ap.add_argument('--no-fit', action='store_true', help='skip the fit_one_cycle speed check')
    a = ap.parse_args()
    root = fitlam_data()
    if root is None: sys.exit('set FITLAM_DATA to the folder with gutenberg/ and wikitext2/')
    t = time.perf_counter()
    data = TextLMDataBunch.from_sources(get_corpus(root/'gutenberg'/'books').source(), Corpus(root/'wikitext2'/'wiki.valid.tokens').source('documents'),
                                        bs=64, bptt=70, seed=42, max_vocab=10_000, min_freq=3)
    print(f'data {time.perf_counter() - t:.0f} s', data)
    config = AWDLSTMConfig(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': 200, 'n_hid': 512, 'n_layers': 2})
    set_seed(42)
    learn = language_model_learner(data, config=config, drop_mult=0.3, progress=False)
    for mode in (['after', 'before'] if a.compare else ['after']):
        # 'before': denormals kept and the stop rule on the smoothed loss alone (as fitlam's lr_find ran before the fix)
        patches = [mock.patch.object(fitlam.learner, '_flushed_denormals', contextlib.nullcontext),
                   mock.patch.object(LRFinder, 'after_batch', _smoothed_only)] if mode == 'before' else []
        with contextlib.ExitStack() as stack:
            for p in patches: stack.enter_context(p)
            s = Stamps(); t = time.perf_counter()
            with learn.added_cbs(s): res = learn.lr_find(num_it=50)
            whole = time.perf_counter() - t
        st, tk = np.array(s.stamps), np.array(s.tokens)
        gaps = np.diff(st)
        print(f'[{mode}] lr_find {whole:.1f} s over {len(st)} batches; first batch ends {st[0] - s.t0:.1f} s after the fit starts; '
              f'median batch {np.median(gaps):.2f} s, the last 12: {np.round(gaps[-12:], 2).tolist()}; suggestion {res.valley:.2e}')
        print(f'  tokens/s: whole test {tk.sum() / whole:,.0f}; batch to batch after 10 {tk[11:].sum() / (st[-1] - st[10]):,.0f}; '
              f'median batch {np.median(tk[1:] / gaps):,.0f}')
    if a.no_fit: return
    keep = np.arange(min(6000, len(data.train_dl.docs)))
    learn.data = TextLMDataBunch(data.train_dl.docs.subset(keep), data.valid_dl.docs, data.vocab, data.tokenizer, bs=64, bptt=70, seed=42)
    n = learn.data.train_dl.n_tokens; t = time.perf_counter(); learn.fit_one_cycle(1, lr=5e-3); dt = time.perf_counter() - t
    print(f'fit_one_cycle: {n:,} tokens in {dt:.0f} s, the validation pass included: {n / dt:,.0f} tokens/s')

if __name__ == '__main__': main()
