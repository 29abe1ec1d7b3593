"""fp16 mixed precision (autocast + loss scaling) and gradient accumulation, on the CPU (also where a GPU is visible): fp16 trains, its overflows are
skipped and counted (not divergence), its loss scale survives kill and resume; k batches of b give one batch of k*b's
update and LR schedule, for a plain model, uneven batches and a BPT3C classifier, in one process and under DDP."""
import math, warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fitlam.core import FitlamError
from fitlam.callback import Callback, TrainingDiverged
from fitlam.learner import GradientAccumulation, Learner
from fitlam.optimizer import sgd
from fitlam.testing import TINY_AWD, TinyNet, synth_corpus, synth_regression
from fitlam.training import GradientClip
from fitlam.models.awdlstm import AWDLSTMConfig


def make(seed=0, model=TinyNet, data=None, **kwargs):
    "A learner on the tiny regression task; `model`: a function building the model after seeding."
    torch.manual_seed(seed)
    return Learner(data or synth_regression(seed=0), model(), F.mse_loss, **{'lr': 1e-2, 'progress': False, 'device': 'cpu', **kwargs})


def mlp(): return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 1))


def weights(learn): return {k: v.detach().clone() for k, v in learn.model.state_dict().items()}


def assert_close(a, b, eps=1e-6):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], atol=eps, rtol=eps, msg=lambda m: f'{k}: {m}')


class InfGrad(Callback):
    "Make the gradients of the training batches in `at` (train_iter) infinite: the backward pass of an infinite loss factor, the loss itself finite."
    def __init__(self, at): self.at = set(at)
    def before_backward(self):
        if self.learn.train_iter in self.at: self.learn.loss_grad = self.learn.loss_grad * torch.tensor(float('inf'))


# -- fp16 -----------------------------------------------------------------------------------------------
def test_fp16_trains_on_cpu_loss_float32_weights_float32():
    seen = set()
    class Dtypes(Callback):
        def after_pred(self): seen.add(('pred', self.learn.pred.dtype))
        def after_loss(self): seen.add(('loss', self.learn.loss.dtype))
        def before_step(self): seen.add(('grad', self.learn.model.head.weight.grad.dtype))
    learn = make(fp16=True, cbs=Dtypes())
    assert learn.fp16 and not learn.bf16
    hook = learn.model.mid.register_forward_hook(lambda m, i, o: seen.add(('mid', o.dtype)))
    learn.fit_one_cycle(4, lr=3e-2)
    hook.remove()
    assert seen == {('mid', torch.float16), ('pred', torch.float32), ('loss', torch.float32), ('grad', torch.float32)}
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    h = learn.recorder.history
    assert h.valid_loss.iloc[-1] < h.valid_loss.iloc[0] / 5, h
    assert 0 <= learn.fp16_skipped < 16                 # the scaler settles from 2**16 in a few skipped steps
    assert not torch.is_autocast_enabled('cpu')


def test_fp16_and_bf16_refused_together():
    with pytest.raises(FitlamError, match='bf16=True and fp16=True: choose one'): make(fp16=True, bf16=True)
    learn = make(bf16=True)
    with pytest.raises(FitlamError, match='bf16=True and fp16=True'): learn.to_fp16()
    with pytest.raises(FitlamError, match='bf16=True and fp16=True'): make(fp16=True).bf16 = True
    assert learn.to_fp32().to_fp16() is learn and learn.fp16 and not learn.bf16
    assert not learn.to_fp32().fp16 and learn.steps.scaler is None


def test_to_fp16_scaler_arguments():
    learn = make().to_fp16(init_scale=8., growth_interval=3)
    assert learn.fp16 and learn.steps.scaler.get_scale() == 8.
    learn.fit(1)
    assert learn.steps.scaler.get_scale() > 8.            # 8 steps without overflow: grown every 3
    with pytest.raises(TypeError): make().to_fp16(init_scal=8.)


def test_fp16_overflow_is_skipped_and_counted_not_divergence():
    learn = make(model=mlp, opt_func=sgd, cbs=InfGrad(at=[2, 5])).to_fp16(init_scale=2. ** 8)     # low enough never to overflow here
    scale = learn.steps.scaler.get_scale()
    trace = []
    class Trace(Callback):
        def after_step(self): trace.append(self.learn.train_iter)
    before = []
    class Snap(Callback):
        order = -10
        def before_batch(self):
            if self.learn.training and self.learn.train_iter in (2, 5): before.append(weights(self.learn))
        def after_batch(self):
            if self.learn.training and self.learn.train_iter in (2, 5): assert_close(weights(self.learn), before[-1], eps=0)   # unchanged
    learn.fit(1, cbs=[Trace(), Snap()])
    assert learn.fp16_skipped == 2 and len(before) == 2
    assert 2 not in trace and 5 not in trace and len(trace) == 6
    assert learn.steps.scaler.get_scale() == scale / 4
    # in float32 the same infinite gradient is divergence
    with pytest.raises(TrainingDiverged, match='the gradient of batch 3/8'): make(model=mlp, cbs=InfGrad(at=[2])).fit(1)


def test_fp16_overflow_before_clipping_and_clip_sees_unscaled_gradients():
    clip = GradientClip(1e9)
    norms = []
    class Norm(Callback):
        order = 1
        def before_step(self): norms.append(float(clip.last_norm))
    a, b = make(model=mlp, opt_func=sgd, cbs=[clip, Norm()]), make(model=mlp, opt_func=sgd, fp16=True)
    a.fit(1); n32 = list(norms); norms.clear()
    b.add_cbs([clip, Norm()]); b.to_fp16(init_scale=2. ** 10); b.fit(1)
    assert len(norms) == len(n32) == 8
    np.testing.assert_allclose(norms[:2], n32[:2], rtol=0.05)       # the unscaled norm, not 2**10 times it


def test_many_skips_in_a_row_warn():
    learn = make(model=mlp, cbs=InfGrad(at=range(12))).to_fp16(init_scale=2. ** 8)
    with pytest.warns(RuntimeWarning, match=r'fp16: the last 10 optimizer steps were skipped'): learn.fit(2)
    assert learn.fp16_skipped == 12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        learn = make(model=mlp, cbs=InfGrad(at=range(0, 16, 2))).to_fp16(init_scale=2. ** 8)
        learn.fit(2)                                   # 8 skips, never 10 in a row: no warning
    assert learn.fp16_skipped == 8 and not [w for w in caught if 'fp16' in str(w.message)]


def test_fp16_nonfinite_loss_is_still_divergence():
    class NanLoss(Callback):
        def after_loss(self):
            if self.learn.training and self.learn.train_iter == 3: self.learn.loss = self.learn.loss * float('nan')
    with pytest.raises(TrainingDiverged, match='the loss of batch 4/8'): make(fp16=True, cbs=NanLoss()).fit(1)


class Kill(Callback):
    def __init__(self, epoch): self.epoch = epoch
    def after_batch(self):
        if self.learn.training and self.learn.epoch == self.epoch and self.learn.iter == 3: raise KeyboardInterrupt('killed')


def fp16_run(tmp_path, seed=0, cbs=(), **fit_kwargs):
    "fit_one_cycle(3) in fp16, a scale growing every 3 steps and overflows injected in every epoch: the scaler's state matters."
    learn = make(seed, model=mlp, fp16=True, path=tmp_path, cbs=InfGrad(at=[1, 9, 10, 17]))
    learn.to_fp16(init_scale=2. ** 12, growth_interval=3)
    learn.fit_one_cycle(3, lr=1e-2, cbs=list(cbs), **fit_kwargs)
    return learn


def test_fp16_kill_and_resume_is_exact(tmp_path):
    whole = fp16_run(tmp_path)
    ck = tmp_path / 'fp16.ckpt'
    with pytest.raises(KeyboardInterrupt): fp16_run(tmp_path, cbs=[Kill(2)], checkpoint=ck)
    resumed = fp16_run(tmp_path, seed=99, resume=ck)
    assert_close(weights(resumed), weights(whole), eps=0)
    assert resumed.steps.scaler.state_dict() == whole.steps.scaler.state_dict()
    assert resumed.fp16_skipped == whole.fp16_skipped == 4
    assert resumed.recorder.losses == whole.recorder.losses
    # a checkpoint of an fp16 fit does not resume a float32 one (nor the reverse)
    with pytest.raises(FitlamError, match=r'fp16: True in the checkpoint, None in this call'):
        make(model=mlp, path=tmp_path).fit_one_cycle(3, lr=1e-2, resume=ck)


def test_fp16_lr_find_puts_the_loss_scale_back():
    learn = make(fp16=True, model=mlp)
    learn.fit(1)
    state = learn.steps.scaler.state_dict()
    learn.lr_find(num_it=20)
    assert learn.steps.scaler.state_dict() == state


# -- gradient accumulation ------------------------------------------------------------------------------
class Batches:
    "Batches of the given sizes over fixed rows, in order: `sizes` per epoch."
    def __init__(self, x, y, sizes): self.x, self.y, self.sizes = x, y, list(sizes)
    def __len__(self): return len(self.sizes)
    def __iter__(self):
        pos = 0
        for n in self.sizes: yield self.x[pos:pos + n], self.y[pos:pos + n]; pos += n


class Data:
    def __init__(self, train_dl, valid_dl=None): self.train_dl, self.valid_dl = train_dl, valid_dl


def rows(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, generator=g) * 4 - 2
    return x, torch.sin(2 * x) + 0.1 * torch.randn(n, 1, generator=g)


def accum_pair(small, large, k, method='fit_one_cycle', n_epoch=2, **kwargs):
    "The same rows in batches `small` with `accum_steps=k`, and in batches `large` (each the union of k small ones) without."
    x, y = rows(sum(small))
    out = []
    for sizes, steps in ((small, k), (large, 1)):
        learn = make(model=mlp, data=Data(Batches(x, y, sizes)), accum_steps=steps, **kwargs)
        getattr(learn, method)(n_epoch, lr=3e-2)
        out.append(learn)
    return out


@pytest.mark.parametrize('opt', ['adam', 'sgd'])
def test_accumulation_equals_the_large_batch(opt):
    "13 batches of 8 (the last of 4) in groups of 4: the large batches are 32, 32, 32, 8 (the last group of one short batch steps too)."
    kw = {} if opt == 'adam' else dict(opt_func=sgd)
    acc, big = accum_pair([8] * 12 + [4], [32, 32, 32, 4], 4, **kw)
    assert_close(weights(acc), weights(big))
    assert len(acc.recorder.lrs) == 26 and len(big.recorder.lrs) == 8
    steps = [i for i in range(26) if i % 13 % 4 == 3 or i % 13 == 12]      # the batches that step
    np.testing.assert_allclose([acc.recorder.lrs[i] for i in steps], big.recorder.lrs, rtol=1e-12)
    np.testing.assert_allclose([acc.recorder.moms[i] for i in steps], big.recorder.moms, rtol=1e-12)
    assert acc.steps.done == acc.steps.total == 8


def test_accumulation_weights_uneven_batches_by_their_size():
    "Groups of 3 batches of unequal sizes (5, 3, 9 / 2, 7, 1 / 6): each step is the mean over its samples, as one batch of them."
    acc, big = accum_pair([5, 3, 9, 2, 7, 1, 6], [17, 10, 6], 3, method='fit_stlr', opt_func=sgd)
    assert_close(weights(acc), weights(big))


def test_accumulation_of_one_changes_nothing():
    a, b = make(model=mlp), make(model=mlp, accum_steps=1)
    a.fit_one_cycle(2); b.fit_one_cycle(2, accum_steps=1)
    assert_close(weights(a), weights(b), eps=0)


def test_accumulation_with_fp16_and_clipping():
    "fp16 and accumulation together: the gradients unscaled once per group, clipped as the large batch's."
    x, y = rows(64)
    out = []
    for sizes, k in (([8] * 8, 4), ([32, 32], 1)):
        learn = make(model=mlp, data=Data(Batches(x, y, sizes)), accum_steps=k, fp16=True, opt_func=sgd, cbs=GradientClip(0.5))
        learn.to_fp16(init_scale=2. ** 8)
        learn.fit(3, lr=1e-2)
        out.append(learn)
    assert out[0].fp16_skipped == out[1].fp16_skipped == 0
    assert_close(weights(out[0]), weights(out[1]), eps=2e-3)        # fp16's rounding differs between 8 and 32 rows


def test_gradient_accumulation_callback_counts_samples():
    x, y = rows(64)
    a = make(model=mlp, data=Data(Batches(x, y, [8] * 8)), cbs=GradientAccumulation(n_acc=32))
    a.data.train_dl.bs = 8
    a.fit(1)
    b = make(model=mlp, data=Data(Batches(x, y, [32, 32])))
    b.fit(1)
    assert_close(weights(a), weights(b))
    with pytest.raises(FitlamError, match=r'n_acc=20\): not a multiple of the batch size 8.*n_acc=16 \(or accum_steps=2\)'):
        a.fit(1, cbs=GradientAccumulation(20))
    with pytest.raises(FitlamError, match=r'accum_steps=2 and the GradientAccumulation callbacks ask for \[2, 4\]'): a.fit(1, accum_steps=2)
    a.data.train_dl.bs = None
    with pytest.raises(FitlamError, match='has no batch size .bs'): a.fit(1)


@pytest.mark.parametrize('bad', [0, -2, 1.5, True, '4', None])
def test_bad_accum_steps_refused(bad):
    if bad is None:
        with pytest.raises(FitlamError, match='n_acc=0'): GradientAccumulation(0)
        return
    with pytest.raises(FitlamError, match=r'accum_steps=.*expected a whole number of batches per optimizer step'): make(accum_steps=bad)
    with pytest.raises(FitlamError, match='accum_steps='): make().fit(1, accum_steps=bad)
    learn = make()
    with pytest.raises(FitlamError, match='accum_steps='): learn.accum_steps = bad


def test_accumulation_kill_and_resume_is_exact(tmp_path):
    def run(seed=0, cbs=(), **kwargs):
        learn = make(seed, model=mlp, path=tmp_path, accum_steps=3)     # 8 batches per epoch: groups of 3, 3, 2
        learn.fit_one_cycle(3, lr=1e-2, cbs=list(cbs), **kwargs)
        return learn
    whole, ck = run(), tmp_path / 'acc.ckpt'
    with pytest.raises(KeyboardInterrupt): run(cbs=[Kill(1)], checkpoint=ck)
    resumed = run(seed=5, resume=ck)
    assert_close(weights(resumed), weights(whole), eps=0)
    assert resumed.recorder.lrs == whole.recorder.lrs
    with pytest.raises(FitlamError, match='accum_steps: 3 in the checkpoint, None in this call'):
        make(model=mlp, path=tmp_path).fit_one_cycle(3, lr=1e-2, resume=ck)


def test_min_steps_counts_optimizer_steps():
    learn = make(accum_steps=4)                   # 8 batches per epoch: 2 steps
    hist = learn.fine_tune(1, lr=1e-2, stages=[3], min_steps=5, verbose=False)
    assert len(hist) == 3


# -- a BPT3C classifier ---------------------------------------------------------------------------------
def clas_learner(bs, k, no_bn=True):
    from fitlam.data import TextClasDataBunch
    from fitlam.text_learner import text_classifier_learner
    df = synth_corpus(42, seed=3)
    data = TextClasDataBunch.from_texts(df.text[:36].tolist(), df.label[:36].tolist(), df.text[36:].tolist(), df.label[36:].tolist(),
                                        bs=bs, seed=3, progress=False, n_workers=0)
    data.train_dl.shuffle, data.train_dl.drop_last = False, False      # longest first: a batch of k*bs is k batches of bs
    torch.manual_seed(0)
    learn = text_classifier_learner(data, AWDLSTMConfig(**TINY_AWD), drop_mult=0., bptt=5, max_len=15, ps=[0.], lr=1e-2,
                                    progress=False, accum_steps=k, device='cpu')
    for i, m in enumerate(learn.model.head if no_bn else []):      # batch norm's statistics are the batch's: not the same over 4 rows as over 12
        if isinstance(m, nn.BatchNorm1d): learn.model.head[i] = nn.Identity()
    return learn


def test_accumulation_bpt3c_classifier_equals_the_large_batch():
    acc, big = clas_learner(4, 3), clas_learner(12, 1)
    assert len(acc.data.train_dl) == 9 and len(big.data.train_dl) == 3
    acc.fit_one_cycle(2); big.fit_one_cycle(2)
    assert_close(weights(acc), weights(big))
    np.testing.assert_allclose(acc.recorder.history.train_loss, big.recorder.history.train_loss, rtol=1e-6)


def test_fp16_classifier_trains_and_exports_float32(tmp_path):
    "The AWD-LSTM classifier under fp16 autocast: it trains; the export holds float32 weights and load_learner predicts as the float32 learner."
    from fitlam.text_learner import load_learner
    learn = clas_learner(4, 1, no_bn=False).to_fp16()
    learn.fit(2)
    assert learn.fp16 and all(p.dtype == torch.float32 for p in learn.model.parameters())
    state = torch.load(learn.export(tmp_path / 'fp16.pth'), weights_only=True)
    tensors = [v for v in state.values() if torch.is_tensor(v)] + [v for d in state.values() if isinstance(d, dict) for v in d.values() if torch.is_tensor(v)]
    assert tensors and all(t.dtype in (torch.float32, torch.int64) for t in tensors), {t.dtype for t in tensors}
    loaded = load_learner(tmp_path / 'fp16.pth')
    assert not loaded.fp16 and all(p.dtype == torch.float32 for p in loaded.model.parameters())
    texts = ['the cat sat on the mat', 'stocks fell sharply today']
    torch.testing.assert_close(loaded.predict_proba(texts), learn.to_fp32().predict_proba(texts), atol=1e-6, rtol=1e-6)


# -- under DDP (2 CPU processes, gloo) ----------------------------------------------------------------------
class CountSyncs(Callback):
    "Count DDP's gradient all-reduces (one per bucket per synced backward pass), through a comm hook on the wrapped model."
    order = 53                  # after DistributedTrainer (52) has wrapped the model
    def before_fit(self):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        self.calls = []
        def hook(state, bucket):
            self.calls.append(self.learn.train_iter)
            return allreduce_hook(None, bucket)
        self.learn.model.register_comm_hook(None, hook)


def ddp_accumulation():
    "Uneven batches (5, 3, 9 / 2, 7, 1 / 6) in groups of 3 under DDP: rank 1 trains a placeholder for the batch of 1."
    from fitlam.distributed import distributed
    x, y = rows(33)
    learn = make(model=mlp, data=Data(Batches(x, y, [5, 3, 9, 2, 7, 1, 6])), accum_steps=3, opt_func=sgd)
    counter = CountSyncs()
    with distributed(learn): learn.fit_stlr(2, lr=3e-2, cbs=counter)
    return weights(learn), sorted(set(counter.calls))


def test_accumulation_under_ddp_equals_the_large_batch():
    from fitlam.distributed import launch
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('FITLAM_DEVICE', 'cpu')
        ranks = launch(ddp_accumulation, nprocs=2, threads=1, timeout=120)
    x, y = rows(33)
    big = make(model=mlp, data=Data(Batches(x, y, [17, 10, 6])), opt_func=sgd)
    big.fit_stlr(2, lr=3e-2)
    for w, syncs in ranks:
        assert_close(w, weights(big), eps=1e-5)
        assert syncs == [2, 5, 6, 9, 12, 13]          # the gradients cross the ranks only on the batches that step (no_sync otherwise)


def test_float32_casts_half_predictions_only():
    "Under autocast the prediction reaches the loss in float32: tensors, tuples, NamedTuples and the LM's `DecoderInput`; ids and float64 untouched."
    from typing import NamedTuple
    from fitlam.learner import _float32
    from fitlam.models.kernels import DecoderInput
    class Pair(NamedTuple):
        logits: torch.Tensor
        ids: torch.Tensor
    half, ids = torch.ones(2, 3, dtype=torch.float16), torch.arange(3)
    out = _float32(Pair(half, ids))
    assert isinstance(out, Pair) and out.logits.dtype == torch.float32 and out.ids is ids
    assert [t.dtype for t in _float32([half.bfloat16(), half.double()])] == [torch.float32, torch.float64]
    dec = _float32(DecoderInput(half, torch.ones(5, 3), None))
    assert isinstance(dec, DecoderInput) and dec.hidden.dtype == torch.float32 and dec.bias is None


def test_fp16_overflow_in_an_accumulated_group_skips_the_group():
    "Groups of 3 batches (3, 3, 2 per epoch): an infinite gradient in batch 4 skips the second group's step, whose batches changed nothing."
    snaps = {}
    class Snap(Callback):
        def after_batch(self):
            if self.learn.training: snaps[self.learn.train_iter] = weights(self.learn)
    learn = make(model=mlp, accum_steps=3, cbs=[InfGrad(at=[4]), Snap()]).to_fp16(init_scale=2. ** 8)
    learn.fit(2)
    assert learn.fp16_skipped == 1 and learn.steps.done == 6
    assert_close(snaps[5], snaps[2], eps=0)                                  # the group of batches 3-5 did not step
    with pytest.raises(AssertionError): assert_close(snaps[2], snaps[1], eps=0)    # the first group did
    assert all(torch.isfinite(v).all() for v in weights(learn).values())
