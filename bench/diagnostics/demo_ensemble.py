"""`fitlam demo`'s recipe run forward and backward, and the `Ensemble` of the two classifiers (a diagnostic: TREC-6 valid).

    FITLAM_DATA=../shared/data python bench/diagnostics/demo_ensemble.py --pretrain-words 300000

Each direction pretrains its own LM on the first `--pretrain-words` words of `gutenberg`, then runs the demo's stages
2 and 3, every setting `fitlam demo`'s default (read from its parser); prints each classifier's error, the ensemble's,
and the seconds since the start. Whether the paper's forward + backward ensemble fits the demo's 10-minute budget.
"""
import argparse, time
from fitlam.cli import _config, _corpus_source, build_parser
from fitlam.download import get_dataset
from fitlam.text_learner import Ensemble, pretrain_lm, ulmfit

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--pretrain-words', type=int, default=300_000)
ap.add_argument('--out', default='/tmp/fitlam_demo_ensemble')
a = ap.parse_args()
d = build_parser().parse_args(['demo'])          # the demo's defaults
t0 = time.perf_counter()
splits = get_dataset('trec6')
train, valid = splits['train'], splits['valid']
learners = []
for backwards in (False, True):
    out = f'{a.out}/{"bwd" if backwards else "fwd"}'
    lm = pretrain_lm(_corpus_source(['gutenberg'], a.pretrain_words), config=_config(d), epochs=d.pretrain_epochs, lr=d.pretrain_lr,
                     bs=d.bs, bptt=d.bptt, max_vocab=d.max_vocab, seed=d.seed, path=out, progress=False, backwards=backwards)
    pretrained = lm.save_lm(f'{out}/lm.pth')
    del lm
    clas = ulmfit(train, valid, pretrained=pretrained, bs=d.bs, bptt=d.bptt, lm_epochs=d.lm_epochs, lm_lr=d.lm_lr, lm_drop_mult=d.lm_drop_mult,
                  clas_epochs=d.clas_epochs, clas_stage_epochs=d.clas_stage_epochs, clas_lr=d.clas_lr, clas_drop_mult=d.clas_drop_mult,
                  seed=d.seed, path=out, max_vocab=d.max_vocab, backwards=backwards, progress=False, verbose=False)
    print(f'{"backward" if backwards else "forward"}: valid error {1 - clas.validate()["accuracy"]:.2%}, '
          f'{time.perf_counter() - t0:.0f} s since the start', flush=True)
    learners.append(clas)
ensemble = Ensemble(learners)
pred = ensemble.predict_proba(valid.text.tolist()).argmax(1).tolist()
err = sum(ensemble.classes[p] != y for p, y in zip(pred, valid.label.tolist())) / len(valid)
print(f'forward + backward: valid error {err:.2%}, {time.perf_counter() - t0:.0f} s in all')
