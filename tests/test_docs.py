"The docs site (tools/build_docs.py, saved outputs only): module pages show no nbdev directives and do show each public function's and class's signature."
import html, importlib, inspect, re, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip('mkdocs', reason='mkdocs is a dev dependency (pip install -e .[dev])')
sys.path.insert(0, str(ROOT/'tools'))
import build_docs  # noqa: E402


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site')
    assert build_docs.main(['--site', str(out)]) == 0
    return out


def _modules():
    "(notebook stem, module) for each notebook that exports a module."
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        m = re.search(r'#\| default_exp ([\w.]+)', nb.read_text(encoding='utf-8'))   # (a module name: letters, digits, _ and .)
        if m: yield nb.stem, m.group(1)


def _page_text(site, stem) -> str:
    return html.unescape(re.sub(r'<[^>]+>', '', (site/stem/'index.html').read_text(encoding='utf-8')))


@pytest.mark.parametrize('stem,module', list(_modules()))
def test_module_page(site, stem, module):
    text = _page_text(site, stem)
    assert '#|' not in text, f'{stem}: an nbdev directive shows on the page'
    assert not re.search(r'object at 0x|function \S+ at 0x', text), f'{stem}: an object repr shows on the page'
    mod = importlib.import_module(f'fitlam.{module}')
    missing = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or getattr(obj, '__module__', '') != mod.__name__: continue
        if build_docs.signature(name, obj) not in text: missing.append(name)
    assert not missing, f'{stem}: no signature on the page for {missing}'


def test_tutorial_outputs_kept(site):
    "A tutorial page keeps the outputs saved in its notebook (tables and plots), its code wrapped by the site's CSS."
    page = (site/'tutorial_trec6'/'index.html').read_text(encoding='utf-8')
    assert 'fitlam-plot' in page and 'fitlam-output' in page
    assert 'white-space: pre-wrap' in (site/'docs.css').read_text()
