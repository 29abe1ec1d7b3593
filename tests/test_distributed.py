"""DDP on 2 CPU processes (gloo): the same weights, losses and metrics as one process over the same global batches,
every sample on exactly one rank; for the tiny regression net, the AWD-LSTM and QRNN language models and BPT3C classifiers."""
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fitlam.core import FitlamError
from fitlam.callback import Callback, CancelFitException
from fitlam.training import RNNRegularizer
from fitlam.data import TextClasDataBunch, TextLMDataBunch
from fitlam.distributed import DistributedTrainer, distributed, launch, main_first, rank
from fitlam.learner import Learner
from fitlam.optimizer import sgd
from fitlam.metrics import AccumMetric, Accuracy, F1Macro, Perplexity
from fitlam.models.awdlstm import AWDLSTMConfig, get_language_model
from fitlam.models.kernels import lm_cross_entropy
from fitlam.models.classifier import get_text_classifier
from fitlam.models.qrnn import AWDQRNN, QRNNConfig
from fitlam.schedule import GradualUnfreezing
from fitlam.testing import TINY_AWD, TinyNet, synth_corpus, synth_regression
from fitlam.text_learner import language_model_learner, text_classifier_learner

TINY = AWDLSTMConfig(**TINY_AWD)
TINY_QRNN = QRNNConfig(**TINY_AWD, window=2)      # MultiFiT's encoder: a 2-wide convolution in the first layer, state (x_prev, c)
V = 40                       # vocab size of the synthetic token data (ids 2..V-1; 1 is xxpad)


@pytest.fixture(scope='module', autouse=True)
def cpu_only():
    "DDP on CPU processes (gloo) even where a GPU is visible: default_device would pick CUDA + NCCL, one GPU per rank."
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('FITLAM_DEVICE', 'cpu')      # read by each Learner and by init_distributed in the spawned ranks
        yield


# -- contract loaders (docs/design.md), small enough to read ---------------------------------------------
class StreamLoader:
    "LM batches: the documents, shuffled from (seed, epoch), joined and cut into `bs` rows; `sl` drawn per batch from (seed, epoch)."
    def __init__(self, docs, bs, bptt, shuffle=True, seed=0):
        self.docs, self.bs, self.bptt, self.shuffle, self.seed, self.epoch = docs, bs, bptt, shuffle, seed, 0
    def set_epoch(self, epoch): self.epoch = epoch
    def _plan(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.docs)) if self.shuffle else np.arange(len(self.docs))
        stream = torch.cat([self.docs[i] for i in order])
        n = (len(stream) - 1) // self.bs
        sls, pos = [], 0
        while pos < n:
            sl = min(n - pos, int(rng.integers(self.bptt - 3, self.bptt + 4)))
            sls.append(sl); pos += sl
        return stream, n, sls
    def __len__(self): return len(self._plan()[2])
    def __iter__(self):
        stream, n, sls = self._plan()
        x, y = stream[:n * self.bs].view(self.bs, n), stream[1:n * self.bs + 1].view(self.bs, n)
        pos = 0
        for sl in sls:
            yield x[:, pos:pos + sl], y[:, pos:pos + sl]
            pos += sl


class PaddedLoader:
    "Classifier batches: documents shuffled from (seed, epoch), each batch sorted longest first and right-padded with 1."
    pad_idx = 1
    def __init__(self, docs, labels, bs, shuffle=True, seed=0):
        self.docs, self.labels, self.bs, self.shuffle, self.seed, self.epoch = docs, labels, bs, shuffle, seed, 0
    def set_epoch(self, epoch): self.epoch = epoch
    def __len__(self): return -(-len(self.docs) // self.bs)
    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.docs)) if self.shuffle else np.arange(len(self.docs))
        for i in range(len(self)):
            idx = sorted(order[i * self.bs:(i + 1) * self.bs], key=lambda j: -len(self.docs[j]))
            xb = torch.full((len(idx), len(self.docs[idx[0]])), self.pad_idx, dtype=torch.long)
            for r, j in enumerate(idx): xb[r, :len(self.docs[j])] = self.docs[j]
            yield xb, self.labels[idx]


class Data:
    def __init__(self, train_dl, valid_dl): self.train_dl, self.valid_dl = train_dl, valid_dl


def token_docs(n, lo, hi, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, V, (int(torch.randint(lo, hi + 1, (1,), generator=g)),), generator=g) for _ in range(n)]


# -- what each rank (and the single process) runs -------------------------------------------------------
class Seen(Callback):
    "Record the training rows this process trained on (placeholders excluded), and the callbacks present."
    order = 53       # after DistributedTrainer (52) has cut the batch
    def __init__(self): self.batches, self.cbs = [], None
    def before_fit(self): self.cbs = [type(cb).__name__ for cb in self.learn.cbs]
    def before_batch(self):
        if not self.learn.training: return
        placeholder = any(cb.placeholder for cb in self.learn.cbs if isinstance(cb, DistributedTrainer))
        self.batches.append(None if placeholder else self.learn.xb.detach().cpu().clone())


def summary(learn, seen, history=None):
    history = learn.recorder.history if history is None else history
    return dict(weights={k: v.detach().cpu().clone() for k, v in learn.model.state_dict().items()},
                history=history.drop(columns='time').to_dict('list'), losses=list(learn.recorder.losses),
                batches=seen.batches, cbs=seen.cbs)


def fit(learn, ddp, n_epoch=1, method='fit', ddp_kwargs=None, **kwargs):
    seen = Seen()
    learn.add_cb(seen)
    with distributed(learn, **(ddp_kwargs or {})) if ddp else _null():
        history = getattr(learn, method)(n_epoch, **kwargs)
    return summary(learn, seen, history if method == 'fine_tune' else None)


class _null:
    def __enter__(self): return self
    def __exit__(self, *args): return False


def regression(ddp):
    "TinyNet (with BatchNorm) on 133 rows in batches of 16: the last batch of 5 rows splits 3/2."
    torch.manual_seed(0)
    data = synth_regression(n_train=133, n_valid=37, bs=16)
    learn = Learner(data, TinyNet(), F.mse_loss, opt_func=sgd, lr=1e-2, metrics=[AccumMetric(F.l1_loss, name='mae', lower_is_better=True)])
    out = fit(learn, ddp)
    out['x'] = data.train_dl.x.flatten()
    return out


def placeholder_unfreezing(ddp):
    "No batch norm, 65 rows in batches of 16: the last batch has 1 row (rank 1 trains a placeholder); gradual unfreezing re-wraps DDP."
    torch.manual_seed(1)
    data = synth_regression(n_train=65, n_valid=17, bs=16, seed=1)
    model = nn.Sequential(nn.Linear(1, 8), nn.ReLU(), nn.Linear(8, 1))
    learn = Learner(data, model, F.mse_loss, lr=3e-2, progress=False, splitter=lambda m: [list(m[0].parameters()), list(m[2].parameters())])
    learn.freeze()
    return fit(learn, ddp, 2, 'fit_one_cycle', cbs=GradualUnfreezing())


def language_model(ddp, config=TINY):
    "Tiny AWD-LSTM (dropouts off, AR/TAR on), 5 rows per batch (3/2), variable sl, validation rows 3 (2/1)."
    torch.manual_seed(2)
    docs = token_docs(30, 5, 25, seed=2)
    data = Data(StreamLoader(docs[:24], bs=5, bptt=8, seed=2), StreamLoader(docs[24:], bs=3, bptt=8, shuffle=False))
    learn = Learner(data, get_language_model(V, config, drop_mult=0.), lm_cross_entropy, lr=1e-2, progress=False,
                    cbs=RNNRegularizer(alpha=2., beta=1.), metrics=[Accuracy(), Perplexity()])
    return fit(learn, ddp)


def qrnn_language_model(ddp):
    "The same with a tiny QRNN: each rank carries the (x_prev, c) state of its own rows from batch to batch."
    assert isinstance(get_language_model(V, TINY_QRNN).encoder, AWDQRNN)
    return language_model(ddp, TINY_QRNN)


def synth_lm_learner(n_texts: int, seed: int):
    "A tiny `language_model_learner` (dropouts off) on an LM data bunch of `n_texts` synthetic texts."
    df = synth_corpus(n_texts, seed=seed)
    data = TextLMDataBunch.from_texts(df.text.tolist(), bs=6, bptt=10, seed=seed, progress=False, n_workers=0)
    torch.manual_seed(seed)
    return language_model_learner(data, TINY, drop_mult=0., lr=1e-2, progress=False)


def lm_learner_find_unused(ddp):
    "An `LMLearner` (its decoder fused with the loss: the model returns a `DecoderInput`) under DDP(find_unused_parameters=True)."
    return fit(synth_lm_learner(60, seed=8), ddp, 1, ddp_kwargs=dict(find_unused_parameters=True))


def classifier(ddp, config=TINY):
    "BPT3C classifier (bptt 4, max_len 12, BatchNorm head), 45 documents of 3-30 tokens in batches of 8 (the last has 5)."
    torch.manual_seed(3)
    docs = token_docs(60, 3, 30, seed=3)
    labels = torch.tensor([int(d.float().mean() > V / 2) + int(len(d) > 15) for d in docs])      # 3 classes
    data = Data(PaddedLoader(docs[:45], labels[:45], bs=8, seed=3), PaddedLoader(docs[45:], labels[45:], bs=6, shuffle=False))
    model = get_text_classifier(V, 3, config, drop_mult=0., bptt=4, max_len=12, ps=[0.])
    learn = Learner(data, model, F.cross_entropy, opt_func=sgd, lr=1e-2, progress=False, metrics=[Accuracy(), F1Macro()])
    out = fit(learn, ddp)
    out['docs'] = docs[:45]
    return out


def qrnn_classifier(ddp):
    "The same BPT3C classifier on a tiny QRNN encoder (trimmed padding columns and all)."
    return classifier(ddp, TINY_QRNN)


class StopAfter(Callback):
    "Stop the fit at the end of epoch `epoch` (as a kill would, after that epoch's checkpoint... or before it)."
    def __init__(self, epoch): self.epoch = epoch
    def after_epoch(self):
        if self.learn.epoch == self.epoch: raise CancelFitException()


def checkpoints(ddp, folder):
    "A 3-epoch fit stopped after epoch 0's checkpoint, then resumed from it; each rank asks for its own checkpoint file."
    folder = Path(folder)
    def learner():
        torch.manual_seed(4)
        return Learner(synth_regression(n_train=64, bs=16, seed=4), TinyNet(), F.mse_loss, opt_func=sgd, lr=1e-2, progress=False)
    learn = learner()
    ck = folder / f'ck_rank{rank()}.pt'
    fit(learn, ddp, 3, checkpoint=ck, cbs=StopAfter(1))          # epoch 1 ends without its checkpoint
    written = sorted(p.name for p in folder.glob('ck_rank*.pt'))
    learn = learner()
    resumed = fit(learn, ddp, 3, resume=folder / 'ck_rank0.pt')
    return dict(written=written, weights=resumed['weights'])


def ulmfit_lm(ddp):
    "The real pipeline, part 1: an LM data bunch of the synthetic corpus; ULMFiT LM fine-tuning (frozen epoch, then all layers, STLR)."
    learn = synth_lm_learner(120, seed=5)
    out = fit(learn, ddp, 1, 'fine_tune', freeze_epochs=1, verbose=False)
    out['encoder'], out['vocab'] = learn.model.encoder.state_dict(), learn.data.vocab
    return out


def ulmfit_clas(ddp, lm):
    "Part 2: a classifier data bunch with the LM's vocab, its encoder, ULMFiT gradual unfreezing (4 stages of 1 epoch, STLR), AR/TAR."
    df = synth_corpus(120, seed=5)
    data = TextClasDataBunch.from_texts(df.text.tolist(), df.label.tolist(), vocab=lm['vocab'], bs=8, seed=5, progress=False, n_workers=0)
    torch.manual_seed(6)
    learn = text_classifier_learner(data, TINY, drop_mult=0., ps=[0.], bptt=8, lr=1e-2, progress=False, opt_func=sgd)
    learn.model.encoder.load_state_dict(lm['encoder'])
    return fit(learn, ddp, 1, 'fine_tune', verbose=False)


SCENARIOS = dict(regression=regression, placeholder_unfreezing=placeholder_unfreezing, language_model=language_model,
                 lm_learner_find_unused=lm_learner_find_unused, classifier=classifier,
                 qrnn_language_model=qrnn_language_model, qrnn_classifier=qrnn_classifier)
PIPELINE = ['ulmfit_lm', 'ulmfit_clas']


def all_scenarios(ddp):
    out = {name: f(ddp) for name, f in SCENARIOS.items()}
    out['ulmfit_lm'] = ulmfit_lm(ddp)
    out['ulmfit_clas'] = ulmfit_clas(ddp, out['ulmfit_lm'])
    for k in ('encoder', 'vocab'): del out['ulmfit_lm'][k]
    return out


def main_first_span():
    "When this rank ran a `main_first` block."
    with main_first():
        start = time.time(); time.sleep(0.3); end = time.time()
    return start, end


def mismatched_data():
    "Rank 1 builds its data with another seed: every rank must fail with a message, not hang; return the message."
    torch.manual_seed(0)
    learn = Learner(synth_regression(n_train=64, bs=16, seed=rank()), TinyNet(), F.mse_loss, progress=False)
    try:
        with distributed(learn): learn.fit(1)
    except FitlamError as e: return str(e)


def run_all(folder):
    "Run every scenario on this rank."
    out = all_scenarios(True)
    out['checkpoints'] = checkpoints(True, folder)
    out['mismatch'] = mismatched_data()
    out['main_first'] = main_first_span()
    return out


def three_ranks(ddp):
    "TinyNet on 34 rows in batches of 16 over 3 ranks: the last batch's 2 rows leave rank 2 a placeholder, which must not count in batch norm."
    torch.manual_seed(7)
    data = synth_regression(n_train=34, n_valid=17, bs=16, seed=7)
    learn = Learner(data, TinyNet(), F.mse_loss, opt_func=sgd, lr=1e-2, progress=False, metrics=[AccumMetric(F.l1_loss, name='mae')])
    return fit(learn, ddp, 2)


# -- the tests ----------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def folder(tmp_path_factory): return tmp_path_factory.mktemp('ddp')


@pytest.fixture(scope='module')
def ranks(folder):
    "Every scenario on 2 processes (gloo, 1 thread each), launched once: a list of the 2 ranks' results; a hang fails after 120 s."
    return launch(run_all, nprocs=2, args=(str(folder),), threads=1, timeout=120)


@pytest.fixture(scope='module')
def single(tmp_path_factory):
    "Every scenario in this one process (1 thread, as each rank: tiny LSTMs on 2 busy cores crawl with 2 threads)."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = all_scenarios(False)
        out['checkpoints'] = checkpoints(False, tmp_path_factory.mktemp('single'))
        out['three_ranks'] = three_ranks(False)
    finally: torch.set_num_threads(threads)
    return out


@pytest.fixture(scope='module')
def three():
    "The 3-rank scenario on 3 processes."
    return launch(three_ranks, nprocs=3, args=(True,), threads=1, timeout=120)


def assert_same_weights(a, b, eps=1e-4):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k].float(), b[k].float(), atol=eps, rtol=eps, msg=lambda m: f'{k}: {m}')


def assert_same_history(a, b, eps=1e-5):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k][0], str): assert a[k] == b[k], k        # fine_tune's `stage`
        else: np.testing.assert_allclose(a[k], b[k], rtol=eps, atol=eps, err_msg=k)


@pytest.mark.parametrize('name', list(SCENARIOS) + PIPELINE)
def test_weights_equal_single_process(ranks, single, name):
    "After training, both ranks hold the weights of one process trained on the same global batches."
    for r in (0, 1): assert_same_weights(ranks[r][name]['weights'], single[name]['weights'])


@pytest.mark.parametrize('name', list(SCENARIOS) + PIPELINE)
def test_losses_and_metrics_equal_single_process(ranks, single, name):
    "The recorder's per-batch losses and per-epoch train/valid losses and metrics are the single process's, on both ranks."
    for r in (0, 1):
        assert_same_history(ranks[r][name]['history'], single[name]['history'])
        np.testing.assert_allclose(ranks[r][name]['losses'], single[name]['losses'], rtol=1e-5, atol=1e-6)


def test_weights_moved(single):
    "The comparisons above are not between untrained models."
    torch.manual_seed(0)
    assert not torch.allclose(single['regression']['weights']['head.weight'], TinyNet().head.weight.detach())
    torch.manual_seed(2)
    init = get_language_model(V, TINY_QRNN, drop_mult=0.).state_dict()
    trained = single['qrnn_language_model']['weights']
    for k in ('encoder.rnns.0.weight', 'encoder.rnns.1.weight'):       # every QRNN layer's gates trained
        assert not torch.allclose(trained[k], init[k]), k


def test_regression_ranks_partition_the_dataset(ranks):
    "The union of the ranks' training samples is the dataset: no sample twice, none dropped; rows 3/2 in the ragged batch."
    x = ranks[0]['regression']['x']
    seen = [torch.cat([b.flatten() for b in ranks[r]['regression']['batches'] if b is not None]) for r in (0, 1)]
    assert Counter(torch.cat(seen).tolist()) == Counter(x.tolist())
    assert [len(b) for b in ranks[0]['regression']['batches']] == [8] * 8 + [3]
    assert [len(b) for b in ranks[1]['regression']['batches']] == [8] * 8 + [2]


def test_placeholder_batches(ranks, single):
    "A batch of 1 row: rank 0 trains it, rank 1 trains a placeholder (weight 0); the samples still partition the dataset."
    b0, b1 = ranks[0]['placeholder_unfreezing']['batches'], ranks[1]['placeholder_unfreezing']['batches']
    assert len(b0) == len(b1) == 10 and b1[4] is None and b1[9] is None and len(b0[4]) == 1
    for epoch in (0, 1):
        got = torch.cat([b.flatten() for b in b0[5 * epoch:5 * epoch + 5] + b1[5 * epoch:5 * epoch + 5] if b is not None])
        want = torch.cat([b.flatten() for b in single['placeholder_unfreezing']['batches'][5 * epoch:5 * epoch + 5]])
        assert Counter(got.tolist()) == Counter(want.tolist()) and len(got) == 65
    assert not torch.equal(torch.cat(b0[:5]).sort(0).values, torch.cat(b0[5:]).sort(0).values)   # re-shuffled per epoch


def test_lm_ranks_own_fixed_rows(ranks, single):
    "Rank r owns rows r::2 of every LM batch (its hidden state stays its rows'), and the ranks' rows make up each batch."
    full = single['language_model']['batches']
    for r in (0, 1):
        got = ranks[r]['language_model']['batches']
        assert len(got) == len(full) and len({b.shape[1] for b in full}) > 1       # variable sl
        for g, f in zip(got, full): assert torch.equal(g, f[r::2])


def test_classifier_ranks_partition_the_documents(ranks):
    "Every training document is in exactly one rank's batches; each rank's batch is sorted, right-padded and trimmed."
    docs = ranks[0]['classifier']['docs']
    seen = []
    for r in (0, 1):
        for xb in ranks[r]['classifier']['batches']:
            lengths = (xb != 1).sum(1)
            assert (lengths[:-1] >= lengths[1:]).all() and lengths[0] == xb.shape[1]   # longest first, no all-padding column
            seen += [tuple(row[:n].tolist()) for row, n in zip(xb, lengths)]
    assert Counter(seen) == Counter(tuple(d.tolist()) for d in docs)


def test_progress_bar_only_on_rank0(ranks):
    assert 'ProgressCallback' in ranks[0]['regression']['cbs']
    assert 'ProgressCallback' not in ranks[1]['regression']['cbs']
    assert 'DistributedTrainer' in ranks[1]['regression']['cbs']


def test_only_rank0_writes_checkpoints_and_resume_continues(ranks, single):
    "Both ranks asked for a checkpoint file; only rank 0's exists. Resuming from it on both ranks ends where an uninterrupted fit would."
    assert ranks[0]['checkpoints']['written'] == ranks[1]['checkpoints']['written'] == ['ck_rank0.pt']
    torch.manual_seed(4)
    learn = Learner(synth_regression(n_train=64, bs=16, seed=4), TinyNet(), F.mse_loss, opt_func=sgd, lr=1e-2, progress=False)
    learn.fit(3)
    uninterrupted = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    for r in (0, 1): assert_same_weights(ranks[r]['checkpoints']['weights'], uninterrupted)
    assert_same_weights(single['checkpoints']['weights'], uninterrupted)


def test_ranks_with_different_data_fail_instead_of_hanging(ranks):
    "Rank 1 built its data with another seed: both ranks raise (and the next scenario could run), naming what differs."
    for r in (0, 1):
        assert 'the first training batches of epoch 0 (rows, checksum) differ across ranks' in ranks[r]['mismatch']


def test_three_ranks_placeholder_adds_nothing_to_batch_norm(three, single):
    "On 3 ranks the 2-row batch leaves rank 2 a placeholder; the weights, losses and metrics are still the single process's."
    assert [b is None for b in three[2]['batches']] == [False, False, True] * 2
    assert [len(b) for b in three[0]['batches']] == [6, 6, 1] * 2
    for r in range(3):
        assert_same_weights(three[r]['weights'], single['three_ranks']['weights'])
        assert_same_history(three[r]['history'], single['three_ranks']['history'])


def test_main_first_runs_rank0_before_the_others(ranks):
    (start0, end0), (start1, end1) = ranks[0]['main_first'], ranks[1]['main_first']
    assert start1 >= end0

