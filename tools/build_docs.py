#!/usr/bin/env python
"""Build the documentation site into _site/ with mkdocs (Quarto, nbdev's engine, cannot be installed offline).

Pages: README (home), every notebook in nbs/ (with the outputs saved in it), and docs/*.md.
"""
import shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT/'_docs_src'


def main() -> int:
    shutil.rmtree(SRC, ignore_errors=True)
    SRC.mkdir()
    shutil.copy(ROOT/'README.md', SRC/'index.md')
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        if nb.name.startswith('_') or nb.stem == 'index': continue
        shutil.copy(nb, SRC/nb.name)
    for md in sorted((ROOT/'docs').glob('*.md')): shutil.copy(md, SRC/md.name)
    for d in (ROOT/'docs').iterdir():
        if d.is_dir(): shutil.copytree(d, SRC/d.name)
    r = subprocess.run([str(Path(sys.executable).parent/'mkdocs'), 'build', '--clean', '-f', str(ROOT/'mkdocs.yml')], cwd=ROOT)
    if r.returncode == 0: print(f'docs: open {ROOT/"_site"/"index.html"}')
    return r.returncode


if __name__ == '__main__':
    sys.exit(main())
