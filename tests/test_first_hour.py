"A fastai user's first notebook (tests/notebooks/first_hour.ipynb), run in a real Jupyter kernel by papermill: no traceback, one progress table per fit, and each call's output of the type a notebook shows."
import re, shutil
from pathlib import Path

import pytest

papermill = pytest.importorskip('papermill', reason='papermill is a dev dependency (pip install -e .[dev])')

NB = Path(__file__).parent/'notebooks'/'first_hour.ipynb'


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
    d = tmp_path_factory.mktemp('first_hour')
    shutil.copy(NB, d/NB.name)
    return papermill.execute_notebook(str(d/NB.name), str(d/'out.ipynb'), cwd=str(d), kernel_name='python3', progress_bar=False)


def _cell(nb, code: str):
    "The code cell whose source contains `code`."
    cells = [c for c in nb.cells if c.cell_type == 'code' and code in c.source]
    assert len(cells) == 1, f'{len(cells)} cells hold {code!r}'
    return cells[0]


def _html(cell) -> list[str]: return [o.data['text/html'] for o in cell.outputs if 'text/html' in o.get('data', {})]
def _text(cell) -> str: return ''.join(o.get('text', '') for o in cell.outputs if o.output_type == 'stream')


def test_no_traceback(executed):
    errors = [(c.source[:60], o.get('ename')) for c in executed.cells for o in c.get('outputs', []) if o.output_type == 'error']
    assert not errors, errors


def test_one_progress_table_per_fit(executed):
    lm, clas = _cell(executed, 'learn.fine_tune(2, 3e-2)'), _cell(executed, 'clas.fine_tune(2, 5e-2')
    n_stages = int(re.search(r'fine-tuning in (\d+) stage', _text(clas)).group(1))
    for cell, fits in [(lm, 1), (clas, n_stages)]:
        tables = [h for h in _html(cell) if 'class="fastprogress"' in h]           # (the history `fine_tune` returns is another table)
        assert len(tables) == fits, (fits, tables)
        assert all('<td>' in t for t in tables), 'a progress table with no rows (a header-only table)'


def test_no_warnings(executed):
    "Nothing a user's call does prints a warning (e.g. torch's 'NumPy array is not writable' from show_results)."
    warned = [o.get('text', '')[:200] for c in executed.cells for o in c.get('outputs', []) if o.get('name') == 'stderr' and 'Warning' in o.get('text', '')]
    assert not warned, warned


def test_no_object_reprs(executed):
    "The text form of every output (what a terminal or a saved notebook's plain view shows) holds no `<... object at 0x...>`."
    texts = [o.get('text', '') + o.get('data', {}).get('text/plain', '') for c in executed.cells for o in c.get('outputs', [])]
    bad = [t[:120] for t in texts if re.search(r'object at 0x[0-9a-f]+', t)]
    assert not bad, bad


@pytest.mark.parametrize('code,kind', [
    ('dls_lm.show_batch(n=3)', 'table'), ('dls.show_batch(n=3)', 'table'), ('clas.summary()', 'table'),
    ('clas.show_results(n=4)', 'table'), ('interp.top_losses(3)', 'table'), ('df.head()', 'table'),
    ('res.plot()', 'image'), ('learn.recorder.plot_loss()', 'image'), ('clas.recorder.plot_metrics()', 'image'),
    ('interp.plot_confusion_matrix()', 'image')])
def test_output_types(executed, code, kind):
    cell = _cell(executed, code)
    if kind == 'table': assert any('<table' in h for h in _html(cell)), cell.outputs
    else: assert sum('image/png' in o.get('data', {}) for o in cell.outputs) == 1, 'one figure, shown once'


def test_predictions_shown(executed):
    out = ''.join(o.get('data', {}).get('text/plain', '') for o in _cell(executed, 'inf.predict(').outputs)
    assert out.count('Prediction(label=') == 2, out
    gen = ''.join(o.get('data', {}).get('text/plain', '') for o in _cell(executed, "learn.predict('the'").outputs)
    assert gen.startswith("'the "), gen
