"""Faults and bad input, tried as an attacker or a full disk would: each test names the silent wrong result or the lost
work it guards against. docs/reliability.md lists them, with what fitlam does now."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fitlam.core import TMP_SUFFIX, FitlamError, atomic_save, set_seed
from fitlam.callback import Callback, TrainingDiverged
from fitlam.cli import main
from fitlam.data import TextClasDataBunch, TextLMDataBunch
from fitlam.download import download
from fitlam.learner import Learner
from fitlam.models.awdlstm import AWDLSTMConfig
from fitlam.text_learner import load_learner, text_classifier_learner
from fitlam.testing import TINY_AWD, TinyNet, synth_corpus, synth_regression

TINY = AWDLSTMConfig(**TINY_AWD)
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope='module')
def corpus():
    return synth_corpus(240, n_classes=3, seed=0)


@pytest.fixture(scope='module')
def clas(corpus, tmp_path_factory):
    "A tiny trained classifier on the synthetic corpus."
    tmp = tmp_path_factory.mktemp('clas')
    set_seed(0)
    data = TextClasDataBunch.from_df(corpus, bs=16, min_freq=1, cache_dir=tmp/'cache', progress=False)
    learn = text_classifier_learner(data, TINY, bptt=10, lr=1e-2, progress=False, path=tmp)
    learn.fit_one_cycle(1)
    return learn


def exit_code(argv) -> int:
    try: main(argv)
    except SystemExit as e: return e.code
    return 0


# --- 1. CSV parsing ------------------------------------------------------------------------------------------------

def test_a_row_with_an_unquoted_comma_is_refused_with_file_and_line(tmp_path):
    "pandas (usecols) reads `2,hello, world` as the text `hello`: fitlam refuses it, naming the file and the line."
    (tmp_path/'t.csv').write_text('label,text\na,"first, quoted"\nb,second, cut here\na,third\nb,fourth\n')
    for build in (lambda: TextClasDataBunch.from_csv(tmp_path/'t.csv', cache_dir=tmp_path/'c', progress=False),
                  lambda: TextLMDataBunch.from_csv(tmp_path/'t.csv', cache_dir=tmp_path/'c', progress=False)):
        with pytest.raises(FitlamError, match=r't.csv, line 3: 3 field\(s\) where the header has 2.*must be quoted'): build()


def test_every_row_with_an_extra_field_does_not_shift_the_columns(tmp_path):
    "When every row has one field too many, pandas takes the first column for the index and trains on half of each text."
    rows = [f'{"ab"[i % 2]},text number {i}, and more' for i in range(20)]
    (tmp_path/'t.csv').write_text('label,text\n' + '\n'.join(rows) + '\n')
    with pytest.raises(FitlamError, match='line 2: 3 field'):
        TextClasDataBunch.from_csv(tmp_path/'t.csv', cache_dir=tmp_path/'c', progress=False)
    assert exit_code(['train-clas', '--train', str(tmp_path/'t.csv'), '--valid', str(tmp_path/'t.csv'), '--out', str(tmp_path/'o')]) == 2


# --- 2. labels -------------------------------------------------------------------------------------------------------

def test_labels_are_strings_as_written_in_every_entry_point(corpus, tmp_path):
    "pandas reads 01, 1 and 001 as one class; fitlam (library and CLI) keeps the three labels the file holds."
    df = corpus.iloc[:90].assign(label=['01', '1', '001'] * 30)
    df.to_csv(tmp_path/'t.csv', index=False)
    data = TextClasDataBunch.from_csv(tmp_path/'t.csv', bs=8, cache_dir=tmp_path/'c', progress=False, min_freq=1)
    assert data.classes == ['001', '01', '1']
    rep = main(['train-clas', '--train', str(tmp_path/'t.csv'), '--valid', str(tmp_path/'t.csv'), '--out', str(tmp_path/'o'),
                '--bs', '8', '--bptt', '10', '--stage-epochs', '0', '--epochs', '1', '--quiet'])
    assert rep['classes'] == data.classes
    df.assign(label=['1e3', '1000', '1000.0'] * 30).to_csv(tmp_path/'e.csv', index=False)
    assert TextClasDataBunch.from_csv(tmp_path/'e.csv', bs=8, cache_dir=tmp_path/'c', progress=False).classes == ['1000', '1000.0', '1e3']


# --- 3. one class ------------------------------------------------------------------------------------------------------

def test_a_single_training_class_is_refused(corpus, tmp_path):
    "One class trains to loss 0 and predicts it with probability 1."
    one = corpus.assign(label='sport')
    with pytest.raises(FitlamError, match="every training text has the label 'sport'"):
        TextClasDataBunch.from_df(one, cache_dir=tmp_path/'c', progress=False)
    one.to_csv(tmp_path/'one.csv', index=False)
    with pytest.raises(FitlamError, match='at least two classes'):
        TextClasDataBunch.from_csv(tmp_path/'one.csv', valid_csv=tmp_path/'one.csv', cache_dir=tmp_path/'c', progress=False)
    with pytest.raises(FitlamError, match='at least two classes'):     # two classes given, only one in the training labels
        TextClasDataBunch.from_df(one, classes=['food', 'sport'], cache_dir=tmp_path/'c', progress=False)


# --- 4. diverged training ----------------------------------------------------------------------------------------------

def test_a_diverging_fit_stops_with_the_last_finite_weights(clas):
    "At a far too high LR the loss goes NaN; training must stop, name where, and keep finite weights that predict."
    learn = Learner(synth_regression(), TinyNet(), F.mse_loss, lr=1e3, progress=False)
    with pytest.raises(TrainingDiverged, match=r'batch \d+/\d+ in epoch \d+/3 .*learning rate 1e\+03.*lower learning rate'):
        learn.fit(3)
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())
    assert len(learn.recorder.losses) >= 1 and all(np.isfinite(learn.recorder.losses))
    # the same with a text classifier: after the error, predict still gives probabilities
    saved = {k: v.clone() for k, v in clas.model.state_dict().items()}
    try:
        with pytest.raises(TrainingDiverged):
            clas.fit(2, lr=1e6)
        probs = clas.predict_proba(['a goal for the team', 'the chef and the soup'])
        assert torch.isfinite(probs).all() and torch.allclose(probs.sum(1), torch.ones(2))
    finally: clas.model.load_state_dict(saved)


def test_nan_weights_neither_predict_nor_export(clas, tmp_path):
    saved = {k: v.clone() for k, v in clas.model.state_dict().items()}
    try:
        with torch.no_grad(): clas.model.encoder.embedding.weight.fill_(float('nan'))
        with pytest.raises(FitlamError, match='NaN probabilities'): clas.predict('a goal')
        with pytest.raises(FitlamError, match='export: 1 weight tensor\\(s\\) hold NaN'): clas.export(tmp_path/'nan.pt')
        assert not (tmp_path/'nan.pt').exists()
    finally: clas.model.load_state_dict(saved)


def test_a_huge_lm_loss_reports_an_infinite_perplexity():
    from fitlam.metrics import Perplexity
    p = Perplexity(); p.reset(); p.accumulate(torch.tensor([[0., 2000.]]), torch.tensor([0]))
    assert p.value == float('inf')


# --- 6. exports and checkpoints ------------------------------------------------------------------------------------

def test_a_flipped_byte_in_an_export_is_refused(clas, tmp_path):
    path = clas.export(tmp_path/'clas.pt')
    data = bytearray(path.read_bytes())
    weights = data.index(b'data/0')                              # the first tensor's bytes follow its zip entry name
    for pos in (len(data) // 2, weights + 200):
        bad = bytearray(data); bad[pos] ^= 0x10
        (tmp_path/'bad.pt').write_bytes(bytes(bad))
        with pytest.raises(FitlamError, match='bad.pt'): load_learner(tmp_path/'bad.pt')
    assert load_learner(path).predict('a goal').label in clas.classes


def test_a_checkpoint_that_does_not_fit_leaves_every_weight_as_it_was(clas, corpus, tmp_path):
    other = text_classifier_learner(clas.data, AWDLSTMConfig(**{**TINY_AWD, 'n_hid': 20}), bptt=10, progress=False, path=tmp_path)
    file = other.save('other')
    before = {k: v.clone() for k, v in clas.model.state_dict().items()}
    with pytest.raises(FitlamError, match='do not fit'): clas.load(file)
    enc = other.save_encoder('enc')
    with pytest.raises(FitlamError, match='do not fit'): clas.load_encoder(enc)
    after = clas.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_crafted_export_size_is_refused_before_allocating(clas, tmp_path):
    "A config saying n_hid=200000 would allocate 4 x 200000^2 floats (640 GB): refused from the weights' shapes first."
    state = torch.load(clas.export(tmp_path/'clas.pt'), weights_only=True)
    state['config']['n_hid'] = 200_000
    atomic_save(state, tmp_path/'evil.pt')
    t = time.perf_counter()
    with pytest.raises(FitlamError, match=r'evil.pt: the weights do not fit this TextClassifier'): load_learner(tmp_path/'evil.pt')
    state['config']['n_hid'] = TINY_AWD['n_hid']; state['model']['lin_ftrs'] = [10**9]     # a head of 10^9 units
    atomic_save(state, tmp_path/'evil.pt')
    with pytest.raises(FitlamError, match=r'evil.pt: the weights do not fit'): load_learner(tmp_path/'evil.pt')
    state['model']['lin_ftrs'] = 'many'
    atomic_save(state, tmp_path/'evil.pt')
    with pytest.raises(FitlamError, match=r'evil.pt: a damaged file'): load_learner(tmp_path/'evil.pt')
    assert time.perf_counter() - t < 30


# --- 7. download -------------------------------------------------------------------------------------------------------

def test_a_url_naming_the_destination_cannot_delete_it(tmp_path):
    dest = tmp_path/'data'; dest.mkdir(); (dest/'precious.txt').write_text('years of work')
    (tmp_path/'..tar').write_bytes(b'')
    for url in [(tmp_path/'..tar').as_uri(), 'https://example.org/..zip', 'https://example.org/.bashrc', 'https://example.org/a/']:
        with pytest.raises(FitlamError, match='expected a plain file name'):
            download(url, dest=dest, force=True, progress=False)
    assert (dest/'precious.txt').read_text() == 'years of work'


# --- 8. the command line -------------------------------------------------------------------------------------------

def test_cli_checks_the_output_folder_before_training(corpus, tmp_path, capsys):
    corpus.to_csv(tmp_path/'t.csv', index=False)
    (tmp_path/'afile').write_text('x')
    t = time.perf_counter()
    for argv in (['train-clas', '--train', str(tmp_path/'t.csv'), '--valid', str(tmp_path/'t.csv'), '--out', str(tmp_path/'afile')],
                 ['finetune-lm', '--train', str(tmp_path/'t.csv'), '--out', str(tmp_path/'afile'/'sub')],
                 ['pretrain', '--corpus', str(tmp_path/'t.csv'), '--out', str(tmp_path/'afile')]):
        assert exit_code(argv) == 2
    assert time.perf_counter() - t < 20                          # nothing trained
    err = capsys.readouterr().err
    assert err.count('a file is in the way') == 3 and 'Traceback' not in err


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_cli_read_only_output_folder(corpus, tmp_path):
    corpus.to_csv(tmp_path/'t.csv', index=False)
    (tmp_path/'ro').mkdir(); os.chmod(tmp_path/'ro', 0o500)
    try: assert exit_code(['train-clas', '--train', str(tmp_path/'t.csv'), '--valid', str(tmp_path/'t.csv'), '--out', str(tmp_path/'ro')]) == 2
    finally: os.chmod(tmp_path/'ro', 0o700)


def test_cli_one_line_errors(clas, tmp_path, capsys):
    model = clas.export(tmp_path/'clas.pt')
    (tmp_path/'latin.csv').write_bytes('text,label\ncafé au lait,food\n'.encode('latin-1'))
    (tmp_path/'afile').write_text('x')
    cases = [(['evaluate', '--model', str(model), '--data', str(tmp_path/'latin.csv')], 'byte 14 (line 2)'),
             (['predict', '--model', str(model), '--input', str(tmp_path/'latin.csv')], 'with --encoding'),
             (['predict', '--model', str(model), '--text', 'a goal', '--out', str(tmp_path/'afile'/'x.csv')], 'a file is in the way'),
             (['predict', '--model', str(model), '--text', 'a goal', '--threads', '-1'], "'-1': expected a whole number >= 1")]
    for argv, message in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and 'Traceback' not in err, err
    out = main(['predict', '--model', str(model), '--input', str(tmp_path/'latin.csv'), '--encoding', 'latin-1'])
    assert out.text.tolist() == ['café au lait']


def test_cli_a_full_disk_is_one_line(clas, tmp_path, monkeypatch, capsys):
    import fitlam.cli
    def full(*a, **k): raise OSError(28, 'No space left on device', str(tmp_path/'clas.pt'))
    monkeypatch.setattr(fitlam.cli, 'load_learner', full)
    assert exit_code(['predict', '--model', str(tmp_path/'clas.pt'), '--text', 'a goal']) == 2
    err = capsys.readouterr().err
    assert err.strip().count('\n') == 0 and 'No space left on device' in err


def test_cli_predict_into_a_closed_pipe(clas, tmp_path):
    model = clas.export(tmp_path/'clas.pt')
    pd.DataFrame({'text': [f'a goal number {i} for the team' for i in range(3000)]}).to_csv(tmp_path/'many.csv', index=False)
    cmd = f'{sys.executable} -c "import sys; from fitlam.cli import cli; sys.exit(cli())" predict --model {model} --input {tmp_path/"many.csv"} | head -2'
    r = subprocess.run(['bash', '-o', 'pipefail', '-c', cmd], capture_output=True, text=True, timeout=300)
    assert len(r.stdout.splitlines()) == 2
    assert r.returncode == 2 and 'broken pipe' in r.stderr and 'Traceback' not in r.stderr, r.stderr


# --- 9. leftovers ----------------------------------------------------------------------------------------------------

def test_a_killed_save_leaves_a_file_that_the_next_save_removes(tmp_path):
    script = textwrap.dedent(f'''
        import os, signal
        from fitlam.core import atomic_write
        with atomic_write({str(tmp_path/'model.pth')!r}) as f:
            f.write(b'half a model'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)
    ''')
    r = subprocess.run([sys.executable, '-c', script], capture_output=True)
    assert r.returncode == -signal.SIGKILL
    left = list(tmp_path.glob(f'.model.pth.*{TMP_SUFFIX}'))
    assert len(left) == 1 and not (tmp_path/'model.pth').exists()
    old = time.time() - 3600; os.utime(left[0], (old, old))     # a run ago
    atomic_save({'w': 1}, tmp_path/'other.pth')                   # any later save into the folder
    assert not left[0].exists() and (tmp_path/'other.pth').exists()


# --- 10. resuming the recipe ------------------------------------------------------------------------------------------

RECIPE_SCRIPT = textwrap.dedent('''
    import os, signal, sys, torch
    from fitlam.callback import Callback
    from fitlam.core import set_seed
    from fitlam.data import TextClasDataBunch, TextLMDataBunch
    from fitlam.models.awdlstm import AWDLSTMConfig
    from fitlam.text_learner import language_model_learner, text_classifier_learner
    from fitlam.testing import TINY_AWD, synth_corpus
    kind, mode, ckpt, out, cache = sys.argv[1:6]

    class SigKill(Callback):        # in the middle of the second stage
        def __init__(self): self.fits = 0
        def before_fit(self): self.fits += 1
        def after_batch(self):
            if self.fits == 2 and self.learn.training and self.learn.epoch == 1 and self.learn.iter == 2: os.kill(os.getpid(), signal.SIGKILL)

    class ScriptedValid(Callback):  # the best validation loss in the first stage, before the kill
        order = 52
        def after_epoch(self):
            self.learn.recorder.rows[-1]['valid_loss'] = [3., 1., 2., 2.5, 4., 5.][self.learn.epoch_base + self.learn.epoch]
            if self.learn.epoch_base + self.learn.epoch == 1: self.best = {k: v.clone() for k, v in self.learn.model.state_dict().items()}

    set_seed(7 if mode == 'resume' else 0)        # a resumed run starts from other weights and RNG state
    df = synth_corpus(200, n_classes=3, seed=0)
    kw = dict(bs=16, min_freq=1, cache_dir=cache, progress=False)
    cbs = [SigKill()] if mode == 'killed' else []
    ck = dict(checkpoint=ckpt) if mode == 'killed' else dict(resume=ckpt) if mode == 'resume' else {}
    scripted = ScriptedValid()
    if kind.startswith('clas'):
        learn = text_classifier_learner(TextClasDataBunch.from_df(df, **kw), AWDLSTMConfig(**TINY_AWD), bptt=10, progress=False)
        best = dict(keep_best=True, cbs=[*cbs, scripted]) if kind == 'clas_best' else dict(cbs=cbs)
        hist = learn.fine_tune([2, 2, 2], stages=[1, 2, 4], lr=1e-2, verbose=False, **best, **ck)
    else:
        learn = language_model_learner(TextLMDataBunch.from_df(df, bptt=12, **kw), AWDLSTMConfig(**TINY_AWD), progress=False)
        hist = learn.fine_tune(2, lr=1e-2, freeze_epochs=2, cbs=cbs, verbose=False, **ck)
    torch.save(dict(model=learn.model.state_dict(), losses=learn.recorder.losses, frozen=learn.frozen_idx, best=getattr(scripted, 'best', None),
                    history=hist.drop(columns='time').values.tolist()), out)
''')


@pytest.mark.parametrize('kind', ['clas', 'lm', 'clas_best'])
def test_a_killed_fine_tune_resumes_bit_equal(kind, tmp_path):
    "A fine_tune killed in its second stage and resumed from its checkpoint ends exactly where an uninterrupted one does (clas_best: on the best epoch's weights, kept from before the kill)."
    script = tmp_path/'run.py'
    script.write_text(RECIPE_SCRIPT)
    ckpt = tmp_path/'ft.ckpt'
    def run(mode):
        return subprocess.run([sys.executable, str(script), kind, mode, str(ckpt), str(tmp_path/f'{mode}.pt'), str(tmp_path/'cache')],
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)
    full = run('full'); assert full.returncode == 0, full.stderr
    killed = run('killed'); assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert ckpt.exists() and not (tmp_path/'killed.pt').exists()
    resumed = run('resume'); assert resumed.returncode == 0, resumed.stderr
    a, b = torch.load(tmp_path/'full.pt', weights_only=True), torch.load(tmp_path/'resume.pt', weights_only=True)
    for k, v in a['model'].items(): assert torch.equal(v, b['model'][k]), k
    if kind == 'clas_best':              # both end on the weights of the first stage's second epoch, the best one
        for k, v in a['model'].items(): assert torch.equal(v, a['best'][k]), k
    assert a['history'] == b['history'] and a['frozen'] == b['frozen']
    assert a['losses'][-5:] == b['losses'][-5:]


def test_a_resume_of_another_recipe_is_refused(clas, tmp_path):
    ck = tmp_path/'ft.ckpt'
    clas.fine_tune(1, stages=[1, 2], lr=1e-3, checkpoint=ck, verbose=False)
    with pytest.raises(FitlamError, match='a checkpoint of another recipe'):
        clas.fine_tune(1, stages=[1, 3], lr=1e-3, resume=ck, verbose=False)


def test_an_interrupted_fine_tune_leaves_the_freezing_as_it_was(clas):
    class Interrupt(Callback):
        def before_fit(self):
            if self.learn.frozen_idx == len(self.learn.layer_groups) - 2: raise KeyboardInterrupt
    clas.freeze_to(-3)
    grads = [p.requires_grad for p in clas.model.parameters()]
    with pytest.raises(KeyboardInterrupt): clas.fine_tune(1, lr=1e-3, cbs=Interrupt(), verbose=False)
    assert clas.frozen_idx == len(clas.layer_groups) - 3 and [p.requires_grad for p in clas.model.parameters()] == grads
    clas.unfreeze()


def test_pretrain_lm_resumes(corpus, tmp_path):
    from fitlam.text_learner import pretrain_lm
    texts = corpus.text.tolist()
    kw = dict(config=TINY, epochs=2, bs=8, bptt=12, min_freq=1, progress=False, path=tmp_path)
    full = pretrain_lm(texts, **kw)

    class Stop(Callback):
        def before_epoch(self):
            if self.learn.epoch == 1: raise KeyboardInterrupt    # after the first epoch's checkpoint
    with pytest.raises(KeyboardInterrupt): pretrain_lm(texts, checkpoint=tmp_path/'pre.ckpt', cbs=[Stop()], **kw)
    resumed = pretrain_lm(texts, resume=tmp_path/'pre.ckpt', **kw)
    for k, v in full.model.state_dict().items(): assert torch.equal(v, resumed.model.state_dict()[k]), k


# --- 11. encodings ---------------------------------------------------------------------------------------------------

def test_a_latin1_csv_names_the_byte_and_reads_with_encoding(corpus, tmp_path):
    df = corpus.assign(text=corpus.text + ' café')
    df.to_csv(tmp_path/'latin.csv', index=False, encoding='latin-1')
    first = df.text[0].encode('latin-1')
    offset = len('text,label\n'.encode()) + (1 if b',' in first else 0) + first.index(b'\xe9')
    with pytest.raises(FitlamError, match=rf'latin.csv: not utf-8 text: byte {offset} \(line 2\).*encoding='):
        TextClasDataBunch.from_csv(tmp_path/'latin.csv', cache_dir=tmp_path/'c', progress=False)
    data = TextClasDataBunch.from_csv(tmp_path/'latin.csv', encoding='latin-1', cache_dir=tmp_path/'c', progress=False, min_freq=1)
    assert 'café' in data.vocab.itos
