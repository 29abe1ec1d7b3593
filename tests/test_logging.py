"Logs written while training runs (CSV, JSON lines, TensorBoard) across kills and resumes; fastai's schedules and ReduceLROnPlateau, step by step."
import contextlib, io, math, signal, subprocess, sys, textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fitlam.core import FitlamError
from fitlam.callback import Callback, get_hyper
from fitlam.learner import Learner
from fitlam.metrics import Accuracy
from fitlam.schedule import sgdr_epochs
from fitlam.training import (CSVLogger, EarlyStopping, JSONLLogger, ReduceLROnPlateau, SaveBestModel, TensorBoardCallback,
                             read_log)
from fitlam.testing import TinyNet, synth_regression

ROOT = Path(__file__).resolve().parent.parent
N_ITER = 8                    # batches per epoch of synth_regression()


def make_learner(path, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Learner(synth_regression(seed=0), TinyNet(), F.mse_loss, **{'lr': 1e-2, 'progress': False, 'path': path, **kwargs})


def loggers():
    return [CSVLogger(), JSONLLogger(every_n_batches=3), TensorBoardCallback('tb', every_n_batches=2)]


def tb_scalars(folder) -> dict:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(folder)); acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


class Killed(Exception): pass

class Kill(Callback):
    "Stop the process's fit as a kill would: in epoch `epoch`, after batch `batch`, or (batch None) after the loggers wrote the epoch's row but before its checkpoint."
    order = 500               # after the loggers (56), before the checkpoint (1000)
    def __init__(self, epoch, batch=None): self.epoch, self.batch = epoch, batch
    def after_batch(self):
        if self.learn.training and self.learn.epoch == self.epoch and self.learn.iter == self.batch: raise Killed()
    def after_epoch(self):
        if self.batch is None and self.learn.epoch == self.epoch: raise Killed()


def check_logs(path, learn, ref_path):
    "The logs in `path` hold `learn`'s history once per epoch, and the same numbers as the uninterrupted run's logs in `ref_path`."
    h = learn.recorder.history
    for name in ('history.csv', 'history.jsonl'):
        pd.testing.assert_frame_equal(read_log(path / name), h, check_exact=True)
        pd.testing.assert_frame_equal(read_log(path / name).drop(columns='time'), read_log(ref_path / name).drop(columns='time'), check_exact=True)
    pd.testing.assert_frame_equal(read_log(path / 'history.jsonl', kind='batch'), read_log(ref_path / 'history.jsonl', kind='batch'), check_exact=True)
    assert (path / 'history.csv').read_text().count('epoch,') == 1                                  # one header
    s = tb_scalars(path / 'tb')
    assert s == tb_scalars(ref_path / 'tb')                                                        # the killed run's extra steps purged
    assert [v for _, v in s['epoch/valid_loss']] == [float(np.float32(v)) for v in h.valid_loss]   # TensorBoard keeps float32


@pytest.mark.parametrize('kill_at', [(2, None), (2, 4), (0, None)], ids=['after-row-before-checkpoint', 'mid-epoch', 'first-epoch'])
def test_killed_fit_resumes_its_logs(tmp_path, kill_at):
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    full = make_learner(ref, metrics=[Accuracy()])
    full.fit_one_cycle(4, cbs=loggers())
    ck = run / 'fit.ckpt'
    with pytest.raises(Killed):
        make_learner(run, metrics=[Accuracy()]).fit_one_cycle(4, cbs=[*loggers(), Kill(*kill_at)], checkpoint=ck)
    if kill_at[0] == 0: assert not ck.exists(); return                   # nothing to resume: a fresh fit starts the files afresh
    assert len(read_log(run / 'history.csv')) == kill_at[0] + (kill_at[1] is None)     # the row of the epoch the checkpoint missed is there
    learn = make_learner(run, seed=5, metrics=[Accuracy()])
    learn.fit_one_cycle(4, cbs=loggers(), checkpoint=ck, resume=ck)
    check_logs(run, learn, ref)
    pd.testing.assert_frame_equal(learn.recorder.history.drop(columns='time'), full.recorder.history.drop(columns='time'), check_exact=True)


KILL_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch, torch.nn.functional as F
    from fitlam.callback import Callback
    from fitlam.learner import Learner
    from fitlam.metrics import Accuracy
    from fitlam.training import CSVLogger, JSONLLogger, TensorBoardCallback
    from fitlam.testing import TinyNet, synth_regression

    class SigKill(Callback):
        order = 500              # the loggers have written epoch 1's row; its checkpoint is not written
        def after_epoch(self):
            if self.learn.epoch == 1: os.kill(os.getpid(), signal.SIGKILL)

    torch.manual_seed(0)
    learn = Learner(synth_regression(seed=0), TinyNet(), F.mse_loss, lr=1e-2, metrics=[Accuracy()], progress=False, path='.')
    cbs = [CSVLogger(), JSONLLogger(every_n_batches=3), TensorBoardCallback('tb', every_n_batches=2), SigKill()]
    learn.fit_one_cycle(4, cbs=cbs, checkpoint='fit.ckpt')
''')


def test_sigkilled_fit_resumes_its_logs(tmp_path):
    ref, run = tmp_path / 'ref', tmp_path / 'run'
    run.mkdir(parents=True)
    (run / 'run.py').write_text(KILL_SCRIPT)
    killed = subprocess.run([sys.executable, 'run.py'], capture_output=True, text=True, cwd=run, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert len(read_log(run / 'history.csv')) == 2                     # synced before the kill, one row past the checkpoint
    full = make_learner(ref, metrics=[Accuracy()])
    full.fit_one_cycle(4, cbs=loggers())
    learn = make_learner(run, seed=5, metrics=[Accuracy()])
    learn.fit_one_cycle(4, cbs=loggers(), checkpoint=run / 'fit.ckpt', resume=run / 'fit.ckpt')
    check_logs(run, learn, ref)


def test_resume_refuses_a_log_that_changed(tmp_path):
    ck = tmp_path / 'fit.ckpt'
    with pytest.raises(Killed): make_learner(tmp_path).fit(3, cbs=[CSVLogger(), Kill(1, 2)], checkpoint=ck)
    (tmp_path / 'history.csv').write_text('epoch,train_loss,valid_loss,time\n')      # cut by hand
    with pytest.raises(FitlamError, match='it was removed or cut since'): make_learner(tmp_path).fit(3, cbs=CSVLogger(), resume=ck)
    with pytest.raises(FitlamError, match='pass that file as fname='): make_learner(tmp_path).fit(3, cbs=CSVLogger('other.csv'), resume=ck)


def test_logs_over_stages_and_lr_find(tmp_path):
    learn = make_learner(tmp_path)
    csv_log, tb = CSVLogger(append=True), TensorBoardCallback('tb', every_n_batches=None)
    learn.add_cbs([csv_log, tb])
    learn.lr_find(num_it=10)                                            # its fit logs nothing
    assert not (tmp_path / 'history.csv').exists() and not (tmp_path / 'tb').exists()
    hist = learn.fine_tune(1, 1e-2, verbose=False)                      # three stages, one fit each
    pd.testing.assert_frame_equal(read_log(tmp_path / 'history.csv'), hist.drop(columns='stage'), check_exact=True)
    s = tb_scalars(tmp_path / 'tb')
    assert [step for step, _ in s['epoch/valid_loss']] == [N_ITER, 2 * N_ITER, 3 * N_ITER]     # the stages one after the other
    assert 'train/loss' not in s


def test_tensorboard_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torch.utils.tensorboard', None)
    with pytest.raises(FitlamError, match=r'pip install fitlam\[tensorboard\]'): TensorBoardCallback()


def test_jsonl_writes_strict_json(tmp_path):
    class NanValid(Callback):
        order = 52
        def after_epoch(self): self.learn.recorder.rows[-1]['valid_loss'] = float('nan')
    make_learner(tmp_path).fit(1, cbs=[NanValid(), JSONLLogger()])
    line = (tmp_path / 'history.jsonl').read_text().splitlines()[0]
    assert '"valid_loss": null' in line and 'NaN' not in line
    assert math.isnan(read_log(tmp_path / 'history.jsonl').valid_loss[0])


class LRLog(Callback):
    "Each training batch's LRs, read from the optimizer just before its step."
    order = 100
    def __init__(self): self.lrs = []
    def before_step(self): self.lrs.append(get_hyper(self.learn.opt, 'lr'))


def test_fit_flat_cos_lrs_every_step(tmp_path):
    learn, log = make_learner(tmp_path), LRLog()
    learn.fit_flat_cos(3, 1e-2, lr_factor=2.6, pct_start=0.5, div_final=100., cbs=log)
    base, T = [1e-2 / 2.6**2, 1e-2 / 2.6, 1e-2], 3 * N_ITER
    for t, lrs in enumerate(log.lrs):
        t1 = 0.5 * T
        frac = 1. if t < t1 else 0.01 + 0.99 * (1 + math.cos(math.pi * (t - t1) / (T - t1))) / 2
        np.testing.assert_allclose(lrs, [b * frac for b in base], rtol=1e-12)
    assert len(log.lrs) == T and learn.lrs == pytest.approx(base)
    assert get_hyper(learn.opt, 'lr') == pytest.approx(base)            # the optimizer's own LRs back after the fit


@pytest.mark.parametrize('n_cycles,cycle_len,cycle_mult', [(3, 1, 2), (2, 1, 1), (2, 2, 2)])
def test_fit_sgdr_lrs_every_step(tmp_path, n_cycles, cycle_len, cycle_mult):
    learn, log = make_learner(tmp_path), LRLog()
    lrs = [1e-3, 3e-3, 1e-2]
    learn.fit_sgdr(n_cycles, cycle_len, lrs, cycle_mult=cycle_mult, cbs=log)
    n_epoch = sgdr_epochs(n_cycles, cycle_len, cycle_mult)
    assert len(learn.recorder.history) == n_epoch and len(log.lrs) == n_epoch * N_ITER
    starts = np.cumsum([0] + [cycle_len * cycle_mult**i for i in range(n_cycles)])
    for t, got in enumerate(log.lrs):
        e = t / N_ITER
        i = max(j for j in range(n_cycles) if starts[j] <= e)
        frac = (1 + math.cos(math.pi * (e - starts[i]) / (starts[i + 1] - starts[i]))) / 2
        np.testing.assert_allclose(got, [l * frac for l in lrs], rtol=1e-12)
    assert [log.lrs[int(s) * N_ITER] for s in starts[:-1]] == [lrs] * n_cycles         # every restart at the maximum


def test_schedule_arguments_refused_before_anything_changes(tmp_path):
    learn = make_learner(tmp_path)
    before = list(learn.lrs)
    with pytest.raises(FitlamError, match="lr_max= is fastai's argument"): learn.fit_sgdr(2, 1, lr_max=1e-2)
    with pytest.raises(FitlamError, match='cycle_mult=0'): learn.fit_sgdr(2, 1, 1e-1, cycle_mult=0)
    with pytest.raises(FitlamError, match='pct_start=2'): learn.fit_flat_cos(1, 1e-1, pct_start=2)
    assert learn.lrs == before and learn.recorder.rows == []


class ScriptedValidLoss(Callback):
    order = 52                # after the recorder's row, before the trackers
    def __init__(self, values): self.values = values
    def after_epoch(self): self.learn.recorder.rows[-1]['valid_loss'] = self.values[self.learn.epoch]

PLATEAU = [3., 2., 2.5, 2.2, 1., 1.5, 1.6, 0.5]


def test_reduce_lr_on_plateau_resumes_exactly(tmp_path):
    def cbs(): return [ScriptedValidLoss(PLATEAU), ReduceLROnPlateau(patience=1, factor=3., verbose=False)]
    full, log = make_learner(tmp_path / 'a', lr_factor=2.), LRLog()
    full.fit(8, cbs=[*cbs(), log])
    k = [0, 0, 0, 1, 2, 2, 3, 4]              # reductions so far, each epoch (a reduction acts from the next epoch)
    np.testing.assert_allclose(log.lrs, [[b / 3**e for b in full.lrs] for e in k for _ in range(N_ITER)], rtol=1e-12)
    ck, log2 = tmp_path / 'fit.ckpt', LRLog()
    with pytest.raises(Killed): make_learner(tmp_path / 'b', lr_factor=2.).fit(8, cbs=[*cbs(), Kill(4, 2)], checkpoint=ck)
    learn = make_learner(tmp_path / 'b', seed=3, lr_factor=2.)
    learn.fit(8, cbs=[*cbs(), log2], checkpoint=ck, resume=ck)
    assert log2.lrs == log.lrs[4 * N_ITER:]                               # epochs 4-7 at the reduced LRs, exactly
    pd.testing.assert_frame_equal(learn.recorder.history.drop(columns='time'), full.recorder.history.drop(columns='time'), check_exact=True)


def test_trackers_say_what_they_did_after_a_resume(tmp_path):
    ck, out = tmp_path / 'fit.ckpt', io.StringIO()
    def cbs(): return [ScriptedValidLoss([3., 1., 2., 2.5, 2.7]), EarlyStopping(patience=3), SaveBestModel()]
    with pytest.raises(Killed), contextlib.redirect_stdout(out): make_learner(tmp_path).fit(5, cbs=[*cbs(), Kill(2, 1)], checkpoint=ck)
    assert out.getvalue() == ''
    with contextlib.redirect_stdout(out): make_learner(tmp_path, seed=2).fit(5, cbs=cbs(), resume=ck)
    assert out.getvalue().splitlines() == [
        'early stopping after epoch 4: valid_loss has not improved for 3 epoch(s); the best was 1 at epoch 1',
        f"best valid_loss 1 at epoch 1: saved to {tmp_path / 'models' / 'best.pth'}, and loaded back"]


def test_fastai_callback_names():
    from fitlam.all import EarlyStoppingCallback, SaveModelCallback, CSVLogger as C, ReduceLROnPlateau as R, TensorBoardCallback as T
    es = EarlyStoppingCallback('accuracy', np.greater, 0.01, 2, reset_on_fit=False)
    assert (es.monitor, es.lower_is_better, es.min_delta, es.patience, es.reset_on_fit) == ('accuracy', False, 0.01, 2, False)
    sm = SaveModelCallback('valid_loss', np.less, 0., 'm', 2, False, True)
    assert (sm.fname, sm.every_epoch, sm.at_end, sm.with_opt, sm.lower_is_better) == ('m', 2, False, True, True)
    rl = R('valid_loss', None, 0.1, 2, 5., 1e-6)
    assert (rl.min_delta, rl.patience, rl.factor, rl.min_lr) == (0.1, 2, 5., 1e-6)
    with pytest.raises(FitlamError, match="log_preds= is fastai's argument"): T(log_preds=True)
    with pytest.raises(FitlamError, match='unexpected arguments'): T(foo=1)
    assert C().fname == Path('history.csv')
