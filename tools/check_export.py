#!/usr/bin/env python
"""Fail if `fitlam/` differs from what the notebooks in `nbs/` export.

Exports the notebooks into a temporary copy of the project (the working tree is never touched, so
an uncommitted hand edit of a module is reported, not silently overwritten) and compares every
module with the one in `fitlam/`, in both directions.
"""
import difflib, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB, NBS = ROOT/'fitlam', ROOT/'nbs'


def source_nb(module: Path) -> str:
    "The notebook a generated module names in its header, or '?' when it names none."
    m = re.search(r'File to edit: \.\./(\S+?)\.?$', module.read_text(encoding='utf-8')[:600], re.M) if module.exists() else None
    return m.group(1) if m else '?'


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        shutil.copy(ROOT/'settings.ini', tmp)
        shutil.copytree(NBS, tmp/'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints', '_*'))
        (tmp/'fitlam').mkdir()
        shutil.copy(LIB/'__init__.py', tmp/'fitlam')   # holds only __version__, which the export rewrites
        nbdev_export = Path(sys.executable).parent/'nbdev_export'
        r = subprocess.run([str(nbdev_export)], cwd=tmp, capture_output=True, text=True)
        if r.returncode:
            print(f'check_export: nbdev_export failed on the notebooks:\n{r.stdout}{r.stderr}')
            return 1
        def modules(d): return {p.relative_to(d) for p in d.rglob('*.py') if '__pycache__' not in p.parts}
        fresh, have = modules(tmp/'fitlam'), modules(LIB)
        problems = []
        for rel in sorted(fresh | have):
            a, b = tmp/'fitlam'/rel, LIB/rel
            if rel not in have:
                problems.append(f'fitlam/{rel} is missing: {source_nb(a)} exports it; run `make export`')
            elif rel not in fresh:
                problems.append(f'fitlam/{rel} is exported by no notebook: delete it, or add `#| default_exp` to its notebook')
            elif a.read_text(encoding='utf-8') != b.read_text(encoding='utf-8'):
                diff = difflib.unified_diff(a.read_text(encoding='utf-8').splitlines(), b.read_text(encoding='utf-8').splitlines(),
                                            f'exported from {source_nb(a)}', f'fitlam/{rel}', lineterm='', n=1)
                problems.append(f'fitlam/{rel} drifted from {source_nb(a)}: edit the notebook and run `make export`, '
                                f'or carry a module edit back with `.venv/bin/nbdev_update`\n'
                                + '\n'.join('    ' + l for l in list(diff)[:24]))
    if problems:
        print('check_export: the package and the notebooks differ:\n' + '\n'.join(f'- {p}' for p in problems))
        return 1
    print(f'check_export: fitlam/ matches the export of nbs/ ({len(fresh)} modules)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
