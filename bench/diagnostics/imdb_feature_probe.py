"""How separable are a saved IMDb encoder's concat-pooled features? A logistic regression on them (a diagnostic, valid only).

    FITLAM_DATA=../shared/data python bench/diagnostics/imdb_feature_probe.py

Reads the general-domain and the IMDb-fine-tuned encoders that `nbs/tutorial_imdb.ipynb` saves (quick preset), encodes
100 and 1,000 balanced training reviews (seed 42) and 1,000 validation reviews (500 per class) in eval mode, and fits an
L2-regularised logistic regression (LBFGS, standardised features) on the training features for several L2 weights;
prints the validation error of each. If a linear model on frozen features does no better than the fine-tuned
classifier, the features (the LM), not the classifier's training, set the error.
"""
import time, torch, pandas as pd
from fitlam.download import fitlam_home, get_dataset
from fitlam.data import TextClasDataBunch
from fitlam.models.pretrained import read_checkpoint
from fitlam.text_learner import text_classifier_learner
from fitlam.vocab import Vocab
torch.set_num_threads(2)
W = fitlam_home()/'tutorials'/'imdb'/'quick'
s = get_dataset('imdb')
train, valid = s['train'], s['valid']
def balanced(df, n, seed):
    return pd.concat([df[df.label == l].sample(n // 2, random_state=seed) for l in sorted(df.label.unique())]).sort_index()
val = pd.concat([g.sample(500, random_state=0) for _, g in valid.groupby('label')])
def feature_learner(enc):
    "A classifier on encoder `enc` whose head is the identity: its predictions are the concat-pooled features (n, 3 * emb_sz)."
    tmp = pd.DataFrame({'text': val.text.tolist()[:40], 'label': ['neg', 'pos'] * 20})     # a data bunch only to build the learner
    data = TextClasDataBunch.from_df(tmp, valid_df=tmp, vocab=Vocab(read_checkpoint(enc)['itos']), bs=32, progress=False)
    learn = text_classifier_learner(data, encoder=enc, progress=False)
    learn.model.head = torch.nn.Identity()
    return learn
def features(learn, texts):
    "The features of `texts`, in their order."
    return learn.get_preds(dl=learn._loader(list(texts), 32), reorder=True, activation=lambda x: x)[0]
def logreg(Xtr, ytr, Xva, yva, lam):
    "Validation error of an L2 (weight `lam`) logistic regression fitted on standardised training features."
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    Xtr, Xva = (Xtr - mu) / sd, (Xva - mu) / sd
    w = torch.zeros(Xtr.size(1), requires_grad=True); b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=500, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad(); l = torch.nn.functional.binary_cross_entropy_with_logits(Xtr @ w + b, ytr) + lam * (w * w).sum(); l.backward(); return l
    opt.step(closure)
    return float(((Xva @ w + b > 0).float() != yva).float().mean())
for name in ['encoder_general.pth', 'encoder_imdb.pth']:
    t, learn = time.time(), feature_learner(W/name)
    Fva = features(learn, val.text.tolist()); yva = torch.tensor((val.label == 'pos').values, dtype=torch.float)
    for n in [100, 1000]:
        tr = balanced(train, n, 42)
        Ftr = features(learn, tr.text.tolist()); ytr = torch.tensor((tr.label == 'pos').values, dtype=torch.float)
        errs = {lam: round(100 * logreg(Ftr, ytr, Fva, yva, lam), 1) for lam in [1e-3, 1e-2, 1e-1, 1.]}
        print(name, n, 'logreg valid err % by L2:', errs, f'{time.time()-t:.0f}s', flush=True)
