"""The bag-of-words yardstick for the tutorials: TF-IDF + logistic regression on the same splits (fitlam's deps only).

    FITLAM_DATA=../shared/data python bench/tfidf_baseline.py

For TREC-6, the AG News slice, and IMDb with 100 and 1,000 balanced training reviews (the low-shot rows of
`tutorial_imdb`, seeds 42 and 1), fits a TF-IDF (lower-cased words, unigrams or unigrams + bigrams, sublinear tf, smooth idf,
rows L2-normalised: scikit-learn's `TfidfVectorizer(sublinear_tf=True)`) + multinomial logistic regression
(L2, LBFGS, sparse features) for a small grid of C, and prints the valid error of each and the best. The best is
chosen **on the validation split**, so it is an optimistic baseline: what the ULMFiT classifiers of the tutorials
should at least match. No fitlam model is involved; it calibrates the tutorial goals against the data.
"""
import collections, math, re, warnings
import pandas as pd
import torch
from fitlam.download import get_dataset

WORD = re.compile(r'\b\w+\b')

def grams(text: str, n: int) -> list[str]:
    w = WORD.findall(text.lower())
    return w + [f'{a} {b}' for a, b in zip(w, w[1:])] if n == 2 else w

def tfidf(train: list[str], valid: list[str], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    "Sparse (CSR) TF-IDF matrices, the vocabulary and idf from `train` only."
    docs = [collections.Counter(grams(t, n)) for t in train]
    df = collections.Counter(g for d in docs for g in d)
    vocab = {g: i for i, g in enumerate(df)}
    idf = torch.tensor([math.log((1 + len(docs)) / (1 + df[g])) + 1 for g in vocab])
    def mat(counters):
        rows, cols, vals = [], [], []
        for r, d in enumerate(counters):
            for g, c in d.items():
                if g in vocab: rows.append(r); cols.append(vocab[g]); vals.append(1 + math.log(c))
        x = torch.sparse_coo_tensor(torch.tensor([rows, cols]), torch.tensor(vals) * idf[cols], (len(counters), len(vocab))).coalesce()
        norm = torch.zeros(len(counters)).index_add_(0, x.indices()[0], x.values() ** 2).sqrt().clamp_min(1e-12)
        return torch.sparse_coo_tensor(x.indices(), x.values() / norm[x.indices()[0]], x.shape).to_sparse_csr()
    return mat(docs), mat([collections.Counter(grams(t, n)) for t in valid])

def logreg_error(xtr, ytr, xva, yva, C: float) -> float:
    "scikit-learn's objective: C * sum of cross-entropies + ||W||^2 / 2 (bias not penalised)."
    k = int(ytr.max()) + 1
    w = torch.zeros(xtr.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    xtr, xva = xtr.to(torch.float64), xva.to(torch.float64)
    opt = torch.optim.LBFGS([w, b], max_iter=1000, tolerance_grad=1e-6, line_search_fn='strong_wolfe')
    def closure():
        opt.zero_grad()
        loss = C * torch.nn.functional.cross_entropy(xtr @ w + b, ytr, reduction='sum') + (w * w).sum() / 2
        loss.backward()
        return loss
    opt.step(closure)
    with torch.no_grad(): return float(((xva @ w + b).argmax(1) != yva).double().mean())

def run(name: str, train: pd.DataFrame, valid: pd.DataFrame) -> float:
    labels = {l: i for i, l in enumerate(sorted(train.label.unique()))}
    ytr, yva = torch.tensor(train.label.map(labels).values), torch.tensor(valid.label.map(labels).values)
    errs = {}
    for n in (1, 2):
        xtr, xva = tfidf(train.text.tolist(), valid.text.tolist(), n)
        for C in (1, 10, 100): errs[n, C] = logreg_error(xtr, ytr, xva, yva, C)
    cells = '  '.join(f"{'uni' if n == 1 else 'bi'} C={C}: {e:.2%}" for (n, C), e in errs.items())
    print(f'{name} ({len(train):,} train / {len(valid):,} valid): best {min(errs.values()):.2%}  [{cells}]', flush=True)
    return min(errs.values())

torch.set_num_threads(2)
warnings.filterwarnings('ignore', message='Sparse (invariant checks|CSR tensor support)')
for name in ['trec6', 'ag_news']:
    d = get_dataset(name)
    run(name, d['train'], d['valid'])
imdb = get_dataset('imdb')
for n in (100, 1000):
    for seed in (42, 1):
        sub = pd.concat([g.sample(n // 2, random_state=seed) for _, g in imdb['train'].groupby('label')])
        run(f'imdb, {n} labels, seed {seed}', sub, imdb['valid'])
