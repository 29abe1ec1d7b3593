"""`fitlam demo`'s recipe run forward and backward, and the `Ensemble` of the two classifiers (a diagnostic: TREC-6 valid).

    FITLAM_DATA=../shared/data python bench/diagnostics/demo_ensemble.py --pretrain-words 300000

Each direction pretrains its own 200/512/2 LM on the first `--pretrain-words` words of `gutenberg`, then runs the
demo's stages 2 and 3 (12 LM epochs, classifier 2/2/2/12); prints each classifier's error, the ensemble's, and the
seconds since the start. Whether the paper's forward + backward ensemble fits the demo's 10-minute budget.
"""
import argparse, time
from fitlam.cli import _corpus_source
from fitlam.download import get_dataset
from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_LM_CONFIG
from fitlam.text_learner import Ensemble, pretrain_lm, ulmfit

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument('--pretrain-words', type=int, default=300_000)
ap.add_argument('--out', default='/tmp/fitlam_demo_ensemble')
a = ap.parse_args()
t0 = time.perf_counter()
splits = get_dataset('trec6')
train, valid = splits['train'], splits['valid']
config = AWDLSTMConfig(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': 200, 'n_hid': 512, 'n_layers': 2})
learners = []
for backwards in (False, True):
    out = f'{a.out}/{"bwd" if backwards else "fwd"}'
    lm = pretrain_lm(_corpus_source(['gutenberg'], a.pretrain_words), config=config, epochs=1, lr=5e-3, max_vocab=10_000, seed=42,
                     path=out, progress=False, backwards=backwards)
    pretrained = lm.save_lm(f'{out}/lm.pth')
    del lm
    clas = ulmfit(train, valid, pretrained=pretrained, lm_epochs=12, lm_drop_mult=0.5, clas_epochs=2, clas_final_epochs=12, seed=42,
                  path=out, max_vocab=10_000, backwards=backwards, progress=False, verbose=False)
    print(f'{"backward" if backwards else "forward"}: valid error {1 - clas.validate()["accuracy"]:.2%}, '
          f'{time.perf_counter() - t0:.0f} s since the start', flush=True)
    learners.append(clas)
ensemble = Ensemble(learners)
pred = ensemble.predict_proba(valid.text.tolist()).argmax(1).tolist()
err = sum(ensemble.classes[p] != y for p, y in zip(pred, valid.label.tolist())) / len(valid)
print(f'forward + backward: valid error {err:.2%}, {time.perf_counter() - t0:.0f} s in all')
