"The learner end to end on the tiny regression task: event order, schedules, discriminative LRs, freezing, lr_find, kill-and-resume, plots."
import math, signal, subprocess, sys, textwrap
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import pytest
import torch
import torch.nn.functional as F

from fitlam.core import FitlamError
from fitlam.callback import Callback, CancelBatchException
from fitlam.training import EarlyStopping, GradientClip, RNNRegularizer
from fitlam.learner import Learner
from fitlam.optimizer import discriminative_lrs, ulmfit_adam
from fitlam.metrics import Accuracy, F1Macro
from fitlam.schedule import GradualUnfreezing
from fitlam.testing import TinyNet, synth_regression

ROOT = Path(__file__).resolve().parent.parent


def make_learner(seed=0, data=None, model=None, **kwargs):
    torch.manual_seed(seed)
    return Learner(data or synth_regression(seed=0), model or TinyNet(), kwargs.pop('loss_func', F.mse_loss),
                   **{'lr': 1e-2, 'progress': False, **kwargs})


def classification_data(n_valid=33):
    "The regression task turned into 2 classes (is y above 3?), with a validation set of uneven batches."
    data = synth_regression(n_valid=n_valid)
    for dl in (data.train_dl, data.valid_dl): dl.y = (dl.y > 3).long().squeeze(1)
    return data


class EventLog(Callback):
    "Record every event; cancel the first training batch of epoch 1 after its loss."
    def __init__(self): self.events = []
    def __call__(self, event):
        self.events.append(event)
        if event == 'after_loss' and self.learn.training and self.learn.epoch == 1 and self.learn.iter == 0:
            raise CancelBatchException()


def test_cancelled_batch_does_not_step():
    class CancelAll(Callback):
        def before_step(self): raise CancelBatchException()
    learn = make_learner()
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1, cbs=CancelAll())
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))


def test_fit_callbacks_removed_after_error_and_error_unchanged():
    class Boom(Callback):
        def before_batch(self):
            if self.learn.train_iter == 2: raise KeyError('the real error')
    learn, boom = make_learner(), Boom()
    cbs_before = list(learn.cbs)
    with pytest.raises(KeyError, match='the real error') as info:
        learn.fit(2, cbs=boom)
    assert info.type is KeyError and info.value.__cause__ is None
    assert learn.cbs == cbs_before and boom not in learn.cbs
    learn.fit(1)                                  # and the learner still trains
    assert len(learn.recorder.history) == 1


def test_stlr_equals_eq3_every_step():
    "fit_stlr over T = 20 batches (2 epochs of 10): the LRs the optimizer used are the paper's eq. 3 at every step."
    learn = make_learner(data=synth_regression(n_train=160, bs=16))
    learn.fit_stlr(2, lr=0.01, cut_frac=0.1, ratio=32)
    T, cut = 20, 2
    def eq3(t):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / 0.1 - 1))
        return 0.01 * (1 + p * (32 - 1)) / 32
    used = [lrs[-1] for lrs in learn.recorder.lrs]
    assert len(used) == T
    assert used == pytest.approx([eq3(t) for t in range(T)], rel=1e-12)
    assert max(used) == pytest.approx(0.01) and used.index(max(used)) == cut
    assert min(used) == pytest.approx(0.01 / 32)


def test_one_cycle_against_formula():
    learn = make_learner()
    learn.fit_one_cycle(3, lr=0.1)
    T = 3 * len(learn.data.train_dl)
    t1 = 0.25 * T
    def formula(t):
        if t < t1: return 0.1 / 25 + (0.1 - 0.1 / 25) * (1 - math.cos(math.pi * t / t1)) / 2
        return 0.1 / 1e5 + (0.1 - 0.1 / 1e5) * (1 + math.cos(math.pi * (t - t1) / (T - t1))) / 2
    assert [lrs[-1] for lrs in learn.recorder.lrs] == pytest.approx([formula(t) for t in range(T)], rel=1e-12)
    def mom(t):
        if t < t1: return 0.95 + (0.85 - 0.95) * (1 - math.cos(math.pi * t / t1)) / 2
        return 0.95 + (0.85 - 0.95) * (1 + math.cos(math.pi * (t - t1) / (T - t1))) / 2
    assert [m[0] for m in learn.recorder.moms] == pytest.approx([mom(t) for t in range(T)], rel=1e-12)


def test_per_group_lrs_in_ratio_2_6():
    assert discriminative_lrs(1e-2, 3) == pytest.approx([1e-2 / 2.6 ** 2, 1e-2 / 2.6, 1e-2])
    for fit in ('fit', 'fit_stlr', 'fit_one_cycle'):
        learn = make_learner()
        getattr(learn, fit)(1, lr=1e-2, lr_factor=2.6)
        assert learn.lrs == pytest.approx([1e-2 / 2.6 ** 2, 1e-2 / 2.6, 1e-2])
        for lrs in learn.recorder.lrs:
            assert [lrs[1] / lrs[0], lrs[2] / lrs[1]] == pytest.approx([2.6, 2.6]), fit


def test_gradual_unfreezing_pattern():
    seen = []
    class Pattern(Callback):
        order = 20
        def before_train(self): seen.append([any(p.requires_grad for p in g if p.dim() > 1) for g in self.learn.layer_groups])
    learn = make_learner()
    learn.freeze()
    learn.fit_one_cycle(3, cbs=[GradualUnfreezing(), Pattern()])
    assert seen == [[False, False, True], [False, True, True], [True, True, True]]


def test_gradual_unfreezing_every_two_epochs():
    seen = []
    class Pattern(Callback):
        order = 20
        def before_train(self): seen.append(self.learn.frozen_idx)
    make_learner().fit(5, cbs=[GradualUnfreezing(start=1, every=2), Pattern()])
    assert seen == [2, 2, 1, 1, 0]


def test_lr_find_restores_everything():
    learn = make_learner()
    learn.fit(1)
    weights = {k: v.clone() for k, v in learn.model.state_dict().items()}
    exp_avg = {k: v['exp_avg'].clone() for k, v in learn.opt.state_dict()['state'].items()}
    rng = torch.get_rng_state()
    res = learn.lr_find(num_it=50)
    assert all(torch.equal(v, weights[k]) for k, v in learn.model.state_dict().items())
    assert all(torch.equal(v['exp_avg'], exp_avg[k]) for k, v in learn.opt.state_dict()['state'].items())
    assert torch.equal(torch.get_rng_state(), rng)
    assert 0 < len(res.lrs) <= 50 and res.lrs[0] == pytest.approx(1e-7)
    assert set(res.suggestions) == {'valley', 'steep'} and all(1e-7 <= v <= 10 for v in res.suggestions.values())


# A script run in subprocesses: a fit that SIGKILLs itself in the middle of epoch 2 of 3, then resumes.
RESUME_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch, torch.nn.functional as F
    from fitlam.callback import Callback
    from fitlam.training import EarlyStopping
    from fitlam.learner import Learner
    from fitlam.testing import TinyNet, synth_regression
    mode, ckpt, out = sys.argv[1:4]

    class DropNet(TinyNet):
        def forward(self, x): return self.head(F.dropout(self.mid(self.body(x)), 0.2, self.training))

    class SigKill(Callback):
        def after_batch(self):
            if self.learn.training and self.learn.epoch == 2 and self.learn.iter == 3: os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(7 if mode == 'resume' else 0)      # a resumed run starts from other weights and RNG state
    stop = EarlyStopping(patience=5)
    learn = Learner(synth_regression(seed=0), DropNet(), F.mse_loss, progress=False)
    learn.freeze_to(-2)
    cbs = [stop, SigKill()] if mode == 'killed' else [stop]
    kwargs = dict(checkpoint=ckpt) if mode == 'killed' else dict(resume=ckpt) if mode == 'resume' else {}
    learn.fit_one_cycle(3, lr=1e-2, cbs=cbs, **kwargs)
    torch.save(dict(model=learn.model.state_dict(), best=stop.best, losses=learn.recorder.losses,
                    history=learn.recorder.history.drop(columns='time').values.tolist()), out)
''')


def test_kill_and_resume_is_bit_equal(tmp_path):
    script = tmp_path / 'run.py'
    script.write_text(RESUME_SCRIPT)
    ckpt = tmp_path / 'fit.ckpt'
    def run(mode):
        return subprocess.run([sys.executable, str(script), mode, str(ckpt), str(tmp_path / f'{mode}.pt')],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
    full = run('full')
    assert full.returncode == 0, full.stderr
    killed = run('killed')
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert ckpt.exists() and not (tmp_path / 'killed.pt').exists()
    resumed = run('resume')
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / 'full.pt', weights_only=True)
    b = torch.load(tmp_path / 'resume.pt', weights_only=True)
    for k, v in a['model'].items(): assert torch.equal(v, b['model'][k]), k
    assert a['best'] == b['best'] and a['losses'] == b['losses'] and a['history'] == b['history']


def test_truncated_and_foreign_checkpoints(tmp_path):
    learn = make_learner(path=tmp_path)
    ckpt = tmp_path / 'fit.ckpt'
    learn.fit(2, checkpoint=ckpt)
    truncated = tmp_path / 'truncated.ckpt'
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(FitlamError, match='truncated.ckpt: not a readable checkpoint'):
        make_learner().fit(2, resume=truncated)
    with pytest.raises(FitlamError, match='truncated.ckpt: not a readable checkpoint'):
        make_learner().load(truncated)
    evil = tmp_path / 'evil.pth'
    torch.save({'format': 'fitlam.model', 'model': {}, 'code': print}, evil)    # a pickled function: refused
    with pytest.raises(FitlamError, match='evil.pth: not a readable checkpoint'):
        make_learner().load(evil)
    plain = tmp_path / 'plain.pth'
    torch.save(learn.model.state_dict(), plain)
    with pytest.raises(FitlamError, match="expected a fitlam.model or fitlam.checkpoint file"):
        make_learner().load(plain)


def test_save_load_round_trip(tmp_path):
    learn = make_learner(path=tmp_path, metrics=Accuracy(), data=classification_data(), model=TinyNet(n_out=2),
                         loss_func=F.cross_entropy)
    learn.fit_one_cycle(2)
    file = learn.save('model')
    other = make_learner(seed=5, path=tmp_path, metrics=Accuracy(), data=classification_data(), model=TinyNet(n_out=2),
                         loss_func=F.cross_entropy).load('model')
    assert other.validate() == learn.validate()
    assert file == tmp_path / 'models' / 'model.pth'
    model_only = learn.save(tmp_path / 'w.pth', with_opt=False)
    assert 'opt' not in torch.load(model_only, weights_only=True)


def test_seeded_runs_are_reproducible():
    a, b = make_learner(), make_learner()
    a.fit_one_cycle(2); b.fit_one_cycle(2)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
    assert a.recorder.losses == b.recorder.losses


def test_metrics_over_whole_validation_set():
    data = classification_data(n_valid=33)          # batches of 16, 16 and 1
    learn = make_learner(data=data, model=TinyNet(n_out=2), loss_func=F.cross_entropy, metrics=[Accuracy(), F1Macro()])
    learn.fit_one_cycle(2, lr=3e-2)
    preds, targs = learn.get_preds()
    assert torch.equal(targs, data.valid_dl.y)
    acc = (preds.argmax(1) == targs).float().mean().item()
    res = learn.validate()
    assert res['accuracy'] == pytest.approx(acc)
    assert res['valid_loss'] == pytest.approx(F.cross_entropy(preds.log(), targs).item(), rel=1e-5)
    assert learn.recorder.history.columns.tolist() == ['epoch', 'train_loss', 'valid_loss', 'accuracy', 'f1_macro', 'time']


def test_learns_a_learnable_task_with_the_ulmfit_recipe():
    data = classification_data(n_valid=64)
    learn = make_learner(data=data, model=TinyNet(n_out=2), loss_func=F.cross_entropy, metrics=Accuracy(),
                         opt_func=ulmfit_adam)
    hist = learn.fine_tune(epochs=3, lr=3e-2, verbose=False)
    assert hist.stage.tolist() == [1, 2, 3, 3, 3]
    assert hist.accuracy.iloc[-1] > 0.75, hist          # chance is about 0.5; seeds 0-9 end at 0.92-1.0


def test_rnn_regularizer_and_clipping_together():
    class ToyRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head, self.last_rnn_outputs = torch.nn.LSTM(1, 8, batch_first=True), torch.nn.Linear(8, 1), None
        def forward(self, x):
            raw, _ = self.rnn(x.unsqueeze(1).repeat(1, 4, 1))
            dropped = F.dropout(raw, 0.3, self.training)
            self.last_rnn_outputs = (raw, dropped) if self.training else None
            return self.head(dropped[:, -1])
    added = []
    class Spy(Callback):
        order = 6
        def after_loss(self):
            if self.learn.training: added.append(float(self.learn.loss_grad.detach() - self.learn.loss))
    learn = make_learner(model=ToyRNN(), cbs=[RNNRegularizer(), GradientClip(0.5), Spy()])
    learn.fit_one_cycle(3, lr=3e-2)
    assert len(added) == 3 * len(learn.data.train_dl) and all(a > 0 for a in added)
    h = learn.recorder.history
    assert h.valid_loss.iloc[-1] < h.valid_loss.iloc[0]


def test_bf16_trains_on_cpu():
    learn = make_learner(bf16=True, device='cpu')
    learn.fit_one_cycle(4, lr=3e-2)
    h = learn.recorder.history
    assert h.valid_loss.iloc[-1] < h.valid_loss.iloc[0] / 10
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())


def test_bad_arguments_name_what_is_wrong():
    with pytest.raises(FitlamError, match='data: expected an object with .train_dl and .valid_dl'):
        Learner(object(), TinyNet(), F.mse_loss)
    with pytest.raises(FitlamError, match='lr: got 2 learning rates for 3 layer groups'):
        make_learner(lr=[1e-3, 1e-2])
    with pytest.raises(FitlamError, match='no slice'):
        make_learner(lr=slice(1e-4, 1e-2))
    with pytest.raises(FitlamError, match='cbs: EarlyStopping is a class; pass an instance'):
        make_learner(cbs=EarlyStopping)
    with pytest.raises(FitlamError, match="monitor='f1' is not a column"):
        make_learner().fit(1, cbs=EarlyStopping(monitor='f1'))
