"MultiFiT's fine-tuning options beside the paper's: the cosine one-cycle schedule for `fine_tune`, and label smoothing for the classifier (with a QRNN encoder)."
import math

import pytest
import torch

from fitlam.core import FitlamError
from fitlam.data import TextClasDataBunch, TextLMDataBunch
from fitlam.models.qrnn import QRNNConfig
from fitlam.testing import synth_corpus
from fitlam.text_learner import language_model_learner, load_learner, text_classifier_learner
from fitlam.training import LabelSmoothingCrossEntropy

TINY = QRNNConfig(emb_sz=16, n_hid=24, n_layers=2)


@pytest.fixture(scope='module')
def data():
    df, vdf = synth_corpus(96, seed=0), synth_corpus(32, seed=1)
    lm_data = TextLMDataBunch.from_texts(df.text.tolist(), bs=8, bptt=12, min_freq=1, progress=False)
    return lm_data, TextClasDataBunch.from_df(df, valid_df=vdf, vocab=lm_data.vocab, bs=8, progress=False), vdf


def clas_learner(data, tmp_path, **kwargs):
    torch.manual_seed(0)
    return text_classifier_learner(data[1], config=TINY, encoder=False, path=tmp_path, progress=False, **kwargs)


def test_one_cycle_fine_tune_follows_fastais_cosine_schedule(data, tmp_path):
    "schedule='one_cycle': each stage warms up from lr/25 over its first quarter, then anneals by a cosine to lr/1e5 (fastai's `fit_one_cycle`, which MultiFiT uses)."
    learn = clas_learner(data, tmp_path)
    learn.fine_tune(2, lr=1e-2, stages=[3], schedule='one_cycle', verbose=False)     # one stage: everything
    top = [lrs[-1] for lrs in learn.recorder.lrs]
    T, peak = len(top), max(top)
    assert top[0] == pytest.approx(1e-2 / 25, rel=1e-6) and peak == pytest.approx(1e-2, rel=0.05)
    assert abs(top.index(peak) - 0.25 * T) <= 1 and top[-1] < peak / 100 and top == sorted(top[:top.index(peak) + 1]) + sorted(top[top.index(peak) + 1:], reverse=True)
    assert learn.lrs[-2] == pytest.approx(learn.lrs[-1] / 2.6)                       # discriminative LRs as with STLR
    stlr = clas_learner(data, tmp_path)
    stlr.fine_tune(2, lr=1e-2, stages=[3], verbose=False)
    s = [lrs[-1] for lrs in stlr.recorder.lrs]
    assert s[0] == pytest.approx(1e-2 / 32, rel=1e-6) and s != pytest.approx(top)     # the paper's default is still STLR


def test_lm_fine_tune_one_cycle_and_bad_schedule(data, tmp_path):
    lm = language_model_learner(data[0], config=TINY, pretrained=False, path=tmp_path, progress=False)
    lm.fine_tune(1, lr=1e-2, schedule='one_cycle', verbose=False)
    assert math.isfinite(lm.recorder.history['train_loss'].iloc[-1])
    with pytest.raises(FitlamError, match="schedule='cosine'"): lm.fine_tune(1, schedule='cosine', verbose=False)
    with pytest.raises(FitlamError, match="schedule='cosine'"): clas_learner(data, tmp_path).fine_tune(1, schedule='cosine', verbose=False)


def test_label_smoothing_trains_exports_and_predicts(data, tmp_path):
    learn = clas_learner(data, tmp_path, loss_func=LabelSmoothingCrossEntropy(0.1))
    learn.fine_tune(1, lr=1e-2, schedule='one_cycle', verbose=False)
    loss = learn.validate()['valid_loss']
    assert math.isfinite(loss) and loss > 0.1 * math.log(len(learn.classes)) * 0.5   # smoothing keeps a floor under the loss
    texts = data[2].text.tolist()[:6]
    back = load_learner(learn.export())
    torch.testing.assert_close(back.predict_proba(texts), learn.predict_proba(texts), atol=1e-5, rtol=0)
