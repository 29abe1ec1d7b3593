#!/usr/bin/env python
"""Write README.md from nbs/index.ipynb (nbdev_readme needs Quarto, which cannot be installed offline).

`--check` exits 1 if README.md differs from what the notebook gives.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def render(nb_path: Path = ROOT/'nbs'/'index.ipynb') -> str:
    "The notebook's markdown cells, and its code cells as python blocks (hidden cells skipped), joined."
    parts = []
    for cell in json.loads(nb_path.read_text(encoding='utf-8'))['cells']:
        src = ''.join(cell['source']).strip()
        if not src or src.startswith('#| hide'): continue
        parts.append(src if cell['cell_type'] == 'markdown' else f'```python\n{src}\n```')
    header = '<!-- generated from nbs/index.ipynb by tools/make_readme.py: edit the notebook, not this file -->\n\n'
    return header + '\n\n'.join(parts) + '\n'


if __name__ == '__main__':
    text, readme = render(), ROOT/'README.md'
    if '--check' in sys.argv:
        if not readme.exists() or readme.read_text(encoding='utf-8') != text:
            print('make_readme: README.md differs from nbs/index.ipynb: run `make export`')
            sys.exit(1)
    else:
        readme.write_text(text, encoding='utf-8')
