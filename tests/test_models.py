"Cross-module tests of fitlam.models: training on synthetic data, the LM -> classifier transfer, checkpoints, real data."
import csv, math, os, random, subprocess, textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fitlam.core import BOS, FitlamError, set_seed
from fitlam.testing import TINY_AWD, synth_corpus
from fitlam.vocab import Vocab
from fitlam.models.awdlstm import AWDLSTMConfig, get_language_model
from fitlam.models.kernels import lm_cross_entropy
from fitlam.models.classifier import get_text_classifier
from fitlam.models.pretrained import (load_encoder, load_fastai_lm, load_model, load_pretrained, read_checkpoint, read_fastai_itos,
                                      save_encoder, save_model)

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get('FITLAM_DATA') or ROOT.parent/'shared'/'data')
TINY = AWDLSTMConfig(**TINY_AWD)


def words(text: str) -> list[str]:
    "A crude tokenizer for the synthetic corpus: lowercase words, punctuation and `<br />` dropped."
    text = text.lower().replace('<br />', ' ')
    return [w.strip('.!?,') for w in text.split() if w.strip('.!?,')]


def lm_batches(ids: torch.Tensor, bs: int, bptt: int):
    "Yield (xb, yb) of a contiguous LM stream cut into `bs` rows (row r of batch i+1 continues row r of batch i)."
    n = (len(ids) - 1) // bs
    x, y = ids[:n * bs].view(bs, n), ids[1:n * bs + 1].view(bs, n)
    for i in range(0, n - bptt + 1, bptt): yield x[:, i:i + bptt], y[:, i:i + bptt]


def clas_batch(docs: list[torch.Tensor], pad_idx: int = 1) -> torch.Tensor:
    "Right-pad `docs` into one batch, in their order (the classifier sorts rows that are not longest first)."
    xb = torch.full((len(docs), max(len(d) for d in docs)), pad_idx, dtype=torch.long)
    for r, d in enumerate(docs): xb[r, :len(d)] = d
    return xb


def markov_stream(n_words: int, n: int, seed: int = 0) -> torch.Tensor:
    "Ids 2..n_words+1 where each word is followed by one of two words fixed by it: entropy ln 2 per token."
    g = random.Random(seed)
    nxt = {w: (g.randrange(n_words), g.randrange(n_words)) for w in range(n_words)}
    w, out = 0, []
    for _ in range(n):
        out.append(w + 2); w = nxt[w][g.randrange(2)]
    return torch.tensor(out)


@pytest.fixture(scope='module')
def markov_lm():
    "A tiny LM trained (carried hidden state, AR/TAR, the lean loss) on a 2-successor chain over 40 words; and its losses."
    set_seed(0)
    lm = get_language_model(42, TINY, drop_mult=0.2)
    opt = torch.optim.Adam(lm.parameters(), lr=2e-2, betas=(0.9, 0.99))
    losses = []
    for epoch in range(6):
        lm.train(); lm.reset()
        for xb, yb in lm_batches(markov_stream(40, 6000), bs=8, bptt=20):
            loss = lm_cross_entropy(lm(xb), yb)
            raw, dropped = lm.last_rnn_outputs
            (loss + 2 * dropped.pow(2).mean() + (raw[:, 1:] - raw[:, :-1]).pow(2).mean()).backward()
            opt.step(); opt.zero_grad()
            losses.append(loss.item())
    return lm.eval(), losses


def test_lm_learns_a_markov_stream(markov_lm):
    "Trained on the chain, the LM's loss goes from uniform to near the chain's entropy, in training and on fresh text."
    lm, losses = markov_lm
    assert losses[0] > math.log(42) - 0.3                      # starts near uniform (ln 42 = 3.7)
    assert sum(losses[-10:]) / 10 < 1.3, losses[-10:]          # ln 2 = 0.69 is the best possible
    lm.reset()
    xb, yb = next(lm_batches(markov_stream(40, 4000, seed=0), bs=4, bptt=200))
    assert lm_cross_entropy(lm(xb), yb).item() < 1.3


def test_lean_cross_entropy_trains_like_torch():
    "Training with `lm_cross_entropy` follows `F.cross_entropy` step by step (same seed, same dropout masks)."
    params = []
    for loss_func in (lm_cross_entropy, lambda p, y: F.cross_entropy(p.reshape(-1, p.shape[-1]), y.reshape(-1))):
        set_seed(1)
        lm = get_language_model(42, TINY)
        opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
        lm.train()
        for xb, yb in list(lm_batches(markov_stream(40, 3000), bs=8, bptt=15))[:6]:
            loss_func(lm(xb), yb).backward(); opt.step(); opt.zero_grad()
        params.append(torch.cat([p.detach().flatten() for p in lm.parameters()]))
    torch.testing.assert_close(params[0], params[1], rtol=1e-4, atol=1e-5)


def test_seeded_training_is_reproducible():
    "The same seed gives the same weights after a few training steps (dropout masks included)."
    out = []
    for _ in range(2):
        set_seed(7)
        lm = get_language_model(42, TINY)
        opt = torch.optim.SGD(lm.parameters(), lr=0.5)
        lm.train()
        for xb, yb in list(lm_batches(markov_stream(40, 2000), bs=8, bptt=10))[:4]:
            lm_cross_entropy(lm(xb), yb).backward(); opt.step(); opt.zero_grad()
        out.append(torch.cat([p.detach().flatten() for p in lm.parameters()]))
    assert torch.equal(out[0], out[1])


def test_ulmfit_transfer_on_synthetic_corpus(tmp_path):
    "LM trained on the corpus -> encoder saved -> loaded into a BPT3C classifier that then beats chance by far."
    set_seed(0)
    df = synth_corpus(450, n_classes=3, seed=0)
    docs = [[BOS] + words(t) for t in df.text]
    vocab = Vocab.from_tokens(docs, min_freq=1)
    ids = [torch.from_numpy(vocab.numericalize(d)).long() for d in docs]
    labels = torch.tensor(df.label.astype('category').cat.codes.values, dtype=torch.long)

    # 1. the language model on the whole corpus
    lm = get_language_model(len(vocab), TINY, drop_mult=0.3)
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2, betas=(0.8, 0.99))
    lm.train()
    for xb, yb in lm_batches(torch.cat(ids), bs=16, bptt=20):
        lm_cross_entropy(lm(xb), yb).backward(); opt.step(); opt.zero_grad()
    save_encoder(tmp_path/'enc.pth', lm, vocab)

    # 2. the classifier starts from that encoder; documents span several BPT3C chunks (bptt 8)
    clas = get_text_classifier(len(vocab), 3, TINY, drop_mult=0.3, bptt=8, max_len=32)
    load_encoder(clas, tmp_path/'enc.pth', vocab)
    assert torch.equal(clas.encoder.embedding.weight, lm.encoder.embedding.weight)
    assert max(len(d) for d in ids) > 32                        # some documents are cut to their last max_len tokens
    train, valid = list(range(350)), list(range(350, 450))
    opt = torch.optim.Adam(clas.parameters(), lr=5e-3)
    for epoch in range(12):                                     # 6 epochs: 0.64-0.85 over seeds 0-9; 12: 0.83-0.93
        random.Random(epoch).shuffle(train)
        clas.train()
        for s in range(0, len(train), 25):
            idx = sorted(train[s:s + 25], key=lambda i: -len(ids[i]))   # the loader's order: longest first
            F.cross_entropy(clas(clas_batch([ids[i] for i in idx])), labels[idx]).backward()
            opt.step(); opt.zero_grad()
    clas.eval()
    with torch.no_grad():                                       # rows in dataset order: the model sorts them itself
        acc = (clas(clas_batch([ids[i] for i in valid])).argmax(1) == labels[valid]).float().mean().item()
    assert acc > 0.6, acc                                       # chance is 1/3; the lowest seed of ten 0.83


def test_checkpoints_survive_round_trip_and_reject_any_truncation(tmp_path):
    "A saved classifier reloads to identical outputs; every truncation of the file is a FitlamError naming it."
    set_seed(0)
    vocab = Vocab.from_tokens([words(t) for t in synth_corpus(50).text], min_freq=1)
    clas = get_text_classifier(len(vocab), 3, TINY, bptt=5, max_len=20).eval()
    path = save_model(tmp_path/'clas.pth', clas, vocab)
    back, v = load_model(path)
    xb = clas_batch([torch.randint(2, len(vocab), (n,)) for n in (17, 9, 3)])
    assert v == vocab and torch.equal(back.eval()(xb), clas(xb))
    data = path.read_bytes()
    for cut in (1, 100, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1):
        (tmp_path/'cut.pth').write_bytes(data[:cut])
        with pytest.raises(FitlamError, match='cut.pth'): read_checkpoint(tmp_path/'cut.pth')


def test_pretrained_lm_remapped_to_a_task_vocab_keeps_what_it_learned(tmp_path, markov_lm):
    "A pretrained LM remapped to a reordered vocab with new words predicts the known words as before."
    lm, _ = markov_lm
    old = Vocab(['xxunk', 'xxpad'] + [f'w{i}' for i in range(40)])
    save_model(tmp_path/'lm.pth', lm, old)
    new = Vocab(['xxunk', 'xxpad'] + [f'w{i}' for i in range(40)][::-1] + ['new1', 'new2'])   # reordered + 2 new words
    lm2 = load_pretrained(get_language_model(len(new), TINY), tmp_path/'lm.pth', new).eval()
    to_new = torch.tensor([new.stoi[t] for t in old.itos])         # old id -> new id
    xb, yb = next(lm_batches(markov_stream(40, 4000, seed=0), bs=4, bptt=200))
    lm.reset()
    loss_old = lm_cross_entropy(lm(xb), yb).item()
    loss_new = lm_cross_entropy(lm2(to_new[xb]), to_new[yb]).item()
    assert loss_old < 1.3 and abs(loss_new - loss_old) < 0.05, (loss_old, loss_new)   # the 2 new words take a little mass


needs_trec = pytest.mark.skipif(not (SHARED/'trec6'/'train.csv').exists(), reason=f'no TREC-6 copy under {SHARED}')

@needs_trec
def test_bpt3c_classifier_learns_trec6_from_scratch():
    "On real questions (TREC-6, pre-tokenized), a small BPT3C classifier from scratch beats the majority class by far."
    def read(split):
        with open(SHARED/'trec6'/f'{split}.csv', newline='', encoding='utf-8') as f:
            rows = list(csv.DictReader(f))
        return [[BOS] + r['text'].lower().split() for r in rows], [r['label'] for r in rows]
    (tr_docs, tr_y), (va_docs, va_y) = read('train'), read('valid')
    vocab = Vocab.from_tokens(tr_docs, min_freq=2)
    classes = sorted(set(tr_y))
    enc = lambda docs: [torch.from_numpy(vocab.numericalize(d)).long() for d in docs]
    tr_ids, va_ids = enc(tr_docs), enc(va_docs)
    ytr, yva = torch.tensor([classes.index(c) for c in tr_y]), torch.tensor([classes.index(c) for c in va_y])
    set_seed(0)
    clas = get_text_classifier(len(vocab), len(classes), AWDLSTMConfig(emb_sz=32, n_hid=64, n_layers=2), drop_mult=0.2,
                               bptt=6, max_len=60)                 # bptt 6: most questions span 2-4 chunks
    opt = torch.optim.Adam(clas.parameters(), lr=5e-3)
    order = list(range(len(tr_ids)))
    for epoch in range(3):
        random.Random(epoch).shuffle(order)
        clas.train()
        for s in range(0, len(order), 64):
            idx = sorted(order[s:s + 64], key=lambda i: -len(tr_ids[i]))
            if len(idx) < 2: continue
            F.cross_entropy(clas(clas_batch([tr_ids[i] for i in idx])), ytr[idx]).backward()
            opt.step(); opt.zero_grad()
    clas.eval()
    with torch.no_grad():
        preds = torch.cat([clas(clas_batch(va_ids[s:s + 128])).argmax(1) for s in range(0, len(va_ids), 128)])
    acc = (preds == yva).float().mean().item()
    majority = max((yva == c).float().mean().item() for c in range(len(classes)))
    assert acc > majority + 0.3, (acc, majority)


PEER = Path(os.environ.get('FITLAM_PEER_PYTHON', '/tmp/fitlam-peer-venv/bin/python'))
PEER_LM = textwrap.dedent('''
    import pickle, sys, torch
    from fastai.text.all import AWD_LSTM, awd_lstm_lm_config, get_language_model
    out = sys.argv[1]
    torch.manual_seed(0)
    itos = ['xxunk', 'xxpad', 'xxbos', 'xxeos'] + [f'w{i}' for i in range(46)]
    model = get_language_model(AWD_LSTM, len(itos), config={**awd_lstm_lm_config, 'emb_sz': 16, 'n_hid': 24, 'n_layers': 2})
    with torch.no_grad():                       # a trained-looking model: nothing left at its initial values
        for p in model.parameters(): p.add_(0.1 * torch.randn_like(p))
    model.eval(); model.reset()
    xb = torch.randint(0, len(itos), (3, 17))
    with torch.no_grad(): logits = model(xb)[0]
    torch.save(model.state_dict(), out + '/lstm.pth')
    pickle.dump(itos, open(out + '/itos.pkl', 'wb'))
    torch.save(dict(xb=xb, logits=logits), out + '/io.pt')
''')


@pytest.mark.skipif(not PEER.exists(), reason=f'fastai (the peer) is not installed at {PEER} (../shared/peer/setup.sh makes it)')
def test_fastai_weights_give_fastais_logits(tmp_path):
    "An AWD-LSTM LM made and run by fastai 2.8, loaded by fitlam from fastai's files, gives fastai's logits."
    r = subprocess.run([str(PEER), '-c', PEER_LM, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    io = torch.load(tmp_path/'io.pt', weights_only=True)
    itos = read_fastai_itos(tmp_path/'itos.pkl')
    lm = load_fastai_lm(tmp_path/'lstm.pth', itos, itos).eval()
    lm.reset()
    with torch.no_grad(): logits = lm(io['xb'])
    assert torch.allclose(logits, io['logits'], atol=1e-6), (logits - io['logits']).abs().max()
