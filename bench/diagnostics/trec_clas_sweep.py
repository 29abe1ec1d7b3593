"""TREC-6 (or AG News) validation error of classifiers trained with several settings on one fine-tuned encoder (a diagnostic: it tunes on valid only).

    FITLAM_DATA=../shared/data python bench/diagnostics/trec_clas_sweep.py ~/.fitlam/tutorials/trec6/quick/encoder.pth '[{}, {"seed": 1}, {"drop_mult": 1.0}]'
    FITLAM_DATA=../shared/data python bench/diagnostics/trec_clas_sweep.py ~/.fitlam/tutorials/ag_news/quick/encoder.pth '[{"seed": 1}]' ag_news

The encoder is the one `nbs/tutorial_trec6.ipynb` (or `tutorial_ag_news`) saves; each setting overrides the quick
preset's classifier (drop_mult 0.5, LR 1e-2, bs 64, seed 42; 2 epochs per unfreezing stage and 12 final epochs for
TREC-6, 1 and 4 for AG News). Prints one line per setting.
"""
import sys
from pathlib import Path
import time, json, torch
from fitlam.core import set_seed
from fitlam.download import get_dataset
from fitlam.data import TextClasDataBunch
from fitlam.models.pretrained import read_checkpoint
from fitlam.text_learner import text_classifier_learner
from fitlam.vocab import Vocab
torch.set_num_threads(2)
enc = Path(sys.argv[1]); vocab = Vocab(read_checkpoint(enc)['itos'])
name = sys.argv[3] if len(sys.argv) > 3 else 'trec6'
s = get_dataset(name); train, valid = s['train'], s['valid']
epochs = {'trec6': {'epochs': 2, 'final': 12}, 'ag_news': {'epochs': 1, 'final': 4}}[name]
for g in json.loads(sys.argv[2]):
    c = {'drop_mult': 0.5, **epochs, 'lr': 1e-2, 'seed': 42, 'bs': 64, **g}
    t = time.time(); set_seed(c['seed'])
    data = TextClasDataBunch.from_df(train, valid_df=valid, vocab=vocab, bs=c['bs'], seed=c['seed'], progress=False)
    learn = text_classifier_learner(data, encoder=enc, drop_mult=c['drop_mult'], bptt=70, path='/tmp/trec_sweep', progress=False)
    h = learn.fine_tune(c['final'], stage_epochs=c['epochs'], lr=c['lr'], verbose=False)
    probs, targs = learn.get_preds()
    err = float((probs.argmax(1) != targs).float().mean())
    print(c, f'valid error {100*err:.2f}%  min over epochs {100*(1-h.accuracy.max()):.2f}%  {time.time()-t:.0f}s', flush=True)
