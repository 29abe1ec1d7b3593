"""`bench/full_scale.py --tiny`: the full-scale run's code path at toy scale on the CPU, in a subprocess, on synthetic data (so it runs
in a clone without ../shared): the plan before the first stage, every stage's record, the time budget's arithmetic, what the tasks
learn, and the CUDA checks (both sides on the CPU here; with a GPU at hand, also trained on it)."""
import json, math, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
STAGES = ['data', 'pretrain', 'imdb_lm', 'imdb_clas', 'imdb_100', 'trec6', 'ag_news', 'checks']
CLASSIFIERS = ['imdb_clas', 'imdb_100', 'trec6', 'ag_news']


def run(tmp: Path, *args, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, str(ROOT/'bench'/'full_scale.py'), '--work', str(tmp/'work'), '--out', str(tmp/'out.json'), *args],
                         capture_output=True, text=True, timeout=600, cwd=tmp)
    if check: assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "One tiny run; --tok-s plans its epochs from a fixed speed and the budgets (not the clock): the same epochs on every machine."
    tmp = tmp_path_factory.mktemp('full_scale')
    out = run(tmp, '--tiny', '--synthetic', '--tok-s', '1e9')
    return json.loads((tmp/'out.json').read_text()), out.stdout


def test_plan_before_the_first_stage(tiny):
    r, stdout = tiny
    lines = stdout.splitlines()
    first_stage = next(i for i, l in enumerate(lines) if l.startswith('== ['))
    plan = [l.split() for l in lines[:first_stage] if l.startswith('PLAN   ') and l.split()[1] in STAGES]
    assert [p[1] for p in plan] == STAGES, lines[:first_stage]
    budgets = r['plan']['stages']
    assert list(budgets) == STAGES
    assert math.isclose(sum(budgets.values()), r['plan']['total_s'], rel_tol=1e-3) and r['plan']['total_s'] == 60    # --tiny: 1 minute
    assert [float(p[3]) for p in plan] == pytest.approx([budgets[s] for s in STAGES], abs=0.051)                    # printed to 0.1 s
    assert r['synthetic'] and r['tiny'] and r['bf16'] is False


def test_every_stage_recorded(tiny):
    r, stdout = tiny
    assert list(r['stages']) == STAGES
    for name, s in r['stages'].items():
        assert math.isfinite(s['seconds']) and s['seconds'] >= 0 and s['budget_s'] == pytest.approx(r['plan']['stages'][name], abs=0.05)
        assert s['peak_gpu_mib'] is None, name                                                   # on the CPU
    fits = [r['stages'][k] for k in ('pretrain', 'imdb_lm', *CLASSIFIERS)] + [r['stages'][k]['lm'] for k in ('trec6', 'ag_news')]
    for f in fits:
        assert f['tok_s'] > 0 and f['probe_tok_s'] > 0 and f['train_tokens'] > 0 and math.isfinite(f['valid_loss']), f
    for k in ('pretrain', 'imdb_lm'):
        assert 1 < r['stages'][k]['perplexity'] < r['stages'][k]['vocab'], r['stages'][k]         # better than a uniform guess
    for k in CLASSIFIERS:
        s = r['stages'][k]
        assert 0 <= s['valid_error'] <= 1 and s['n_valid'] > 0
        assert s['yardstick_error'] is None or 0 <= s['yardstick_error'] < 0.5, s               # None: no scikit-learn
    assert r['stages']['imdb_100']['n_train'] == 100
    table = stdout[stdout.index('| stage |'):].splitlines()
    assert [l.split('|')[1].strip() for l in table[2:2 + len(STAGES)]] == STAGES
    assert r['total_s'] > 0 and r['passed'] is True


def test_budget_arithmetic(tiny):
    "With a fast --tok-s every fit gets its recipe's cap; the planned seconds stay within the stage's budget."
    r, _ = tiny
    rc, st = r['recipe'], r['stages']
    assert st['pretrain']['epochs'] == rc['pretrain_epochs']
    assert st['imdb_lm']['epochs'] == [1, rc['imdb_lm_epochs']]                                  # a frozen epoch, then all layers
    for k in ('trec6', 'ag_news'): assert st[k]['lm']['epochs'] == [1, rc[f'{k}_lm_epochs']]
    assert st['imdb_clas']['epochs'] == [rc['imdb_clas_epochs']] * 3 + [rc['imdb_clas_final']]     # 4 layer groups: 4 unfreezing stages
    assert st['imdb_100']['epochs'] == [rc['imdb_100_epochs']] * 3 + [rc['imdb_100_final']]
    for k in ('trec6', 'ag_news'): assert st[k]['epochs'] == [rc[f'{k}_clas_epochs']] * 3 + [rc[f'{k}_clas_final']]
    for k in ('pretrain', 'imdb_lm', *CLASSIFIERS):
        plans = [st[k]] + ([st[k]['lm']] if 'lm' in st[k] else [])
        assert all(p['planned_tok_s'] == 1e9 for p in plans)
        assert sum(p['planned_s'] for p in plans) <= st[k]['budget_s'] + 1e-6
    lm = st['trec6']['lm']
    assert lm['seconds_left'] == pytest.approx(0.4 * st['trec6']['budget_s'], abs=0.01)            # --task-lm-share
    assert st['trec6']['seconds_left'] == pytest.approx(st['trec6']['budget_s'] - lm['planned_s'], abs=0.01)
    stage_s = st['imdb_clas']['stage_s']                                                            # frozen LSTMs: no backward pass
    assert stage_s[0] < stage_s[1] < stage_s[2] == pytest.approx(stage_s[3])


def test_tasks_learn(tiny):
    """The synthetic tasks are learnable (a topic per label): the classifiers beat chance by a wide margin. Seeds 0-6 and 42
    gave valid errors imdb_clas 3.3-7.5% (one 37.5%), trec6 9.2-26.7%, ag_news 4.2-29.2%, mean of the three 7.8-20.0%
    (chance 50% / 75% / 75%, mean 66.7%). imdb_100 (100 labels) stays near chance at this size: not asserted."""
    r, _ = tiny
    err = {k: r['stages'][k]['valid_error'] for k in ('imdb_clas', 'trec6', 'ag_news')}
    assert err['trec6'] < 0.5 and err['ag_news'] < 0.5, err
    assert sum(err.values()) / 3 < 0.4, err


def test_cuda_checks_on_the_cpu(tiny):
    "Both checks' code runs here with both sides on the CPU: the export predicts the same probabilities, the resumed weights are the saved ones."
    r, _ = tiny
    ex, re_ = r['checks']['export'], r['checks']['resume']
    assert ex['passed'] and ex['trained_on'] == 'cpu' and ex['texts'] == 50 and ex['same_class'] == 1 and ex['max_prob_diff'] < 1e-5, ex
    assert re_['passed'] and re_['weights_max_diff'] == 0 and re_['epochs'] == [0, 1] and math.isfinite(re_['valid_loss']), re_
    assert r['stages']['checks']['export'] is True and r['stages']['checks']['resume'] is True


def test_errors_name_what_is_missing(tmp_path):
    out = run(tmp_path, '--data', str(tmp_path/'nowhere'), check=False)
    assert out.returncode != 0 and 'nowhere/imdb: missing' in out.stderr and 'FITLAM_DATA' in out.stderr, out.stderr[-2000:]
    out = run(tmp_path, '--tiny', '--fractions', 'pretrian=0.5', check=False)
    assert out.returncode != 0 and "--fractions: 'pretrian' unknown" in out.stderr, out.stderr[-2000:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_tiny_on_the_gpu(tmp_path):
    "Where a GPU is at hand: the same tiny run trained on it (bf16 autocast); the export and the checkpoint then cross to the CPU for real."
    run(tmp_path, '--tiny', '--synthetic', '--tok-s', '1e9', '--device', 'cuda')
    r = json.loads((tmp_path/'out.json').read_text())
    assert r['bf16'] is True and r['passed'] is True, r['checks']
    assert r['checks']['export']['trained_on'].startswith('cuda') and r['checks']['resume']['written_on'].startswith('cuda')
    assert all(r['stages'][k]['peak_gpu_mib'] > 0 for k in ('pretrain', 'imdb_lm', *CLASSIFIERS))
