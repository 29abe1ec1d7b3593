"Every metric against scikit-learn / scipy on the same predictions (to 1e-6): batches of different sizes one by one, a class absent from the targets, a class never predicted, binary, no items, and a DDP-style merge of two ranks' accumulators."
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

skm = pytest.importorskip('sklearn.metrics')
scs = pytest.importorskip('scipy.stats')

from fitlam.core import FitlamError
from fitlam.distributed import merge_accumulators, metric_accumulators
from fitlam.metrics import (Accuracy, ErrorRate, F1Macro, F1Score, F1ScoreMulti, FBeta, MatthewsCorrCoef, Metric, Precision,
                            PrecisionMulti, Recall, RecallMulti, accuracy, as_metric, error_rate)
from fitlam.score_metrics import (MAE, MSE, MSLE, RMSE, PearsonCorrCoef, R2Score, RocAuc, RocAucBinary, SpearmanCorrCoef,
                                  mae, mse, msle, rmse)

SIZES = (1, 7, 3, 16, 5)                 # batches of different sizes, in this order


def batched(pred, yb, sizes=SIZES):
    "Split `pred` and `yb` along the first dimension into batches of `sizes` (the remainder in the last one)."
    cuts = np.cumsum(sizes)[:-1].tolist()
    return list(zip(torch.tensor_split(pred, cuts), torch.tensor_split(yb, cuts)))


def run(metric: Metric, batches) -> float:
    metric.reset()
    for pred, yb in batches: metric.accumulate(pred, yb)
    return metric.value


def merged(make, batches) -> float:
    "Accumulate the batches over two instances in turn (two DDP ranks), then combine their accumulators as `DistributedTrainer` does."
    ranks = [make(), make()]
    for r in ranks: r.reset()
    for i, (pred, yb) in enumerate(batches): ranks[i % 2].accumulate(pred, yb)
    m = make(); m.reset()
    for k in metric_accumulators(m): setattr(m, k, merge_accumulators([getattr(r, k) for r in ranks], k))
    return m.value


def assert_all_ways(make, pred, yb, expected, eps=1e-6):
    "One batch, uneven batches one by one, and a two-rank merge all give `expected`."
    for got in (run(make(), [(pred, yb)]), run(make(), batched(pred, yb)), merged(make, batched(pred, yb))):
        assert got == pytest.approx(expected, abs=eps), (make(), got, expected)


# ---- single-label classification -----------------------------------------------------------------
def case(kind: str, n: int = 32, c: int = 4, seed: int = 0):
    "Logits (n, c) and targets for a case: 'random', 'absent' (class c-1 not in the targets), 'never' (class 0 never predicted), 'binary'."
    g = torch.Generator().manual_seed(seed)
    c = 2 if kind == 'binary' else c
    logits, y = torch.randn(n, c, generator=g), torch.randint(0, c, (n,), generator=g)
    if kind == 'absent': y = torch.randint(0, c - 1, (n,), generator=g)
    if kind == 'never': logits[:, 0] = -10.
    if kind == 'absent_both': y = torch.randint(0, c - 1, (n,), generator=g); logits[:, c - 1] = -10.
    return logits, y

KINDS = ('random', 'absent', 'never', 'absent_both', 'binary')
AVERAGES = ('micro', 'macro', 'weighted')
SKL = {Precision: skm.precision_score, Recall: skm.recall_score, F1Score: skm.f1_score}


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('cls', [Precision, Recall, F1Score])
@pytest.mark.parametrize('average', AVERAGES)
def test_prf_matches_sklearn(kind, cls, average):
    logits, y = case(kind)
    want = SKL[cls](y.numpy(), logits.argmax(1).numpy(), average=average, zero_division=0)
    assert_all_ways(lambda: cls(average=average), logits, y, want)


@pytest.mark.parametrize('kind', KINDS)
@pytest.mark.parametrize('beta', (0.5, 2.))
@pytest.mark.parametrize('average', AVERAGES)
def test_fbeta_matches_sklearn(kind, beta, average):
    logits, y = case(kind)
    want = skm.fbeta_score(y.numpy(), logits.argmax(1).numpy(), beta=beta, average=average, zero_division=0)
    assert_all_ways(lambda: FBeta(beta, average=average), logits, y, want)


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('cls', [Precision, Recall, F1Score])
@pytest.mark.parametrize('pos_label', (0, 1))
def test_binary_matches_sklearn(seed, cls, pos_label):
    logits, y = case('binary', seed=seed)
    want = SKL[cls](y.numpy(), logits.argmax(1).numpy(), average='binary', pos_label=pos_label, zero_division=0)
    assert_all_ways(lambda: cls(pos_label=pos_label), logits, y, want)
    want = skm.fbeta_score(y.numpy(), logits.argmax(1).numpy(), beta=2, pos_label=pos_label, zero_division=0)
    assert_all_ways(lambda: FBeta(2, pos_label=pos_label), logits, y, want)


def test_binary_never_predicting_the_positive_class():
    y, logits = torch.tensor([0, 1, 1, 0]), torch.tensor([[1., 0.]] * 4)
    for cls in (Precision, Recall, F1Score):
        assert run(cls(), [(logits, y)]) == SKL[cls](y.numpy(), np.zeros(4, int), zero_division=0) == 0.


@pytest.mark.parametrize('kind', KINDS)
def test_f1macro_and_mcc_match_sklearn(kind):
    logits, y = case(kind)
    p = logits.argmax(1).numpy()
    assert_all_ways(F1Macro, logits, y, skm.f1_score(y.numpy(), p, average='macro'))
    assert_all_ways(MatthewsCorrCoef, logits, y, skm.matthews_corrcoef(y.numpy(), p))


def test_mcc_degenerate_cases_match_sklearn():
    y = torch.tensor([0, 1, 2, 1])
    one_class = F.one_hot(torch.zeros(4, dtype=torch.long), 3).float()          # everything predicted as class 0
    assert run(MatthewsCorrCoef(), [(one_class, y)]) == skm.matthews_corrcoef(y.numpy(), np.zeros(4, int)) == 0.
    assert run(MatthewsCorrCoef(), [(one_class, torch.zeros(4, dtype=torch.long))]) == 0.


def test_lm_shaped_predictions_count_every_token():
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(3, 5, 6, generator=g), torch.randint(0, 6, (3, 5), generator=g)
    want = skm.f1_score(y.reshape(-1).numpy(), logits.argmax(-1).reshape(-1).numpy(), average='macro')
    assert run(F1Score(average='macro'), [(logits[:1], y[:1]), (logits[1:], y[1:])]) == pytest.approx(want, abs=1e-12)


# ---- multi-label ---------------------------------------------------------------------------------
def multi_case(seed=0, n=30, labels=5):
    g = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(n, labels, generator=g), (torch.rand(n, labels, generator=g) < 0.3).long()
    y[:, -1] = 0; logits[:, -1] = -5.                       # a label never true nor predicted
    y[:, 0] = 1                                              # a label always true
    return logits, y


@pytest.mark.parametrize('average', ('micro', 'macro', 'weighted', 'samples'))
@pytest.mark.parametrize('cls,skl', [(F1ScoreMulti, skm.f1_score), (PrecisionMulti, skm.precision_score), (RecallMulti, skm.recall_score)])
@pytest.mark.parametrize('thresh', (0.5, 0.3))
def test_multilabel_matches_sklearn(average, cls, skl, thresh):
    logits, y = multi_case()
    p = (torch.sigmoid(logits) >= thresh).long().numpy()
    assert_all_ways(lambda: cls(thresh=thresh, average=average), logits, y, skl(y.numpy(), p, average=average, zero_division=0))


def test_multilabel_probabilities_without_sigmoid():
    logits, y = multi_case(seed=2)
    probs = torch.sigmoid(logits)
    assert run(F1ScoreMulti(sigmoid=False), [(probs, y)]) == pytest.approx(run(F1ScoreMulti(), [(logits, y)]), abs=1e-12)


# ---- ranking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('average', ('macro', 'weighted'))
def test_rocauc_matches_sklearn(seed, average):
    logits, y = case('random', n=40, seed=seed)
    logits = (logits * 2).round() / 2                        # ties in the scores, counted half
    probs = F.softmax(logits, -1)
    assert_all_ways(lambda: RocAuc(average=average), logits, y, skm.roc_auc_score(y.numpy(), probs.numpy(), multi_class='ovr', average=average))


def test_rocauc_leaves_out_a_class_absent_from_the_targets():
    logits, y = case('absent', n=40)
    probs = F.softmax(logits, -1).numpy()
    per_class = [skm.roc_auc_score(y.numpy() == k, probs[:, k]) for k in range(3)]      # class 3 has no positives
    assert_all_ways(RocAuc, logits, y, np.mean(per_class))
    support = [(y == k).sum().item() for k in range(3)]
    assert_all_ways(lambda: RocAuc('weighted'), logits, y, np.average(per_class, weights=support))


@pytest.mark.parametrize('seed', range(3))
def test_rocauc_binary_matches_sklearn(seed):
    logits, y = case('binary', n=40, seed=seed)
    logits = (logits * 2).round() / 2
    assert_all_ways(RocAucBinary, logits, y, skm.roc_auc_score(y.numpy(), F.softmax(logits, -1)[:, 1].numpy()))
    score = logits[:, 1] - logits[:, 0]                      # one logit per item: (n,) and (n, 1)
    want = skm.roc_auc_score(y.numpy(), score.numpy())
    assert_all_ways(RocAucBinary, score, y, want); assert_all_ways(RocAucBinary, score[:, None], y[:, None], want)


def test_rocauc_undefined_is_nan():
    assert math.isnan(run(RocAucBinary(), [(torch.randn(5), torch.zeros(5, dtype=torch.long))]))     # no positives
    assert math.isnan(run(RocAuc(), [(torch.randn(5, 3), torch.ones(5, dtype=torch.long))]))         # one class only


# ---- regression -------------------------------------------------------------------------------------
def reg_case(seed=0, n=32):
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) * 10
    return y + torch.randn(n, generator=g), y


REGRESSION = [(MSE, lambda p, y: skm.mean_squared_error(y, p)), (RMSE, lambda p, y: math.sqrt(skm.mean_squared_error(y, p))),
              (MAE, lambda p, y: skm.mean_absolute_error(y, p)), (MSLE, lambda p, y: skm.mean_squared_log_error(y, p)),
              (R2Score, lambda p, y: skm.r2_score(y, p)), (PearsonCorrCoef, lambda p, y: scs.pearsonr(p, y)[0]),
              (SpearmanCorrCoef, lambda p, y: scs.spearmanr(p, y)[0])]


@pytest.mark.parametrize('cls,ref', REGRESSION, ids=[c.__name__ for c, _ in REGRESSION])
@pytest.mark.parametrize('shape', ('n', 'n1'))
@pytest.mark.parametrize('seed', range(2))
def test_regression_matches_sklearn_scipy(cls, ref, shape, seed):
    p, y = reg_case(seed)
    p = p.clamp(min=0)                                       # MSLE needs values > -1
    if cls is SpearmanCorrCoef: p, y = p.round(), y.round()  # ties, averaged
    want = ref(p.double().numpy(), y.double().numpy())
    assert_all_ways(cls, p[:, None] if shape == 'n1' else p, y, want)


def test_regression_large_offset_does_not_cancel():
    "Targets around 1e6 with a spread of 1: summing y² would lose the spread; the per-batch moments keep it."
    p, y = reg_case(3)
    p, y = p.double() + 1e6, y.double() + 1e6
    assert_all_ways(R2Score, p, y, skm.r2_score(y.numpy(), p.numpy()), eps=1e-6)
    assert_all_ways(PearsonCorrCoef, p, y, scs.pearsonr(p.numpy(), y.numpy())[0], eps=1e-6)


def test_lower_is_better_and_names():
    assert [m().lower_is_better for m in (MSE, RMSE, MAE, MSLE)] == [True] * 4
    assert not any(m().lower_is_better for m in (R2Score, PearsonCorrCoef, SpearmanCorrCoef, RocAuc, RocAucBinary, F1Score, MatthewsCorrCoef))
    assert ErrorRate().lower_is_better and not Accuracy().lower_is_better
    names = [m.name for m in (Precision(), Recall(average='macro'), FBeta(2, average='weighted'), F1Macro(), MatthewsCorrCoef(), RocAuc(),
                              F1ScoreMulti(), R2Score(), PearsonCorrCoef(), SpearmanCorrCoef())]
    assert names == ['precision_score', 'recall_score_macro', 'fbeta_score_weighted', 'f1_macro', 'matthews_corrcoef', 'roc_auc_score',
                     'f1_score_multi', 'r2_score', 'pearsonr', 'spearmanr']


# ---- no items ---------------------------------------------------------------------------------------------
EMPTY = [(lambda: F1Score(average='macro'), torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
         (lambda: Precision(), torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
         (MatthewsCorrCoef, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)),
         (RocAuc, torch.zeros(0, 3), torch.zeros(0, dtype=torch.long)), (RocAucBinary, torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)),
         (F1ScoreMulti, torch.zeros(0, 3), torch.zeros(0, 3)), (lambda: F1ScoreMulti(average='samples'), torch.zeros(0, 3), torch.zeros(0, 3)),
         *[(cls, torch.zeros(0), torch.zeros(0)) for cls, _ in REGRESSION]]


@pytest.mark.parametrize('make,pred,yb', EMPTY, ids=[str(m()) for m, _, _ in EMPTY])
def test_no_items_is_nan(make, pred, yb):
    assert math.isnan(run(make(), []))                       # no batch at all
    assert math.isnan(run(make(), [(pred, yb)]))             # an empty batch
    assert math.isnan(merged(make, []))                      # no rank saw a batch


def test_one_rank_without_batches():
    logits, y = case('random')
    assert merged(lambda: F1Score(average='macro'), [(logits, y)]) == pytest.approx(skm.f1_score(y.numpy(), logits.argmax(1).numpy(), average='macro'))


# ---- the fastai function names ------------------------------------------------------------------------
def test_fastai_functions_give_the_number_and_stream_in_metrics():
    logits, y = case('random')
    assert float(accuracy(logits, y)) == pytest.approx(skm.accuracy_score(y.numpy(), logits.argmax(1).numpy()))
    assert float(error_rate(logits, y)) == pytest.approx(1 - skm.accuracy_score(y.numpy(), logits.argmax(1).numpy()))
    p, t = reg_case()
    p = p.clamp(min=0)
    for f, ref in ((mse, skm.mean_squared_error), (mae, skm.mean_absolute_error), (msle, skm.mean_squared_log_error)):
        assert float(f(p[:, None], t)) == pytest.approx(ref(t.numpy(), p.numpy()), rel=1e-5)
    assert float(rmse(p, t)) == pytest.approx(math.sqrt(skm.mean_squared_error(t.numpy(), p.numpy())), rel=1e-5)
    for f, cls in ((accuracy, Accuracy), (error_rate, ErrorRate), (mse, MSE), (rmse, RMSE), (mae, MAE), (msle, MSLE)):
        a, b = as_metric(f), as_metric(f)
        assert type(a) is cls and a is not b


def test_fresh_metric_per_learner():
    "`metrics=[mse]` / `[accuracy]`: each learner its own accumulator, so one learner's validation leaves the other's value alone."
    from fitlam.learner import Learner
    from fitlam.testing import TinyNet, synth_regression
    learners = [Learner(synth_regression(seed=0), TinyNet(), F.mse_loss, progress=False, metrics=[mse, rmse, R2Score()]) for _ in range(2)]
    assert learners[0].metrics[0] is not learners[1].metrics[0]
    res = learners[0].validate()
    preds, targs = learners[0].get_preds()
    assert res['mse'] == pytest.approx(skm.mean_squared_error(targs.numpy().ravel(), preds.numpy().ravel()), rel=1e-5)
    assert res['r2_score'] == pytest.approx(skm.r2_score(targs.numpy().ravel(), preds.numpy().ravel()), abs=1e-5)
    assert res['rmse'] == pytest.approx(math.sqrt(res['mse']), rel=1e-9)


# ---- bad input --------------------------------------------------------------------------------------------
@pytest.mark.parametrize('make,pred,yb,msg', [
    (F1Score, torch.randn(4, 3), torch.tensor([0, 1, 2, 0]), "average='binary' needs 2 classes"),
    (lambda: F1Score(average='macro'), torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), 'class ids in [0, 3)'),
    (lambda: F1Score(average='macro'), torch.randn(4, 3), torch.tensor([0, 1, 2]), 'different numbers of items'),
    (MatthewsCorrCoef, torch.randn(4, 3), torch.tensor([0., 1, 2, 0]), 'integer class ids'),
    (RocAuc, torch.randn(4), torch.tensor([0, 1, 1, 0]), 'RocAucBinary'),
    (RocAuc, torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), 'class ids in [0, 3)'),
    (RocAucBinary, torch.randn(4, 3), torch.tensor([0, 1, 1, 0]), '(n, 2) logits'),
    (RocAucBinary, torch.randn(4), torch.tensor([0, 1, 2, 0]), 'must be 0 or 1'),
    (RocAucBinary, torch.randn(4), torch.tensor([0, 1, 1]), '4 scores and 3 targets'),
    (F1ScoreMulti, torch.randn(4, 3), torch.ones(4, 2), '(n, n_labels)'),
    (F1ScoreMulti, torch.randn(4, 3), torch.full((4, 3), 2.), 'must be 0 or 1'),
    (MSE, torch.randn(4, 2), torch.randn(4), 'different numbers of values'),
    (R2Score, torch.randn(4, 2), torch.randn(8), '(n,) or (n, 1)'),
    (MSLE, torch.tensor([-1.5, 1.]), torch.tensor([1., 1.]), '> -1'),
])
def test_bad_input_is_a_clear_error(make, pred, yb, msg):
    with pytest.raises(FitlamError, match=None) as e: run(make(), [(pred, yb)])
    assert msg in str(e.value)


def test_classes_changing_between_batches_is_an_error():
    with pytest.raises(FitlamError, match='3 classes here, 4 in earlier batches'):
        run(F1Score(average='macro'), [(torch.randn(2, 4), torch.tensor([0, 1])), (torch.randn(2, 3), torch.tensor([0, 1]))])


@pytest.mark.parametrize('make,msg', [(lambda: F1Score(average='samples'), 'F1ScoreMulti'), (lambda: FBeta(-1), 'beta=-1'),
                                      (lambda: FBeta(float('nan')), 'beta=nan'), (lambda: Precision(pos_label=3), 'pos_label=3'),
                                      (lambda: RocAuc('micro'), "'macro' or 'weighted'"), (lambda: F1ScoreMulti(average='binary'), 'samples'),
                                      (lambda: FBeta(True), 'beta=True'), (lambda: F1ScoreMulti(thresh='0.5'), "thresh='0.5'")])
def test_bad_arguments_are_clear_errors(make, msg):
    with pytest.raises(FitlamError) as e: make()
    assert msg in str(e.value)


def test_nan_predictions_give_nan_ranks():
    assert math.isnan(run(SpearmanCorrCoef(), [(torch.tensor([1., float('nan'), 3.]), torch.tensor([1., 2., 3.]))]))
    assert math.isnan(run(RocAucBinary(), [(torch.tensor([1., float('nan'), 3.]), torch.tensor([1, 0, 1]))]))


def test_classification_metrics_in_a_learner_match_sklearn_on_its_predictions():
    from fitlam.learner import Learner
    from fitlam.testing import TinyNet, synth_regression
    data = synth_regression(n_valid=33)                      # batches of 16, 16 and 1
    for dl in (data.train_dl, data.valid_dl): dl.y = (dl.y > 3).long().squeeze(1)
    torch.manual_seed(0)
    learn = Learner(data, TinyNet(n_out=2), F.cross_entropy, progress=False,
                    metrics=[accuracy, F1Score(average='macro'), F1Score(), MatthewsCorrCoef(), RocAucBinary()])
    res = learn.validate()
    probs, targs = learn.get_preds()
    y, p = targs.numpy(), probs.argmax(1).numpy()
    assert res['accuracy'] == pytest.approx(skm.accuracy_score(y, p))
    assert res['f1_score_macro'] == pytest.approx(skm.f1_score(y, p, average='macro'), abs=1e-9)
    assert res['f1_score'] == pytest.approx(skm.f1_score(y, p, zero_division=0), abs=1e-9)
    assert res['matthews_corrcoef'] == pytest.approx(skm.matthews_corrcoef(y, p), abs=1e-9)
    assert res['roc_auc_score'] == pytest.approx(skm.roc_auc_score(y, probs[:, 1].numpy()), abs=1e-6)


# ---- interpretation: the report, most_confused, top_losses ---------------------------------------------------
def interp_of(kind, c=4):
    from types import SimpleNamespace
    from fitlam.interpret import ClassificationInterpretation
    logits, y = case(kind, c=c)
    probs = F.softmax(logits, -1)
    losses = F.cross_entropy(logits, y, reduction='none')
    learn = SimpleNamespace(classes=[f'c{k}' for k in range(logits.shape[1])])
    return ClassificationInterpretation(learn, [f'doc {i}' for i in range(len(y))], probs, y, losses), logits, y


@pytest.mark.parametrize('kind', KINDS)
def test_classification_report_is_sklearns(kind):
    interp, logits, y = interp_of(kind)
    rep = interp.classification_report()
    skl = skm.classification_report(y.numpy(), logits.argmax(1).numpy(), output_dict=True, zero_division=0)
    for row in ('macro avg', 'weighted avg'):
        assert rep.loc[row, ['precision', 'recall', 'f1']].tolist() == pytest.approx([skl[row][k] for k in ('precision', 'recall', 'f1-score')], abs=1e-9)
        assert rep.loc[row, 'support'] == skl[row]['support']
    classes = [k for k in skl if k not in ('accuracy', 'macro avg', 'weighted avg', 'micro avg')]
    assert rep.index.tolist()[:-3] == [f'c{k}' for k in classes]                   # the same classes, in order
    for k in classes:
        assert rep.loc[f'c{k}'].tolist() == pytest.approx([skl[k][m] for m in ('precision', 'recall', 'f1-score', 'support')], abs=1e-9)
    assert rep.loc['accuracy', 'f1'] == pytest.approx(skl['accuracy'])
    assert rep.loc['macro avg', 'f1'] == pytest.approx(run(F1Macro(), [(logits, y)]), abs=1e-12)   # the report and F1Macro agree


def test_report_of_no_items():
    from types import SimpleNamespace
    from fitlam.interpret import ClassificationInterpretation
    interp = ClassificationInterpretation(SimpleNamespace(classes=['a', 'b']), [], torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), torch.zeros(0))
    rep = interp.classification_report()
    assert rep.index.tolist() == ['accuracy', 'macro avg', 'weighted avg'] and rep.f1.isna().all() and (rep.support == 0).all()


def test_most_confused_takes_fastais_min_val():
    interp, _, _ = interp_of('random')
    assert interp.most_confused(min_val=2) == interp.most_confused(min_count=2) == interp.most_confused(2)
    assert interp.most_confused(min_val=2) != interp.most_confused()      # the threshold is used
    with pytest.raises(FitlamError, match='pass one'): interp.most_confused(3, min_val=2)


def test_top_losses_unpacks_as_fastais():
    interp, _, _ = interp_of('random')
    losses, idxs = interp.top_losses(5)
    want = interp.losses.topk(5)
    assert torch.equal(losses, interp.losses[idxs]) and torch.equal(losses, want.values)      # the 5 highest, highest first
    top = interp.top_losses(5)
    assert isinstance(top, pd.DataFrame) and top.columns.tolist() == ['text', 'actual', 'predicted', 'probability', 'loss']
    assert top.text.tolist() == [f'doc {i}' for i in idxs.tolist()] and list(top.head()) == top.columns.tolist()
    low_losses, low_idxs = interp.top_losses(3, largest=False)
    assert torch.equal(low_losses, interp.losses[low_idxs]) and torch.equal(low_losses, interp.losses.topk(3, largest=False).values)
    assert len(interp.top_losses(None)) == len(interp.losses)
    for k in (-1, 2.5, True):
        with pytest.raises(FitlamError, match='top_losses: k='): interp.top_losses(k)
