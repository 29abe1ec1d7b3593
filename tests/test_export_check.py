"The test command fails, naming the module, when a notebook and its module drift apart."
import json, shutil, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project(tmp_path):
    "A copy of the project's sources (notebooks, modules, tools) to break on purpose."
    for name in ('settings.ini', 'nbs', 'fitlam', 'tools'):
        src = ROOT/name
        if src.is_dir(): shutil.copytree(src, tmp_path/name, ignore=shutil.ignore_patterns('__pycache__', '.ipynb_checkpoints'))
        else: shutil.copy(src, tmp_path/name)
    return tmp_path


def check(project):
    return subprocess.run([sys.executable, str(project/'tools'/'check_export.py')], capture_output=True, text=True)


def test_clean_project_passes(project):
    r = check(project)
    assert r.returncode == 0, r.stdout
    assert 'matches' in r.stdout


def test_notebook_edit_without_export_fails(project):
    nb_path = project/'nbs'/'00_core.ipynb'
    nb = json.loads(nb_path.read_text())
    cell = next(c for c in nb['cells'] if c['cell_type'] == 'code' and ''.join(c['source']).startswith('#| export')
                and 'UNK' in ''.join(c['source']))
    cell['source'] = ''.join(cell['source']).replace("UNK   = 'xxunk'", "UNK   = 'xxunknown'")
    nb_path.write_text(json.dumps(nb))
    r = check(project)
    assert r.returncode == 1
    assert 'fitlam/core.py drifted from nbs/00_core.ipynb' in r.stdout
    assert 'xxunknown' in r.stdout   # the diff shows what changed


def test_hand_edited_module_fails(project):
    mod = project/'fitlam'/'vocab.py'
    mod.write_text(mod.read_text() + '\nHAND_EDIT = 1\n')
    r = check(project)
    assert r.returncode == 1
    assert 'fitlam/vocab.py drifted from nbs/13_vocab.ipynb' in r.stdout


def test_module_without_notebook_fails(project):
    (project/'fitlam'/'stray.py').write_text('x = 1\n')
    r = check(project)
    assert r.returncode == 1
    assert 'fitlam/stray.py is exported by no notebook' in r.stdout
