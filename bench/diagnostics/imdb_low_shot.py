"""Which classifier recipe works with 100 labelled IMDb reviews? Draws x recipes x encoders, beside TF-IDF on the same draws.

    FITLAM_DATA=../shared/data python bench/diagnostics/imdb_low_shot.py [--n 100] [--draws 42,1,2] [--recipes paper,best_acc]
        [--encoders general,imdb] [--lm-words 3000000] [--lm-epochs 1] [--score-rows 1000]

The LM is `tutorial_pretrain`'s quick one (`$FITLAM_HOME/models/lm_gutenberg_quick.pth`). It is fine-tuned once per
`--lm-words`/`--lm-epochs` on unlabelled + training reviews as `tutorial_imdb` does (the encoders are kept under
`$FITLAM_HOME/tutorials/imdb/diag/`, so later runs reuse them). Each draw is `balanced(train, n, seed)`; each classifier
validates after each epoch on the 200 validation reviews `tutorial_imdb` monitors, and is scored on `--score-rows` other
validation reviews (disjoint from those 200), as is the yardstick (`fitlam.baseline` on the same draw). Prints one line
per run and appends it to `bench/out/imdb_low_shot.jsonl`. A diagnostic: valid split only.
"""
import argparse, json, time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from fitlam.baseline import baseline
from fitlam.core import set_seed
from fitlam.data import TextClasDataBunch, TextLMDataBunch
from fitlam.download import fitlam_home, get_dataset
from fitlam.models.pretrained import read_checkpoint
from fitlam.text_learner import language_model_learner, text_classifier_learner
from fitlam.tutorial import balanced, stratified
from fitlam.vocab import Vocab

# name: (batch size, fine_tune keyword arguments, drop_mult)
RECIPES = {
    'paper': (16, dict(stage_epochs=2, epochs=8, lr=1e-2), 0.5),       # gradual unfreezing 2/2/2/8 epochs, ends on the last epoch
    'steps_loss': (16, dict(stage_epochs=2, epochs=8, lr=1e-2, min_steps=60, keep_best=True), 0.5),
    'best_acc': (16, dict(stage_epochs=2, epochs=8, lr=1e-2, keep_best='accuracy'), 0.5),    # tutorial_imdb's quick preset
    'drop1_acc': (16, dict(stage_epochs=2, epochs=8, lr=1e-2, keep_best='accuracy'), 1.0),
    'lr3_acc': (16, dict(stage_epochs=2, epochs=8, lr=3e-3, keep_best='accuracy'), 0.5),
}

def encoders(pretrained: Path, lm_words: int, lm_epochs: int, train, unsup, seed: int = 42) -> dict:
    "The general-domain and the IMDb-fine-tuned encoder files (in the IMDb vocab), made once per setting."
    work = fitlam_home()/'tutorials'/'imdb'/'diag'/f'{pretrained.stem}_{lm_words}_{lm_epochs}'
    out = {'general': work/'encoder_general.pth', 'imdb': work/'encoder_imdb.pth'}
    if all(p.exists() for p in out.values()): return out
    t = time.perf_counter()
    pool = pd.concat([unsup.text, train.text], ignore_index=True).sample(frac=1, random_state=seed)
    if lm_words: pool = pool[pool.str.split().str.len().cumsum() <= lm_words]
    set_seed(seed)
    lm_data = TextLMDataBunch.from_texts(pool.tolist(), valid_pct=0.02, bs=64, bptt=70, seed=seed, max_vocab=10_000, min_freq=3,
                                         pretrained_vocab=pretrained)
    lm = language_model_learner(lm_data, pretrained=pretrained, drop_mult=1.0, path=work, progress=False)
    lm.save_encoder(out['general'])
    lm.fine_tune(lm_epochs, lr=4e-3, freeze_epochs=0, verbose=False)
    lm.save_encoder(out['imdb'])
    print(f"LM fine-tuned on {len(pool):,} reviews, {lm_epochs} epoch(s): perplexity {lm.validate()['perplexity']:.1f}, "
          f'{time.perf_counter() - t:.0f} s', flush=True)
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--n', type=int, default=100)
    ap.add_argument('--draws', default='42,1,2')
    ap.add_argument('--recipes', default='paper,best_acc', help=f'comma-separated, of {sorted(RECIPES)}')
    ap.add_argument('--encoders', default='imdb')
    ap.add_argument('--lm', default=str(fitlam_home()/'models'/'lm_gutenberg_quick.pth'))
    ap.add_argument('--lm-words', type=int, default=3_000_000)
    ap.add_argument('--lm-epochs', type=int, default=1)
    ap.add_argument('--score-rows', type=int, default=1000)
    args = ap.parse_args()
    torch.set_num_threads(2)
    splits = get_dataset('imdb')
    train, valid, unsup = splits['train'], splits['valid'], splits['unsup']
    monitor = stratified(valid, 200, 42)
    score = stratified(valid.drop(monitor.index), args.score_rows, 0)
    enc = encoders(Path(args.lm), args.lm_words, args.lm_epochs, train, unsup)
    vocab = Vocab(read_checkpoint(enc['imdb'])['itos'])
    out = Path(__file__).resolve().parents[1]/'out'/'imdb_low_shot.jsonl'
    out.parent.mkdir(exist_ok=True)
    for seed in [int(s) for s in args.draws.split(',')]:
        labelled = balanced(train, args.n, seed)
        yard = baseline(TextClasDataBunch.from_df(labelled, valid_df=score, vocab=vocab, progress=False))
        print(f'n={args.n} draw {seed}: TF-IDF + LR {100 * yard.error:.2f}% (C={yard.C:g})', flush=True)
        for name in args.recipes.split(','):
            bs, kw, drop_mult = RECIPES[name]
            data = TextClasDataBunch.from_df(labelled, valid_df=monitor, vocab=vocab, bs=bs, seed=seed, progress=False)
            for e in args.encoders.split(','):
                t = time.perf_counter()
                set_seed(seed)
                learn = text_classifier_learner(data, encoder=enc[e], drop_mult=drop_mult, bptt=70, progress=False)
                hist = learn.fine_tune(**kw, verbose=False)
                probs, _ = learn.get_preds(score.text.tolist(), bs=64)
                err = float((probs.argmax(1).numpy() != np.array([learn.classes.index(l) for l in score.label])).mean())
                best = hist.valid_loss.idxmin()
                row = dict(n=args.n, draw=seed, recipe=name, encoder=e, lm=f'{args.lm_words}/{args.lm_epochs}', error=round(100 * err, 2),
                           tfidf=round(100 * yard.error, 2), epochs=len(hist), steps=len(learn.recorder.losses),
                           best_epoch=int(best), last_valid_loss=round(float(hist.valid_loss.iloc[-1]), 4),
                           min_valid_loss=round(float(hist.valid_loss.min()), 4), seconds=round(time.perf_counter() - t))
                print(json.dumps(row), flush=True)
                with open(out, 'a') as f: f.write(json.dumps(row) + '\n')

if __name__ == '__main__': main()
