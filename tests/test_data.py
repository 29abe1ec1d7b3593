"Data bunches end to end: the loaders' contracts over many epochs and sizes, the ULMFiT data flow on IMDb, every bad input."
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fitlam.core import FitlamError
from fitlam.data import LMLoader, ClasLoader, TextLMDataBunch, TextClasDataBunch
from fitlam.vocab import encode_labels
from fitlam.corpus import DocIds
from fitlam.testing import synth_corpus

DATA = Path(os.environ.get('FITLAM_DATA', Path(__file__).resolve().parent.parent.parent/'shared'/'data'))
IMDB = DATA/'imdb'
needs_imdb = pytest.mark.skipif(not (IMDB/'train.csv').exists(), reason=f'{IMDB} not found (set FITLAM_DATA)')


def unique_stream(n_docs, seed=0, max_len=300):
    "Documents whose token ids are all different: a token's id is its position in the unshuffled stream."
    lens = np.random.default_rng(seed).integers(1, max_len, n_docs)
    return DocIds.from_lists(np.split(np.arange(lens.sum()), np.cumsum(lens)[:-1])), lens


@pytest.mark.parametrize('bs,bptt,backwards', [(1, 70, False), (7, 20, False), (16, 70, True), (64, 5, False), (3, 1, False)])
def test_lm_batches_cover_the_stream_once_per_epoch(bs, bptt, backwards):
    docs, lens = unique_stream(300, seed=bs)
    dl = LMLoader(docs, bs=bs, bptt=bptt, shuffle=True, seed=3, backwards=backwards)
    for epoch in range(4):
        dl.set_epoch(epoch)
        batches = list(dl)
        assert len(batches) == len(dl)                           # len() is exact, every epoch
        lo, hi = dl.bounds
        sls = [x.shape[1] for x, _ in batches]
        assert all(lo <= s <= hi for s in sls[:-1]) and 1 <= sls[-1] <= hi
        x = torch.cat([b[0] for b in batches], 1); y = torch.cat([b[1] for b in batches], 1)
        assert x.shape == (bs, dl.row_len)
        assert len(x.unique()) == x.numel()                       # every input token once
        assert torch.equal(x[:, 1:], y[:, :-1])                   # targets: the inputs shifted by one,
        for (_, y0), (x1, _) in zip(batches, batches[1:]):        # across batch boundaries too
            assert torch.equal(x1[:, 0], y0[:, -1])
        # the stream is the documents, whole, in this epoch's order (reversed for a backward LM)
        stream = np.concatenate([docs[i] for i in dl.order()])
        if backwards: stream = stream[::-1]
        rows = stream[:bs * dl.row_len + 1]
        assert np.array_equal(x.numpy(), np.stack([rows[r * dl.row_len:(r + 1) * dl.row_len] for r in range(bs)]))


def test_lm_resumes_where_it_left():
    "A loader built again with the same seed, set to the same epoch, gives the same batches (resuming, DDP ranks)."
    docs, _ = unique_stream(200)
    a, b = LMLoader(docs, bs=8, shuffle=True, seed=5), LMLoader(docs, bs=8, shuffle=True, seed=5)
    a.set_epoch(2); b.set_epoch(1); b.set_epoch(2)
    assert all(torch.equal(x, y) for (x, _), (y, _) in zip(a, b))
    c = LMLoader(docs, bs=8, shuffle=True, seed=6); c.set_epoch(2)
    assert not torch.equal(next(iter(a))[0], next(iter(c))[0])


def test_lm_variable_bptt_averages_near_bptt():
    docs, _ = unique_stream(3000, max_len=400)
    dl = LMLoader(docs, bs=16, bptt=70, shuffle=True)
    sls = dl.seq_lens()[:-1]
    assert 60 < sls.mean() < 70 and (sls < 50).mean() > 0.02      # mostly ~70, ~5% around 35
    assert LMLoader(docs, bs=16, bptt=70).seq_lens()[:-1].tolist() == [70] * (len(LMLoader(docs, bs=16).seq_lens()) - 1)


@pytest.mark.parametrize('bs,shuffle', [(1, True), (5, True), (32, True), (7, False), (100, False)])
def test_clas_batches(bs, shuffle):
    docs, lens = unique_stream(333, seed=bs, max_len=200)
    dl = ClasLoader(docs, np.arange(333), bs=bs, shuffle=shuffle, seed=1, pad_idx=-7)
    for epoch in range(2):
        dl.set_epoch(epoch)
        seen = []
        for xb, yb in dl:
            n = (xb != -7).sum(1)
            assert (n[:-1] >= n[1:]).all() and n[0] == xb.shape[1]       # longest first, no column of pure padding
            for row, i in zip(xb, yb.tolist()):
                assert torch.equal(row[:lens[i]], torch.from_numpy(docs[i])) and (row[lens[i]:] == -7).all()
            seen += yb.tolist()
        assert seen == dl.order[:len(seen)].tolist()
        assert len(seen) == (333 // bs * bs if shuffle else 333) and len(set(seen)) == len(seen)


@needs_imdb
def test_sortish_padding_on_imdb_lengths():
    lens = pd.read_csv(IMDB/'train.csv').text.str.split().str.len().to_numpy() + 1
    docs = DocIds.from_lists([[2] * int(n) for n in lens])
    def pad(order, bs=64):
        b = [lens[order[i:i + bs]] for i in range(0, len(order) - bs + 1, bs)]
        return sum((x.max() - x).sum() for x in b) / sum(x.max() * len(x) for x in b)
    sortish = pad(ClasLoader(docs, bs=64, shuffle=True).order)
    rand = pad(np.random.default_rng(0).permutation(len(lens)))
    assert sortish < 0.15 and sortish < rand / 5, (sortish, rand)      # ~9% vs ~74% on IMDb, bs 64


@needs_imdb
def test_ulmfit_data_flow_on_imdb(tmp_path):
    "LM on labelled + unlabelled reviews, then a classifier on the LM's vocab: the cache serves the labelled texts twice."
    train = pd.read_csv(IMDB/'train.csv').sample(1200, random_state=0)
    valid = pd.read_csv(IMDB/'valid.csv').sample(300, random_state=0)
    unsup = pd.read_csv(IMDB/'unsup_0.csv', nrows=800)
    for name, d in [('train', train), ('valid', valid), ('unsup', unsup)]: d.to_csv(tmp_path/f'{name}.csv', index=False)
    cache = tmp_path/'cache'
    lm = TextLMDataBunch.from_csv(tmp_path/'train.csv', valid_csv=tmp_path/'valid.csv', extra=[tmp_path/'unsup.csv'],
                                  bs=32, bptt=70, cache_dir=cache)
    assert len(lm.train_dl.docs) == 2000 and len(lm.valid_dl.docs) == 300
    entries = sorted(p.name for p in cache.iterdir())
    clas = TextClasDataBunch.from_csv(tmp_path/'train.csv', valid_csv=tmp_path/'valid.csv', vocab=lm.vocab, bs=32, cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == entries     # no new tokenization
    assert clas.vocab is lm.vocab and clas.classes == ['neg', 'pos']
    assert 8_000 < len(lm.vocab) < 60_000 and lm.vocab.itos[:2] == ['xxunk', 'xxpad']
    xb, yb = next(iter(lm.train_dl))
    assert xb.shape[0] == 32 and 5 <= xb.shape[1] <= 85 and torch.equal(xb[:, 1:], yb[:, :-1])
    xb, yb = next(iter(clas.valid_dl))
    assert xb.shape[0] == 32 and (xb[:, 0] == lm.vocab.stoi['xxbos']).all()
    ids = torch.cat([x[x != 1] for x, _ in clas.valid_dl])
    assert (ids == lm.vocab.unk_idx).float().mean() < 0.08         # a vocab from 2,000 reviews covers >92% of new ones
    assert yb.tolist() == [clas.classes.index(l) for l in valid.label.to_numpy()[clas.valid_dl.order[:32]]]
    preds = clas.test_dl(valid.text.tolist()[:50], bs=16)
    assert sorted(preds.order.tolist()) == list(range(50))


BAD = synth_corpus(60, seed=9)

def write(tmp_path, df, name='d.csv'):
    df.to_csv(tmp_path/name, index=False); return tmp_path/name

@pytest.mark.parametrize('case,expected', [
    ('text column', "d.csv: text column 'review' missing; found ['text', 'label']"),
    ('label column', "d.csv: label column 'sentiment' missing; found ['text', 'label']"),
    ('nan text', "column 'text' has missing or empty text in row(s) [2, 5]"),
    ('empty text', "column 'text' has missing or empty text in row(s) [4]"),
    ('nan label', 'empty label in rows [1, 8]'),               # a CSV cell left empty
    ('unseen valid label', "valid labels: labels ['weather']"),
    ('not utf-8', 'bad.txt: not a UTF-8 text file'),
    ('bs too large', 'bs=100 is larger than the data'),
    ('lm bs too large', 'bs=5000 is larger than the data'),
    ('bptt', 'bptt=0: must be an integer >= 1'),
    ('no csv', 'nope.csv: file not found'),
])
def test_bad_input_raises_its_error(tmp_path, case, expected):
    kw = dict(cache_dir=tmp_path/'cache')
    with pytest.raises(FitlamError) as e:
        if case == 'text column': TextClasDataBunch.from_csv(write(tmp_path, BAD), text_col='review', **kw)
        elif case == 'label column': TextClasDataBunch.from_csv(write(tmp_path, BAD), label_col='sentiment', **kw)
        elif case == 'nan text': TextClasDataBunch.from_csv(write(tmp_path, BAD.assign(text=BAD.text.where(~BAD.index.isin([2, 5])))), **kw)
        elif case == 'empty text': TextLMDataBunch.from_csv(write(tmp_path, BAD.assign(text=BAD.text.where(BAD.index != 4, '  '))), **kw)
        elif case == 'nan label': TextClasDataBunch.from_csv(write(tmp_path, BAD.assign(label=BAD.label.where(~BAD.index.isin([1, 8])))), **kw)
        elif case == 'unseen valid label':
            TextClasDataBunch.from_df(BAD[:40], valid_df=BAD[40:].assign(label='weather'), bs=8, **kw)
        elif case == 'not utf-8':
            for i, (t, l) in enumerate(zip(BAD.text, BAD.label)):
                (tmp_path/'train'/l).mkdir(parents=True, exist_ok=True); (tmp_path/'train'/l/f'{i}.txt').write_text(t)
            (tmp_path/'train'/'food'/'bad.txt').write_bytes(b'\xff\xfe caf\xe9')
            TextClasDataBunch.from_folder(tmp_path, bs=8, **kw)
        elif case == 'bs too large': TextClasDataBunch.from_df(BAD, bs=100, **kw)
        elif case == 'lm bs too large': TextLMDataBunch.from_df(BAD, bs=5000, **kw)
        elif case == 'bptt': TextLMDataBunch.from_df(BAD, bptt=0, bs=4, **kw)
        elif case == 'no csv': TextLMDataBunch.from_csv(tmp_path/'nope.csv', **kw)
    assert expected in str(e.value), str(e.value)


def test_labels_int_and_string_and_multi():
    y, c = encode_labels([10, 3, 10, 7])
    assert c == [3, 7, 10] and y.tolist() == [2, 0, 2, 1]
    y, c = encode_labels(['b|a', 'a'], label_delim='|')
    assert c == ['a', 'b'] and y.tolist() == [[1, 1], [1, 0]]


def test_multi_label_from_label_columns(tmp_path):
    "Several 0/1 label columns: multi-label, the columns are the classes."
    df = pd.DataFrame({'text': synth_corpus(80).text, 'x': [i % 2 for i in range(80)], 'y': [(i // 2) % 2 for i in range(80)]})
    c = TextClasDataBunch.from_df(df, label_col=['x', 'y'], bs=8, cache_dir=tmp_path)
    assert c.classes == ['x', 'y'] and c.c == 2 and c.multi_label
    xb, yb = next(iter(c.valid_dl))
    assert yb.dtype == torch.float32 and yb.shape == (8, 2)
    order = c.valid_dl.order[:8]
    _, va = np.sort(np.random.default_rng(0).permutation(80)[8:]), np.sort(np.random.default_rng(0).permutation(80)[:8])
    assert yb.tolist() == df[['x', 'y']].to_numpy()[va][order].tolist()
