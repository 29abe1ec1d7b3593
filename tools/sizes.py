#!/usr/bin/env python
"""Print the modules over `--max-module` lines and the classes over `--max-class` lines in fitlam/ (the house's size limits)."""
import argparse, ast, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--max-module', type=int, default=600); ap.add_argument('--max-class', type=int, default=200)
    a = ap.parse_args()
    over = []
    for f in sorted((ROOT/'fitlam').rglob('*.py')):
        if f.name == '_modidx.py': continue
        src = f.read_text(encoding='utf-8')
        n = src.count('\n')
        if n > a.max_module: over.append(f'{f.relative_to(ROOT)}: {n} lines')
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > a.max_class:
                over.append(f'{f.relative_to(ROOT)}: class {node.name}, {node.end_lineno - node.lineno + 1} lines')
    print('\n'.join(over) or f'no module over {a.max_module} lines, no class over {a.max_class} lines')
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main())
