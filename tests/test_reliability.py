"""Faults and bad input, third round: what is not a plain file, weights of another class set, a diverged fit's buffers,
a command writing over its own input, Ctrl-C, a full disk. Each test names the silent wrong result or the lost work it
guards against; docs/reliability.md lists them with what fitlam does now."""
import os, signal, stat, subprocess, sys, threading, time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fitlam.callback import TrainingDiverged
from fitlam.cli import main
from fitlam.core import FitlamError, set_seed
from fitlam.data import TextClasDataBunch
from fitlam.learner import Learner
from fitlam.models.awdlstm import AWDLSTMConfig
from fitlam.text_learner import text_classifier_learner
from fitlam.testing import TINY_AWD, TinyNet, synth_corpus, synth_regression

TINY = AWDLSTMConfig(**TINY_AWD)
TINY_ARGS = ['--emb', '16', '--hid', '24', '--layers', '2', '--min-freq', '1']
CLI = [sys.executable, '-c', 'import sys; from fitlam.cli import cli; sys.exit(cli())']


@pytest.fixture(scope='module')
def task(tmp_path_factory):
    "A synthetic task's train/valid CSVs and a tiny classifier exported from them."
    tmp = tmp_path_factory.mktemp('task')
    synth_corpus(240, seed=0).to_csv(tmp/'train.csv', index=False); synth_corpus(60, seed=1).to_csv(tmp/'valid.csv', index=False)
    (tmp/'corpus.txt').write_text('\n\n'.join(synth_corpus(200, seed=2).text))
    small = ['--bs', '16', '--bptt', '10', '--quiet']
    main(['pretrain', '--corpus', str(tmp/'corpus.txt'), '--out', str(tmp/'pre'), *TINY_ARGS, *small])
    main(['finetune-lm', '--train', str(tmp/'train.csv'), '--pretrained', str(tmp/'pre'/'lm.pth'), '--out', str(tmp/'lm'), '--min-freq', '1', *small])
    main(['train-clas', '--train', str(tmp/'train.csv'), '--valid', str(tmp/'valid.csv'), '--encoder', str(tmp/'lm'/'encoder.pth'),
          '--out', str(tmp/'clas'), '--epochs', '1', *small])
    return tmp


def run_cli(*argv, timeout=300, **kw):
    return subprocess.run(CLI + [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, **kw)


# --- special files -----------------------------------------------------------------------------------------------------

def test_predict_out_streams_to_devices_and_pipes_and_follows_symlinks(task, tmp_path):
    "`--out /dev/stdout` replaced the machine's /dev/stdout link with a file; a FIFO was replaced while its reader waited; a symlink was replaced."
    model = task/'clas'/'export.pth'
    r = run_cli('predict', '--model', model, '--text', 'a goal for the team', '--out', '-')
    assert r.returncode == 0 and r.stdout.splitlines()[0] == 'text,prediction,probability', r.stderr
    r = run_cli('predict', '--model', model, '--text', 'a goal for the team', '--out', '/dev/stdout')
    assert r.returncode == 0 and r.stdout.startswith('text,prediction,probability'), r.stderr
    assert os.path.islink('/dev/stdout') or stat.S_ISCHR(os.stat('/dev/stdout').st_mode)
    null = os.lstat('/dev/null')
    assert run_cli('predict', '--model', model, '--text', 'soup', '--out', '/dev/null').returncode == 0
    assert stat.S_ISCHR(os.lstat('/dev/null').st_mode) and os.lstat('/dev/null').st_ino == null.st_ino
    fifo = tmp_path/'fifo'; os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text())); reader.start()
    r = run_cli('predict', '--model', model, '--text', 'the chef', '--out', fifo)
    reader.join(30)
    assert r.returncode == 0 and got and got[0].startswith('text,prediction'), r.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path/'real.csv').write_text('old'); (tmp_path/'link.csv').symlink_to(tmp_path/'real.csv')
    assert run_cli('predict', '--model', model, '--text', 'a match', '--out', tmp_path/'link.csv', '--force').returncode == 0
    assert (tmp_path/'link.csv').is_symlink() and (tmp_path/'real.csv').read_text().startswith('text,prediction')


# --- weights of another class set --------------------------------------------------------------------------------------

def test_weights_of_another_class_set_are_refused(tmp_path):
    "Same vocab, same number of classes, other classes (the normal case with a shared LM vocab): load/resume took them silently."
    df = synth_corpus(120, n_classes=3, seed=0)
    set_seed(0)
    data = TextClasDataBunch.from_df(df, bs=16, min_freq=1, cache_dir=tmp_path/'c', progress=False)
    a = text_classifier_learner(data, TINY, bptt=10, path=tmp_path, progress=False)
    saved = a.save('a')
    renamed = df.assign(label=df.label.map({'sport': 'politics', 'science': 'science', 'food': 'food'}))
    other = TextClasDataBunch.from_df(renamed, bs=16, vocab=data.vocab, cache_dir=tmp_path/'c', progress=False)
    b = text_classifier_learner(other, TINY, bptt=10, path=tmp_path, progress=False)
    assert b.data.vocab.itos == a.data.vocab.itos and len(b.classes) == len(a.classes) and b.classes != a.classes
    before = {k: v.clone() for k, v in b.model.state_dict().items()}
    with pytest.raises(FitlamError, match="saved with classes .*'sport'.*this learner has .*'politics'"): b.load(saved)
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in before.items())
    a.fit(1, lr=1e-3, checkpoint=tmp_path/'a.ckpt')
    with pytest.raises(FitlamError, match='saved with classes'): b.fit(1, lr=1e-3, resume=tmp_path/'a.ckpt')
    text_classifier_learner(data, TINY, bptt=10, path=tmp_path, progress=False).load(saved)      # its own classes: loads


# --- a diverged fit ----------------------------------------------------------------------------------------------------

def test_a_diverged_fit_leaves_batchnorm_buffers_as_after_the_last_finite_step():
    "The diverging batch's forward pass wrote inf into BatchNorm's running_var before the step was skipped; predict then gave p=1.000 for everything."
    set_seed(0)
    learn = Learner(synth_regression(), TinyNet(), F.mse_loss, lr=1e3, progress=False)
    from fitlam.callback import Callback
    class Snapshot(Callback):
        order = 60
        def after_step(self): self.state = {k: v.clone() for k, v in self.learn.model.state_dict().items()}
    snap = Snapshot()
    with pytest.raises(TrainingDiverged): learn.fit(3, cbs=snap)
    state = learn.model.state_dict()
    assert all(torch.isfinite(v.float()).all() for v in state.values())
    for k, v in snap.state.items(): assert torch.equal(v, state[k]), k        # buffers and weights as after the last finite step
    learn.model.eval()
    assert torch.isfinite(learn.model(torch.randn(8, 1))).all()


# --- the CLI never writes over what it reads or what an earlier run left -----------------------------------------------

def test_cli_never_writes_over_its_inputs_and_keeps_earlier_artefacts(task, tmp_path, capsys):
    "`finetune-lm --out X --pretrained X/lm.pth` overwrote its own input; `predict --input a.csv --out a.csv` rewrote the input."
    tiny = [*TINY_ARGS, '--bs', '16', '--bptt', '10', '--quiet']
    main(['pretrain', '--corpus', str(task/'corpus.txt'), '--out', str(tmp_path/'X'), *tiny])
    lm = tmp_path/'X'/'lm.pth'; lm_bytes = lm.read_bytes()
    t = time.perf_counter()
    for argv, message in [
            (['finetune-lm', '--train', str(task/'train.csv'), '--pretrained', str(lm), '--out', str(tmp_path/'X'), '--quiet', '--force'],
             'the command reads it'),
            (['pretrain', '--corpus', str(task/'corpus.txt'), '--out', str(tmp_path/'X'), *tiny], 'from an earlier run; pass --force'),
            (['predict', '--model', str(task/'clas'/'export.pth'), '--input', str(task/'valid.csv'), '--out', str(task/'valid.csv'), '--force'],
             'the command reads it'),
            (['predict', '--model', str(task/'clas'/'export.pth'), '--text', 'x', '--out', str(lm)], 'pass --force')]:
        with pytest.raises(SystemExit) as e: main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and 'Traceback' not in err, err
    assert time.perf_counter() - t < 30                                   # refused before any training
    assert lm.read_bytes() == lm_bytes and pd.read_csv(task/'valid.csv').columns.tolist() == ['text', 'label']
    rep = main(['pretrain', '--corpus', str(task/'corpus.txt'), '--out', str(tmp_path/'X'), *tiny, '--force'])
    assert Path(rep['lm']).exists() and not (tmp_path/'X'/'checkpoint.pth').exists()   # replaced with --force; the checkpoint gone


# --- Ctrl-C ------------------------------------------------------------------------------------------------------------

def test_ctrl_c_in_cli_training_is_one_line_with_a_checkpoint_to_resume(task, tmp_path):
    "Ctrl-C printed a 60-line KeyboardInterrupt traceback and left --out empty."
    out = tmp_path/'lm'
    argv = ['finetune-lm', '--train', task/'train.csv', '--pretrained', task/'pre'/'lm.pth', '--out', out, '--bs', '8', '--bptt', '10',
            '--min-freq', '1', '--epochs', '30', '--quiet']
    p = subprocess.Popen(CLI + [str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (out/'checkpoint.pth').exists() and p.poll() is None and time.monotonic() < deadline: time.sleep(0.2)
    assert (out/'checkpoint.pth').exists(), p.communicate()
    p.send_signal(signal.SIGINT)                                          # in epoch 2 of 30
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.strip().count('\n') == 0 and 'Traceback' not in err and f'--resume {out/"checkpoint.pth"}' in err, err
    r = run_cli(*argv[:-3], '--epochs', '2', '--resume', out/'checkpoint.pth', '--quiet', '--force')
    assert r.returncode == 2 and 'a checkpoint of another recipe' in r.stderr, r.stderr      # resume with other options: refused
    r = run_cli(*argv, '--resume', out/'checkpoint.pth', timeout=600)
    assert r.returncode == 0 and (out/'lm.pth').exists() and not (out/'checkpoint.pth').exists(), r.stderr


# --- a full disk -------------------------------------------------------------------------------------------------------

def test_cli_checks_free_space_before_training(task, tmp_path, monkeypatch, capsys):
    "A disk that filled while saving lost the trained classifier in a torch traceback: check the space before training."
    import fitlam.cli, shutil
    monkeypatch.setattr(fitlam.cli.shutil, 'disk_usage', lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 50_000, 50_000))
    t = time.perf_counter()
    with pytest.raises(SystemExit) as e:
        main(['train-clas', '--train', str(task/'train.csv'), '--valid', str(task/'valid.csv'), '--out', str(tmp_path/'c'), '--bs', '16',
              '--encoder', str(task/'lm'/'encoder.pth'), '--quiet'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and '0.0 MB free on its disk; the checkpoint and artefacts need about' in err, err
    assert time.perf_counter() - t < 30 and not (tmp_path/'c'/'checkpoint.pth').exists()


# --- the token cache ---------------------------------------------------------------------------------------------------

RULE_V1 = "import re\nMARK = 'xxone'\ndef mark(t): return re.sub(r'\\bgoal\\b', MARK, t)\n"

def test_an_edited_custom_rule_does_not_reuse_its_old_tokens(tmp_path, monkeypatch):
    "The cache was keyed by the rule's name: after an edit, the cached training tokens differed from what predict produced."
    import importlib
    from fitlam.corpus import tokenize_corpus
    from fitlam.tokenizer import Tokenizer, default_rules
    monkeypatch.syspath_prepend(str(tmp_path))
    texts = ['a goal for the team', 'the goal and the match', 'soup']
    def tokens(mod):
        tok = Tokenizer(rules=[*default_rules, mod.mark])
        corpus = tokenize_corpus(texts, tok, cache_dir=tmp_path/'cache', n_workers=0, progress=False)
        got = [corpus.doc_tokens(i) for i in range(len(texts))]
        assert got == [tok(t) for t in texts]                        # the cache holds what the rule makes now
        return got
    (tmp_path/'myrules.py').write_text(RULE_V1)
    mod = importlib.import_module('myrules')
    prev = tokens(mod)
    assert 'xxone' in prev[0]
    helper = "def helper(t): return t.replace('goal', 'GOAL')\ndef mark(t): return helper(t)\n"
    for edit in (RULE_V1.replace("'xxone'", "'xxtwo'"),                   # a constant it uses
                 RULE_V1.replace('goal', 'match'),                         # the rule's own code
                 RULE_V1 + helper,                                         # a helper it calls...
                 RULE_V1 + helper.replace("'GOAL'", "'Goal'")):            # ...and an edit of the helper alone
        (tmp_path/'myrules.py').write_text(edit)
        importlib.invalidate_caches(); mod = importlib.reload(mod)
        now = tokens(mod)
        assert now != prev, edit
        prev = now
    sys.modules.pop('myrules', None)


# --- resume under another recipe ---------------------------------------------------------------------------------------

def test_fit_and_pretrain_lm_refuse_to_resume_under_another_recipe(tmp_path):
    "Only fine_tune checked its recipe: fit / fit_one_cycle / pretrain_lm resumed with 10x the LR and mixed the two in one history."
    from fitlam.callback import Callback
    from fitlam.text_learner import pretrain_lm
    class Stop(Callback):
        def before_epoch(self):
            if self.learn.epoch == 1: raise KeyboardInterrupt      # after the first epoch's checkpoint
    def learner(): set_seed(0); return Learner(synth_regression(), TinyNet(), F.mse_loss, lr=1e-2, progress=False)
    ck = tmp_path/'fit.ckpt'
    with pytest.raises(KeyboardInterrupt): learner().fit_one_cycle(3, cbs=Stop(), checkpoint=ck)
    for call in (lambda l: l.fit_one_cycle(3, lr=1e-1, resume=ck), lambda l: l.fit_one_cycle(3, div=10, resume=ck),
                 lambda l: l.fit(3, resume=ck), lambda l: l.fit_one_cycle(3, wd=0.1, resume=ck)):
        with pytest.raises(FitlamError, match='a checkpoint of another fit'): call(learner())
    l = learner(); l.fit_one_cycle(3, resume=ck); assert len(l.recorder.history) == 3    # the same call resumes: 3 epochs in all
    texts = synth_corpus(80, seed=0).text.tolist()
    kw = dict(config=TINY, epochs=2, bs=8, bptt=12, min_freq=1, progress=False, path=tmp_path)
    with pytest.raises(KeyboardInterrupt): pretrain_lm(texts, checkpoint=tmp_path/'pre.ckpt', cbs=[Stop()], **kw)
    with pytest.raises(FitlamError, match='dropouts'): pretrain_lm(texts, resume=tmp_path/'pre.ckpt', drop_mult=0.1, **kw)
    pretrain_lm(texts, resume=tmp_path/'pre.ckpt', **kw)


# --- labels ------------------------------------------------------------------------------------------------------------

def test_labels_that_look_alike_a_joined_header_and_non_finite_labels(tmp_path):
    "`HUM`, `HUM ` and `hum` became three classes without a word; a second header (two CSVs joined with cat) became a class; `-inf` a class."
    from fitlam.vocab import encode_labels
    df = synth_corpus(60, seed=0)
    with pytest.warns(UserWarning, match=r"labels \[\['HUM', 'HUM ', 'hum'\]\] differ only in case or surrounding spaces"):
        encode_labels(['HUM', 'HUM ', 'hum', 'LOC'])
    with pytest.warns(UserWarning, match='differ only in case'): encode_labels(['a;B', 'b'], label_delim=';')
    df.to_csv(tmp_path/'a.csv', index=False)
    (tmp_path/'joined.csv').write_text((tmp_path/'a.csv').read_text() * 2)          # cat a.csv a.csv
    with pytest.raises(FitlamError, match=r"joined.csv, line 62: repeats the header \['text', 'label'\]"):
        TextClasDataBunch.from_csv(tmp_path/'joined.csv', cache_dir=tmp_path/'c', progress=False)
    for bad in (float('-inf'), '-inf', 'NaN', 'inf'):
        with pytest.raises(FitlamError, match=r'labels: label .* in rows \[1\] .* is a number that is not finite'):
            encode_labels(['a', bad, 'b'])
    with pytest.raises(FitlamError, match=r"classes: classes \['a'\] appear more than once"): encode_labels(['a', 'b'], classes=['a', 'b', 'a'])
    with pytest.raises(FitlamError, match='appear more than once'):
        TextClasDataBunch.from_df(df, classes=['sport', 'science', 'food', 'sport'], cache_dir=tmp_path/'c', progress=False)


def test_a_forged_export_with_fields_of_the_wrong_type_is_refused(task, tmp_path):
    "An export whose classes name a class twice, or whose fields have the wrong type, loaded and then failed later (or mislabelled)."
    from fitlam.core import atomic_save, load_checked
    from fitlam.text_learner import load_learner
    state = load_checked(task/'clas'/'export.pth')
    forged = [({'classes': [state['classes'][0]] * len(state['classes'])}, 'appear more than once'),
              ({'bs': '64'}, "['bs'] of the wrong type"), ({'bs': 0}, "['bs'] of the wrong type"),
              ({'backwards': 'yes'}, "['backwards'] of the wrong type"), ({'columns': ['text']}, "['columns'] of the wrong type"),
              ({'itos': [*state['itos'][:-1], 3.5]}, "['itos'] of the wrong type"), ({'classes': [1.5] * len(state['classes'])}, "['classes'] of the wrong type")]
    for change, message in forged:
        atomic_save({**state, **change}, tmp_path/'forged.pth')
        with pytest.raises(FitlamError, match=message.replace('[', r'\[').replace(']', r'\]')): load_learner(tmp_path/'forged.pth')


# --- many classes ------------------------------------------------------------------------------------------------------

def test_the_confusion_matrix_of_many_classes_shows_the_most_confused(task):
    "train-clas drew a cell label per class pair: 200 classes took 57 s and 7.2 GB, 400 were killed at 23.5 GB."
    from fitlam.interpret import ClassificationInterpretation
    from fitlam.text_learner import load_learner
    learn = load_learner(task/'clas'/'export.pth')
    n, g = 400, torch.Generator().manual_seed(0)
    learn.classes = [f'class {i}' for i in range(n)]
    targs = torch.randint(0, n, (4000,), generator=g)
    probs = F.one_hot(targs, n).float()
    probs[:200] = F.one_hot(torch.full((200,), 7), n).float()              # 200 documents all predicted as class 7
    interp = ClassificationInterpretation(learn, ['x'] * 4000, probs, targs, torch.zeros(4000))
    t = time.perf_counter()
    fig = interp.plot_confusion_matrix()
    ax = fig.axes[0]
    assert time.perf_counter() - t < 20 and len(ax.texts) == 30 * 30 and 'the 30 most confused of 400 classes' in ax.get_title()
    assert 'class 7' in [l.get_text() for l in ax.get_xticklabels()]
    assert len(ClassificationInterpretation(learn, ['x'] * 5, probs[:5, :5], targs[:5] % 5, torch.zeros(5)).confusion_matrix()) == 400


def test_train_clas_writes_its_report_before_any_plot(task, tmp_path, monkeypatch):
    "A plot that fails (or takes all the memory) must not cost the report: report.json first, then confusion.png."
    import fitlam.cli
    from fitlam.interpret import ClassificationInterpretation
    def boom(self, *a, **k): raise MemoryError('plotting')
    monkeypatch.setattr(ClassificationInterpretation, 'plot_confusion_matrix', boom)
    with pytest.raises(MemoryError):
        main(['train-clas', '--train', str(task/'train.csv'), '--valid', str(task/'valid.csv'), '--encoder', str(task/'lm'/'encoder.pth'),
              '--out', str(tmp_path/'c'), '--bs', '16', '--bptt', '10', '--epochs', '1', '--quiet'])
    assert (tmp_path/'c'/'report.json').exists() and (tmp_path/'c'/'export.pth').exists()


# --- raw tracebacks ----------------------------------------------------------------------------------------------------

def test_bad_arguments_get_one_clear_error():
    "Each of these gave a raw traceback (ZeroDivisionError, TypeError, RuntimeError) or a wrong diagnosis."
    from collections import Counter
    from fitlam.data import TextLMDataBunch
    from fitlam.text_learner import language_model_learner
    from fitlam.vocab import Vocab
    learner = lambda: Learner(synth_regression(), TinyNet(), F.mse_loss, lr=1e-2, progress=False)
    with pytest.raises(FitlamError, match=r'div=0: expected a finite number > 0'): learner().fit_one_cycle(1, div=0)
    with pytest.raises(FitlamError, match=r'pct_start=2'): learner().fit_one_cycle(1, pct_start=2)
    with pytest.raises(FitlamError, match=r'wd=nan: expected a finite number >= 0'): learner().fit(1, wd=float('nan'))  # not "lower the LR"
    assert len(Vocab.from_counts(Counter('a b c a'.split()), max_vocab=1e9, min_freq=1)) > 3          # a whole float is that number
    with pytest.raises(FitlamError, match=r'max_vocab=1000.5: expected a whole number'): Vocab.from_counts(Counter('a'), max_vocab=1000.5)
    data = TextLMDataBunch.from_df(synth_corpus(40), bs=8, bptt=10, min_freq=1, progress=False)
    lm = language_model_learner(data, config=TINY, progress=False)
    for t in (float('nan'), -1., float('inf')):
        with pytest.raises(FitlamError, match='temperature=.*: expected a finite number >= 0'): lm.predict('a good', n_words=2, temperature=t)
    clas_data = TextClasDataBunch.from_df(synth_corpus(40), bs=8, min_freq=1, progress=False)
    with pytest.raises(FitlamError, match=r'bptt=0: expected a whole number >= 1'): text_classifier_learner(clas_data, TINY, bptt=0, progress=False)


def test_cli_bptt_zero_utf16_without_bom_and_piped_input(task, tmp_path, capsys):
    "`--bptt 0` silently became 70; --encoding utf-16 on a file without a BOM was a UnicodeError traceback; a pipe was opened twice and misread."
    model = task/'clas'/'export.pth'
    with pytest.raises(SystemExit) as e: main(['train-clas', '--train', str(task/'train.csv'), '--bptt', '0'])
    assert e.value.code == 2 and "--bptt: '0': expected a whole number >= 1" in capsys.readouterr().err
    (tmp_path/'be.csv').write_bytes('text,label\na goal,sport\n'.encode('utf-16-be'))
    with pytest.raises(SystemExit) as e: main(['evaluate', '--model', str(model), '--data', str(tmp_path/'be.csv'), '--encoding', 'utf-16'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "be.csv: not utf-16 text as given" in err and "'utf-16-be'" in err and 'Traceback' not in err, err
    assert main(['evaluate', '--model', str(model), '--data', str(tmp_path/'be.csv'), '--encoding', 'utf-16-be'])['n'] == 1
    fifo = tmp_path/'in.fifo'; os.mkfifo(fifo)
    texts = [f'a goal number {i}' for i in range(50)]
    writer = threading.Thread(target=lambda: fifo.write_text('text\n' + '\n'.join(texts) + '\n')); writer.start()
    out = main(['predict', '--model', str(model), '--input', str(fifo)])
    writer.join(10)
    assert out.text.tolist() == texts
    r = subprocess.run(['bash', '-c', f'{" ".join(CLI[:2])} "{CLI[2]}" predict --model {model} --input <(printf "text\\na goal\\nsoup\\n")'],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and 'a goal' in r.stdout and 'soup' in r.stdout, r.stderr


def test_a_pickled_object_is_refused_without_torchs_hint_to_run_it(tmp_path):
    "The refusal quoted torch's advice to retry with weights_only=False, which runs the file's code."
    from fitlam.core import load_checked
    class Evil:
        def __reduce__(self): return (os.system, ('echo pwned',))
    torch.save({'model': Evil()}, tmp_path/'evil.pth')
    with pytest.raises(FitlamError) as e: load_checked(tmp_path/'evil.pth', 'checkpoint')
    msg = str(e.value)
    assert 'refused' in msg and 'system' in msg and 'weights_only' not in msg and 'safe_globals' not in msg and 'trust' not in msg, msg


def test_a_killed_tokenizer_worker_is_named_with_the_likely_cause():
    "`RuntimeError: tokenizer worker 0 exited (code -9)` escaped as a traceback."
    from fitlam.tokenizer import Tokenizer
    from fitlam.workers import _Workers
    pool = _Workers(Tokenizer(), 1)
    try:
        pool.procs[0].send_signal(signal.SIGKILL)                           # as the out-of-memory killer does
        with pytest.raises(FitlamError, match=r'tokenizer worker 0 died \(killed by signal 9 \(SIGKILL: most often the out-of-memory killer\)\); tokenize with fewer workers'):
            pool.get()
    finally: pool.close()


def test_ctrl_c_in_the_demo_resumes_to_the_same_classifier(task, tmp_path):
    "The demo (stages 1-3 in one command) had no checkpoint: an interrupted run started over. Interrupted in stage 3 and resumed, it ends where an uninterrupted run does."
    (tmp_path/'task').mkdir()
    for f in ('train.csv', 'valid.csv'): (tmp_path/'task'/f).write_bytes((task/f).read_bytes())
    argv = ['demo', '--data', tmp_path/'task', '--corpus', task/'corpus.txt', '--pretrain-words', '3000', '--bs', '16', '--bptt', '20',
            '--lm-epochs', '1', '--clas-stage-epochs', '1', '--clas-epochs', '12', '--clas-drop-mult', '0.1', '--clas-lr', '5e-2', '--quiet',
            *TINY_ARGS[:-2]]
    full = run_cli(*argv, '--out', tmp_path/'full', timeout=600)
    assert full.returncode == 0, full.stderr
    out = tmp_path/'killed'
    p = subprocess.Popen(CLI + [str(a) for a in argv + ['--out', out]], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    enc, ck = out/'models'/'ft_enc.pth', out/'checkpoint.pth'
    deadline = time.monotonic() + 300
    while not (enc.exists() and ck.exists() and ck.stat().st_mtime > enc.stat().st_mtime) and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)                                          # in stage 3, after its first checkpoint
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and f'--resume {ck}' in err and 'Traceback' not in err, err
    resumed = run_cli(*argv, '--out', out, '--resume', ck, timeout=600)
    assert resumed.returncode == 0 and 'stage 2: finished before the interruption' in resumed.stdout, resumed.stderr
    import json
    a, b = json.loads((tmp_path/'full'/'report.json').read_text()), json.loads((out/'report.json').read_text())
    assert a['valid_accuracy'] == b['valid_accuracy'] and not ck.exists()
    assert [r['valid_loss'] for r in a['history']][-5:] == [r['valid_loss'] for r in b['history']][-5:]
