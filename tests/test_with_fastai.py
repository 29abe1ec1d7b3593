"""fitlam and fastai 2.8 in one environment: both install from the registry into one new virtualenv (pip resolves their
requirements together), and in one process fastai trains and saves a language model that fitlam then loads.

It installs torch, fastai and their dependencies (minutes, and the package registry must answer), so it runs only where
FITLAM_TEST_FASTAI=1 (`make test-slow` sets it)."""
import os, subprocess, sys, textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH = os.environ.get('FITLAM_TORCH', 'torch==2.13.0')
pytestmark = pytest.mark.skipif(os.environ.get('FITLAM_TEST_FASTAI') != '1',
                                reason='installs fastai from the registry into a new virtualenv (minutes): set FITLAM_TEST_FASTAI=1')

SCRIPT = textwrap.dedent('''
    import pickle, sys, warnings
    import pandas as pd, torch
    from fastai.text.all import AWD_LSTM, TextDataLoaders, awd_lstm_lm_config, language_model_learner as fastai_lm
    import fitlam
    from fitlam.all import TextLMDataBunch, AWDLSTMConfig, language_model_learner
    out = sys.argv[1]
    words = 'the cat sat on the mat while a dog ran to the park and back again'.split()
    df = pd.DataFrame({'text': [' '.join(words[i % 7:] + words[:i % 7]) for i in range(60)]})
    dls = TextDataLoaders.from_df(df, text_col='text', is_lm=True, valid_pct=0.2, seed=0, bs=8, seq_len=10)
    sizes = dict(emb_sz=16, n_hid=24, n_layers=2)
    learn = fastai_lm(dls, AWD_LSTM, config={**awd_lstm_lm_config, **sizes}, pretrained=False)
    learn.fit(1, 1e-2)
    torch.save(learn.model.state_dict(), f'{out}/fastai_lm.pth')          # the layout of fastai's WT103 files
    pickle.dump(list(learn.dls.vocab), open(f'{out}/fastai_itos.pkl', 'wb'))
    data = TextLMDataBunch.from_df(df, text_col='text', bs=8, bptt=10, min_freq=1, progress=False)
    lm = language_model_learner(data, AWDLSTMConfig(**sizes), pretrained=(f'{out}/fastai_lm.pth', f'{out}/fastai_itos.pkl'), progress=False)
    fa = learn.model[0].encoder.weight.detach()
    for w in ('cat', 'park'):                                             # the same row, matched by token
        assert torch.equal(lm.model.encoder.embedding.weight[data.vocab.stoi[w]].detach(), fa[learn.dls.vocab.index(w)]), w
    print('ok', fitlam.__version__)
''')


def test_fastai_and_fitlam_install_together_and_share_an_lm(tmp_path):
    venv = tmp_path/'venv'
    subprocess.run([sys.executable, '-m', 'venv', str(venv)], check=True)
    pip = [str(venv/'bin'/'python'), '-m', 'pip', 'install', '-q', '--disable-pip-version-check']
    subprocess.run([*pip, TORCH], check=True)
    subprocess.run([*pip, 'fastai==2.8.12', str(ROOT)], check=True)      # one resolution: fastai's fastcore>=2 and fitlam together
    check = subprocess.run([str(venv/'bin'/'python'), '-m', 'pip', 'check'], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (tmp_path/'run.py').write_text(SCRIPT)
    run = subprocess.run([str(venv/'bin'/'python'), str(tmp_path/'run.py'), str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, 'PYTHONPATH': ''})
    assert run.returncode == 0 and run.stdout.rstrip().splitlines()[-1].startswith('ok '), run.stdout[-2000:] + run.stderr
