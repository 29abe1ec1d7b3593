#!/usr/bin/env python
"""Build the documentation site into _site/ with mkdocs (Quarto, nbdev's engine, cannot be installed offline).

Pages: README (home), docs/*.md, and a page per notebook in nbs/, written here as Markdown:
- an exported cell (`#| export`) becomes the API reference of what it defines publicly: each function and class
  with its signature and docstring, and a class's public methods and properties under it;
- `#| hide` cells, directives and private helpers do not appear;
- other code cells show their source and outputs: the outputs saved in the notebook (the tutorials), or, with
  `--execute`, those of running the module notebooks now (cells flagged `slow` are skipped, as `nbdev_test` does).

    python tools/build_docs.py              # saved outputs only (seconds)
    python tools/build_docs.py --execute    # run the module notebooks for their outputs (minutes)
"""
import argparse, ast, html, importlib, inspect, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*(.*)$')


def directives(src: str) -> dict[str, str]:
    "The `#| name value` lines of a cell."
    out = {}
    for line in src.splitlines():
        m = _DIRECTIVE.match(line)
        if m:
            name, _, value = m.group(1).strip().partition(' ')
            out[name.rstrip(':')] = value.strip()
    return out


def strip_directives(src: str) -> str:
    return '\n'.join(l for l in src.splitlines() if not _DIRECTIVE.match(l)).strip('\n')


def defined_names(src: str) -> list[str]:
    "The public names a cell defines at its top level, in order: functions, classes, and names assigned (`api_doc` keeps the callable ones)."
    try: tree = ast.parse(src)
    except SyntaxError: return []
    names = [[n.name] if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else
             [t.id for t in n.targets if isinstance(t, ast.Name)] if isinstance(n, ast.Assign) else [] for n in tree.body]
    return [name for ns in names for name in ns if not name.startswith('_')]


class _Annotation(str):
    "An annotation shown as written (`from __future__ import annotations` keeps them as strings), not quoted."
    def __repr__(self): return str(self)


def _default(v) -> str:
    "A default value as code: a function or class by its name (`adam`, not `<function adam at 0x...>`), also inside a tuple or list."
    if isinstance(v, (tuple, list)) and any(callable(x) for x in v):
        inner = ', '.join(_default(x) for x in v) + (',' if isinstance(v, tuple) and len(v) == 1 else '')
        return f'({inner})' if isinstance(v, tuple) else f'[{inner}]'
    return getattr(v, '__name__', repr(v)) if callable(v) else repr(v)


def signature(name: str, obj, method: bool = False) -> str:
    "`name(parameters) -> return`, annotations as written, functions given as defaults by name; a method's `self` (or `cls`) left out."
    try: sig = inspect.signature(obj)
    except (TypeError, ValueError): return f'{name}(...)'
    ps = [p.replace(annotation=_Annotation(p.annotation)) if isinstance(p.annotation, str) else p for p in sig.parameters.values()]
    ps = [p if p.default is inspect.Parameter.empty else p.replace(default=_Annotation(_default(p.default))) for p in ps]
    if method and ps and ps[0].name in ('self', 'cls'): ps = ps[1:]
    ret = _Annotation(sig.return_annotation) if isinstance(sig.return_annotation, str) else sig.return_annotation
    return f'{name}{sig.replace(parameters=ps, return_annotation=ret)}'


def _sig_block(text: str, kind: str) -> str:
    "A signature as preformatted text (no syntax highlighting, so its text stays whole in the page)."
    return f'<pre class="fitlam-sig"><code><em>{kind}</em> {html.escape(text)}</code></pre>\n'


def api_doc(mod, name: str) -> str:
    "The reference of `mod.name`: signature and docstring; for a class, its public methods and properties too."
    obj = getattr(mod, name, None)
    if not (inspect.isclass(obj) or inspect.isfunction(obj)): return ''      # a constant, or nothing
    out = [f'### {name}\n', _sig_block(signature(name, obj), 'class' if inspect.isclass(obj) else 'def')]
    if inspect.getdoc(obj): out.append(inspect.getdoc(obj) + '\n')
    if inspect.isclass(obj):
        for attr, member in obj.__dict__.items():
            if attr.startswith('_'): continue
            if isinstance(member, property):
                out.append(f'<p class="fitlam-member"><code>{name}.{attr}</code> (property): {html.escape(member.__doc__ or "")}</p>\n')
            elif callable(member) or isinstance(member, (classmethod, staticmethod)):
                f = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                out.append(_sig_block(signature(f'{name}.{attr}', f, method=not isinstance(member, staticmethod)), 'method'))
                if inspect.getdoc(f): out.append(inspect.getdoc(f) + '\n')
    return '\n'.join(out) + '\n'


def render_output(o: dict) -> str:
    "One output of a code cell as Markdown/HTML; an error output fails the build."
    t = o.get('output_type')
    if t == 'error': raise RuntimeError(f"a cell failed: {o.get('ename')}: {o.get('evalue')}")
    if t == 'stream': return f"```text\n{''.join(o.get('text', '')).rstrip()}\n```\n"
    data = o.get('data', {})
    if 'image/png' in data:
        png = ''.join(data['image/png']).replace('\n', '')
        return f'<img class="fitlam-plot" src="data:image/png;base64,{png}"/>\n'
    if 'text/html' in data: return f"<div class=\"fitlam-output\">\n{''.join(data['text/html'])}\n</div>\n"
    if 'text/markdown' in data: return ''.join(data['text/markdown']) + '\n'
    if 'text/plain' in data: return f"```text\n{''.join(data['text/plain']).rstrip()}\n```\n"
    return ''


def notebook_to_md(nb: dict) -> str:
    "A notebook as a Markdown page: prose, the API reference of its exported cells, examples with their outputs."
    cells = nb['cells']
    mod = None
    for c in cells:
        d = directives(''.join(c['source'])) if c['cell_type'] == 'code' else {}
        if 'default_exp' in d: mod = importlib.import_module(f"fitlam.{d['default_exp']}")
    public = set(getattr(mod, '__all__', [])) if mod else set()
    parts = []
    for c in cells:
        src = ''.join(c['source'])
        if c['cell_type'] == 'markdown': parts.append(src + '\n'); continue
        if c['cell_type'] != 'code': continue
        d = directives(src)
        if {'hide', 'default_exp'} & set(d): continue
        if {'export', 'exports', 'exporti'} & set(d) and mod is not None:
            parts += [api_doc(mod, n) for n in defined_names(src) if n in public]
            continue
        code = strip_directives(src)
        if code: parts.append(f'```python\n{code}\n```\n')
        parts += [render_output(o) for o in c.get('outputs', [])]
    return '\n'.join(p for p in parts if p)


def execute(nb_path: Path) -> dict:
    "Run a notebook (cells flagged `slow` skipped, as `nbdev_test` does) and return it with its outputs."
    from execnb.nbio import read_nb
    from execnb.shell import CaptureShell
    nb = read_nb(nb_path)
    skip = lambda cell: cell.cell_type == 'code' and 'slow' in directives(cell.source)
    CaptureShell(path=nb_path.parent).run_all(nb, exc_stop=True, preproc=skip)
    return json.loads(json.dumps(nb, default=dict))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--execute', action='store_true', help='run the module notebooks for their outputs')
    ap.add_argument('--site', default=str(ROOT/'_site'), help='where the site goes (default: _site/)')
    a = ap.parse_args(argv)
    src = Path(tempfile.mkdtemp(prefix='fitlam-docs-'))
    try:
        shutil.copy(ROOT/'README.md', src/'index.md')
        for md in sorted((ROOT/'docs').glob('*.md')): shutil.copy(md, src/md.name)
        for d in (ROOT/'docs').iterdir():
            if d.is_dir(): shutil.copytree(d, src/d.name)
        shutil.copy(ROOT/'tools'/'docs.css', src/'docs.css')
        for nb_path in sorted((ROOT/'nbs').glob('*.ipynb')):
            if nb_path.name.startswith('_') or nb_path.stem == 'index': continue
            is_module = '"#| default_exp' in nb_path.read_text(encoding='utf-8')
            nb = execute(nb_path) if a.execute and is_module else json.loads(nb_path.read_text(encoding='utf-8'))
            (src/f'{nb_path.stem}.md').write_text(notebook_to_md(nb), encoding='utf-8')
            print(f'docs: {nb_path.name}', flush=True)
        r = subprocess.run([str(Path(sys.executable).parent/'mkdocs'), 'build', '--clean', '-q', '-f', str(ROOT/'mkdocs.yml'),
                            '-d', str(Path(a.site).resolve())], cwd=ROOT, env={**os.environ, 'FITLAM_DOCS_SRC': str(src), 'NO_MKDOCS_2_WARNING': '1'})
        if r.returncode == 0: print(f'docs: open {Path(a.site).resolve()/"index.html"}')
        return r.returncode
    finally: shutil.rmtree(src, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
