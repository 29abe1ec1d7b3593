"Regression targets end to end: a tiny model learns a number that is a function of the text; the data, model, learner, saving, export and CLI paths of `regression=True`."
import json
from pathlib import Path

import matplotlib
matplotlib.use('Agg')
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from fitlam.core import FitlamError, set_seed
from fitlam.data import TextClasDataBunch, TextLMDataBunch
from fitlam.models.awdlstm import AWDLSTMConfig
from fitlam.text_learner import Ensemble, language_model_learner, load_learner, text_classifier_learner, ulmfit
from fitlam.interpret import ClassificationInterpretation, token_importance
from fitlam.cli import main
from fitlam.testing import TINY_AWD, synth_corpus

TINY = AWDLSTMConfig(**TINY_AWD)
Y_RANGE = (-0.5, 5.5)


def marker_task(n: int, seed: int) -> pd.DataFrame:
    "Short synthetic documents with 0-5 copies of the word 'great' at random places; the target is that count."
    rng = np.random.default_rng(seed)
    texts, ys = [], []
    for t in synth_corpus(n, seed=seed).text:
        w = t.split()[:14]
        k = int(rng.integers(0, 6))
        for _ in range(k): w.insert(int(rng.integers(0, len(w) + 1)), 'great')
        texts.append(' '.join(w)); ys.append(float(k))
    return pd.DataFrame({'text': texts, 'score': ys})


def r2(p: torch.Tensor, y: torch.Tensor) -> float: return float(1 - ((p - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())


@pytest.fixture(scope='module')
def trained():
    df, vdf = marker_task(400, 0), marker_task(100, 1)
    set_seed(0)
    data = TextClasDataBunch.from_df(df, label_col='score', valid_df=vdf, regression=True, bs=16, min_freq=1, progress=False)
    learn = text_classifier_learner(data, TINY, bptt=20, y_range=Y_RANGE, drop_mult=0.1, progress=False)
    hist = learn.fine_tune(8, lr=2e-2, verbose=False)    # gradual unfreezing, as for a classifier
    return learn, hist, vdf


def test_learns_a_number_that_is_a_function_of_the_text(trained):
    learn, hist, vdf = trained
    assert {'stage', 'train_loss', 'valid_loss', 'mse', 'mae'} <= set(hist.columns) and hist.stage.tolist() == [1, 2, 3] + [4] * 8
    preds, targs = learn.get_preds()
    assert preds.dtype == torch.float32 and targs.dtype == torch.float32 and preds.shape == targs.shape == (100, 1)
    # the count's variance is ~2.9 (R² 0 for the mean); seeds 0-3 end at R² 0.65-0.82, correlation 0.83-0.93 (AVX2, 2 threads: 0.71-0.81)
    assert r2(preds, targs) > 0.4, hist
    assert np.corrcoef(preds[:, 0], targs[:, 0])[0, 1] > 0.7
    assert abs(hist.mse.iloc[-1] - float(((preds - targs) ** 2).mean())) < 1e-4
    assert abs(hist.mae.iloc[-1] - float((preds - targs).abs().mean())) < 1e-4
    assert ((preds > Y_RANGE[0]) & (preds < Y_RANGE[1])).all()


def test_predict_returns_numbers(trained):
    learn, _, vdf = trained
    one = learn.predict(vdf.text[0])
    assert isinstance(one, float)
    many = learn.predict(vdf.text[:10].tolist())
    assert all(isinstance(v, float) for v in many) and abs(many[0] - one) < 1e-5
    pv, yv = learn.get_preds(vdf)                           # a DataFrame: input order, its targets read
    assert torch.equal(yv[:, 0], torch.tensor(vdf.score.to_numpy(), dtype=torch.float32))
    assert np.allclose(pv[:10, 0].numpy(), many, atol=1e-5)
    with pytest.raises(FitlamError, match='predict_proba: this learner is a regression'): learn.predict_proba(['a great match'])
    with pytest.raises(FitlamError, match='ClassificationInterpretation: this learner is a regression'):
        ClassificationInterpretation.from_learner(learn)
    with pytest.raises(FitlamError, match='token_importance'): token_importance(learn, 'a great match')
    with pytest.raises(FitlamError, match='baseline: this learner is a regression'): learn.baseline()
    from fitlam.baseline import baseline
    with pytest.raises(FitlamError, match='baseline: a bag-of-words classifier'): baseline(learn.data)
    with pytest.raises(FitlamError, match='Ensemble: learner 0 is a regression'): Ensemble([learn])


def test_show_results_and_show_batch_show_numbers(trained):
    learn, _, _ = trained
    res = learn.show_results(5)
    assert list(res.columns) == ['text', 'actual', 'predicted']
    p, y = learn.get_preds()
    assert np.allclose(res.actual, y[:5, 0].numpy()) and np.allclose(res.predicted, p[:5, 0].numpy(), atol=1e-3)
    sb = learn.data.show_batch(3)
    assert list(sb.columns) == ['text', 'score'] and set(sb.score) <= {0., 1., 2., 3., 4., 5.}


def test_export_round_trip_and_saved_task(trained, tmp_path):
    learn, _, vdf = trained
    inf = load_learner(learn.export(tmp_path/'reg.pth'))
    assert inf.regression and inf.model.y_range == Y_RANGE and inf.classes == ['score']
    texts = vdf.text[:20].tolist()
    assert np.allclose(inf.predict(texts), learn.predict(texts), atol=1e-6)
    pl, yl = inf.get_preds(vdf)
    assert torch.equal(yl, learn.get_preds(vdf)[1]) and 'mse' in [m.name for m in inf.metrics]
    state = torch.load(tmp_path/'reg.pth', weights_only=True)
    assert state['version'] == 2 and state['regression'] is True and state['model']['y_range'] == list(Y_RANGE)
    # weights saved by a regressor: a classifier (or a regressor of another y_range) refuses them, as a class mismatch is refused
    saved = learn.save(tmp_path/'reg_weights.pth')
    learn.load(saved)
    df = marker_task(120, 3).assign(label=lambda d: np.where(d.score > 2, 'many', 'few'))
    clas = text_classifier_learner(TextClasDataBunch.from_df(df, vocab=learn.vocab, bs=16, progress=False), TINY, bptt=20, progress=False)
    with pytest.raises(FitlamError, match='saved with'): clas.load(saved)
    with pytest.raises(FitlamError, match='saved with'): learn.load(clas.save(tmp_path/'clas.pth'))
    other = text_classifier_learner(learn.data, TINY, bptt=20, y_range=(-1, 6), progress=False)
    with pytest.raises(FitlamError, match='saved with y_range'): other.load(saved)
    from fitlam.models.pretrained import load_model, save_model
    assert load_model(save_model(tmp_path/'model.pth', learn.model, learn.vocab))[0].y_range == Y_RANGE     # the plain model file too
    state['model']['y_range'] = [5, 0]; torch.save(state, tmp_path/'bad.pth')
    with pytest.raises(FitlamError, match='y_range='): load_learner(tmp_path/'bad.pth')


def test_several_targets_l1_loss_and_no_y_range():
    df = marker_task(160, 4)
    df['n_words'] = df.text.str.split().str.len().astype(float)
    set_seed(0)
    data = TextClasDataBunch.from_df(df, label_col=['score', 'n_words'], regression=True, bs=16, min_freq=1, progress=False)
    learn = text_classifier_learner(data, TINY, bptt=20, n_out=2, loss_func=F.l1_loss, progress=False)
    assert learn.model.y_range is None and learn.model.head[-1].out_features == 2
    learn.fit(1, lr=1e-2)
    p, y, losses = learn.get_preds(with_loss=True)
    assert p.shape == y.shape == (len(data.valid_dl.docs), 2) and torch.allclose(losses, (p - y).abs().mean(1), atol=1e-5)
    out = learn.predict(['a great match', 'the soup'])
    assert all(isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, float) for x in v) for v in out)
    assert list(learn.show_results(3).columns) == ['text', 'actual_score', 'predicted_score', 'actual_n_words', 'predicted_n_words']
    with pytest.raises(FitlamError, match='n_out=1: the data has 2 regression targets'): text_classifier_learner(data, TINY, n_out=1)


def test_bad_targets_and_arguments_are_refused():
    df = marker_task(60, 5)
    floats = df.assign(score=df.score + np.linspace(0, 0.9, len(df)))
    with pytest.raises(FitlamError, match=r'labels: the labels are numbers .* pass regression=True'):   # not 60 classes
        TextClasDataBunch.from_df(floats, label_col='score', progress=False)
    with pytest.raises(FitlamError, match='pass regression=True'):
        TextClasDataBunch.from_df(floats, label_col='score', valid_df=floats.head(5), progress=False)
    stars = TextClasDataBunch.from_df(df.assign(score=df.score.astype(int) % 5 + 1), label_col='score', bs=8, progress=False)
    assert stars.classes == [1, 2, 3, 4, 5] and not stars.regression          # star ratings stay classes
    with pytest.raises(FitlamError, match=r"df column 'score': \[nan\] in rows \[3\]"):
        TextClasDataBunch.from_df(df.assign(score=df.score.where(df.index != 3)), label_col='score', regression=True, progress=False)
    with pytest.raises(FitlamError, match=r"valid_df column 'score': \[inf\] in rows \[1\]"):
        TextClasDataBunch.from_df(df, label_col='score', valid_df=df.head(4).assign(score=[1, np.inf, 2, 3]), regression=True, progress=False)
    with pytest.raises(FitlamError, match=r"\['lots'\] in rows \[0\]"):
        TextClasDataBunch.from_texts(df.text, ['lots'] + df.score.tolist()[1:], regression=True, progress=False)
    with pytest.raises(FitlamError, match="label_delim=';' splits labels into classes"):
        TextClasDataBunch.from_df(df, label_col='score', regression=True, label_delim=';', progress=False)
    data = TextClasDataBunch.from_df(df, label_col='score', regression=True, bs=8, min_freq=1, progress=False)
    with pytest.raises(FitlamError, match='training target.s. lie outside it'): text_classifier_learner(data, TINY, y_range=(0, 4))
    with pytest.raises(FitlamError, match='y_range='): text_classifier_learner(data, TINY, y_range=(5, 0))
    with pytest.raises(FitlamError, match='build it with regression=True'): text_classifier_learner(stars, TINY, y_range=(0, 5))
    with pytest.raises(FitlamError, match='regression=True: an Ensemble'):
        from fitlam.text_learner import ulmfit_ensemble
        ulmfit_ensemble(df, df, regression=True)


def test_cli_round_trip(tmp_path, capsys):
    df, vdf = marker_task(200, 6), marker_task(60, 7)
    df.to_csv(tmp_path/'train.csv', index=False); vdf.to_csv(tmp_path/'valid.csv', index=False)
    lm_data = TextLMDataBunch.from_df(pd.concat([df, vdf]), bs=16, bptt=20, min_freq=1, progress=False)
    enc = language_model_learner(lm_data, TINY, progress=False).save_encoder(tmp_path/'encoder.pth')     # a tiny encoder, untrained
    rep = main(['train-clas', '--train', str(tmp_path/'train.csv'), '--valid', str(tmp_path/'valid.csv'), '--label-col', 'score',
                '--encoder', str(enc),
                '--regression', '--y-range', '-0.5', '5.5', '--out', str(tmp_path/'reg'), '--bs', '16', '--bptt', '20', '--epochs', '1',
                '--epochs', '2', '--lr', '2e-2', '--quiet'])
    saved = json.loads((tmp_path/'reg'/'report.json').read_text())
    assert saved['regression'] is True and saved['targets'] == ['score'] and saved['y_range'] == [-0.5, 5.5]
    assert set(saved['valid_metrics']) == {'mse', 'mae'} and saved['valid_mse'] == rep['valid_mse'] > 0
    assert (tmp_path/'reg'/'scatter.png').stat().st_size > 1000 and not (tmp_path/'reg'/'confusion.png').exists()
    out = main(['predict', '--model', str(tmp_path/'reg'/'export.pth'), '--input', str(tmp_path/'valid.csv'), '--out', str(tmp_path/'p.csv')])
    assert list(out.columns) == ['text', 'score', 'prediction'] and out.prediction.between(-0.5, 5.5).all()
    written = pd.read_csv(tmp_path/'p.csv')
    ev = main(['evaluate', '--model', str(tmp_path/'reg'/'export.pth'), '--data', str(tmp_path/'valid.csv'), '--json'])
    assert abs(ev['mse'] - ((written.prediction - written.score) ** 2).mean()) < 1e-4       # the exported model predicts as the learner did
    assert abs(ev['mse'] - rep['valid_mse']) < 1e-4
    pd.DataFrame({'text': ['a great match'], 'label': ['x']}).to_csv(tmp_path/'words.csv', index=False)
    with pytest.raises(SystemExit):
        main(['train-clas', '--train', str(tmp_path/'words.csv'), '--regression', '--encoder', str(enc), '--out', str(tmp_path/'bad')])
    assert "train-clas: error: " + str(tmp_path/'words.csv') + " column 'label': ['x'] in rows [0]" in capsys.readouterr().err
    df.assign(score=df.score + 0.5).to_csv(tmp_path/'floats.csv', index=False)
    for extra, msg in (([], 'the labels are numbers (6 distinct values from 0.5 to 5.5'), (['--y-range', '0', '5'], '--y-range: ')):
        with pytest.raises(SystemExit):
            main(['train-clas', '--train', str(tmp_path/'floats.csv'), '--label-col', 'score', '--encoder', str(enc), '--out', str(tmp_path/'f'),
                  *extra])
        err = capsys.readouterr().err
        assert msg in err and ('pass --regression' in err) and 'regression=True' not in err, err


def test_ulmfit_regression(tmp_path):
    df, vdf = marker_task(160, 8), marker_task(40, 9)
    learn = ulmfit(df, vdf, label_col='score', config=TINY, bs=16, bptt=20, min_freq=1, regression=True, y_range=Y_RANGE, path=tmp_path,
                   progress=False, verbose=False)
    assert learn.regression and learn.model.y_range == Y_RANGE and learn.classes == ['score'] and learn.loss_func is F.mse_loss
    p, y = learn.get_preds()
    assert p.shape == y.shape == (40, 1) and ((p > Y_RANGE[0]) & (p < Y_RANGE[1])).all()
    # bad labels are refused before the minutes of LM fine-tuning: nothing is written
    with pytest.raises(FitlamError, match='pass regression=True'):
        ulmfit(df.assign(score=df.score + 0.25), vdf, label_col='score', config=TINY, path=tmp_path/'floats', progress=False)
    with pytest.raises(FitlamError, match=r"valid_df column 'score': \[nan\] in rows \[2\]"):
        ulmfit(df, vdf.assign(score=vdf.score.where(vdf.index != 2)), label_col='score', config=TINY, regression=True, path=tmp_path/'nan')
    with pytest.raises(FitlamError, match='y_range='):
        ulmfit(df, vdf, label_col='score', config=TINY, regression=True, y_range=(3, 1), path=tmp_path/'range')
    assert not any((tmp_path/d).exists() for d in ('floats', 'nan', 'range'))
