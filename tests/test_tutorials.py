"The tutorial notebooks parse, have one papermill `parameters` cell with the presets they read, and are valid Python."
import ast, re
from pathlib import Path

import nbformat
import pytest

NBS = Path(__file__).resolve().parent.parent/'nbs'
TUTORIALS = ['tutorial_pretrain', 'tutorial_trec6', 'tutorial_imdb', 'tutorial_ag_news', 'tutorial_dbpedia', 'tutorial_yelp']
REQUIRED_PRESETS = {'full', 'quick'}


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NBS/f'{name}.ipynb', as_version=4)

def code_cells(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == 'code']

def as_python(source: str) -> str:
    "A cell's source without nbdev directives (`#| ...`) and IPython magics / shell escapes (`%...`, `!...`)."
    return '\n'.join('' if re.match(r'\s*(#\||%|!)', line) else line for line in source.splitlines())

def parameters_cell(nb) -> nbformat.NotebookNode:
    cells = [c for c in nb.cells if 'parameters' in c.get('metadata', {}).get('tags', [])]
    assert len(cells) == 1, f'expected exactly one cell tagged "parameters", found {len(cells)}'
    assert cells[0].cell_type == 'code'
    return cells[0]

def preset_keys_read(nb) -> set[str]:
    "Every key the notebook reads from the chosen preset as `P['key']` or `P.get('key')`."
    keys = set()
    for src in code_cells(nb):
        for node in ast.walk(ast.parse(as_python(src))):
            if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == 'P'
                    and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)):
                keys.add(node.slice.value)
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == 'get'
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == 'P' and node.args
                    and isinstance(node.args[0], ast.Constant)):
                keys.add(node.args[0].value)
    return keys


@pytest.mark.parametrize('name', TUTORIALS)
def test_notebook_is_valid(name):
    nb = read(name)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == 'python3'
    for src in code_cells(nb):                      # tutorials export nothing
        assert not re.search(r'^\s*#\|\s*(default_exp|export)', src, re.M), f'{name}: tutorials must not export: {src[:60]!r}'


@pytest.mark.parametrize('name', TUTORIALS)
def test_code_cells_are_python(name):
    for i, src in enumerate(code_cells(read(name))):
        try: ast.parse(as_python(src))
        except SyntaxError as e: pytest.fail(f'{name}, code cell {i}: {e}\n{src[:300]}')


@pytest.mark.parametrize('name', TUTORIALS)
def test_parameters_cell(name):
    "The parameters cell holds literals only: `preset`, `data_path`, `overrides` and a PRESETS dict with at least 'full' and 'quick'."
    tree = ast.parse(parameters_cell(read(name)).source)
    assigned = {}
    for stmt in tree.body:
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name), \
            f'{name}: the parameters cell should only assign names, found {ast.dump(stmt)[:80]}'
        assigned[stmt.targets[0].id] = ast.literal_eval(stmt.value)   # literals only: papermill can override them
    assert set(assigned) == {'preset', 'data_path', 'overrides', 'PRESETS'}, sorted(assigned)
    assert assigned['preset'] == 'quick' and assigned['data_path'] is None and assigned['overrides'] == {}
    presets = assigned['PRESETS']
    assert REQUIRED_PRESETS <= set(presets), sorted(presets)
    assert assigned['preset'] in presets
    assert all(set(p) == set(presets['full']) for p in presets.values()), f'{name}: presets with different keys'


@pytest.mark.parametrize('name', TUTORIALS)
@pytest.mark.parametrize('preset', ['quick', 'full'])
def test_papermill_injection(name, preset):
    "Run the parameters cell, then what papermill injects after it, as papermill does: the notebook finds every key it reads."
    nb = read(name)
    ns = {}
    exec(parameters_cell(nb).source, ns)
    exec(f'preset = {preset!r}\ndata_path = "/some/data"', ns)      # papermill's injected-parameters cell
    P = ns['PRESETS'][ns['preset']]
    assert re.search(r"^P, MODELS, \w+ = tutorial_setup\([\w']+, preset, PRESETS, overrides\)", '\n'.join(code_cells(nb)), re.M), \
        f'{name}: P should be the preset with the overrides (fitlam.tutorial.tutorial_setup)'
    missing = preset_keys_read(nb) - set(P)
    assert not missing, f'{name}: preset {preset!r} lacks the keys {sorted(missing)} that the notebook reads'
    assert preset_keys_read(nb), f'{name}: the notebook reads no preset keys through P[...]'


def test_the_tutorials_share_one_pretrained_lm():
    "tutorial_pretrain saves under the names the other tutorials load, or they load the LM that ships with fitlam (so no other notebook pretrains)."
    from fitlam.models.zoo import SHIPPED
    ns = {}
    exec(parameters_cell(read('tutorial_pretrain')).source, ns)
    saved = {k: p['out'] for k, p in ns['PRESETS'].items()}
    for name in TUTORIALS[1:]:
        other = {}
        exec(parameters_cell(read(name)).source, other)
        for k, p in other['PRESETS'].items():
            assert p['pretrained'] in ('wt103', saved.get(k)) or p['pretrained'] in SHIPPED, (name, k, p['pretrained'], saved)
            if p.get('pretrained_bwd') is not None:    # the backward LM: tutorial_pretrain's name with _bwd (overrides {backwards: true})
                want = 'wt103_bwd' if p['pretrained'] == 'wt103' else saved[k].replace('.pth', '_bwd.pth')
                assert p['pretrained_bwd'] == want, (name, k, p['pretrained_bwd'], want)
