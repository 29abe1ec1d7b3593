#!/usr/bin/env python
"""The development environment's lock file, `requirements/dev.lock`: every package `make` installs beside torch, pinned with its SHA-256.

    python tools/lock.py            # resolve `.[dev]` afresh (pip's resolver, from the package index) and write the lock
    python tools/lock.py --check    # exit 1, saying why, if pyproject.toml's requirements changed since the lock was written
    python tools/lock.py --matches  # exit 0 if this interpreter and platform are the ones the lock was made for

The lock pins files for one platform (the CI and developers' machines: the header names it); `make` installs from it
with `pip install --require-hashes --no-deps` where the platform matches and from pyproject.toml's ranges, with a
warning, elsewhere. torch itself stays outside the lock: `make` installs the build named by `$(TORCH)` first (the CPU
wheel), and the lock pins torch's own dependencies. The package's ranges in pyproject.toml stay open for users.
"""
import argparse, hashlib, json, os, platform, subprocess, sys, sysconfig, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT/'requirements'/'dev.lock'
UNLOCKED = {'fitlam', 'torch'}          # the project itself (editable) and torch (the Makefile's $(TORCH))


def platform_tag() -> str:
    "The interpreter and platform a lock is valid for, e.g. `cp311-linux-x86_64`."
    return f'{sys.implementation.name[:2]}{sys.version_info[0]}{sys.version_info[1]}-{sysconfig.get_platform().replace(".", "_")}'


def makefile_torch() -> str:
    "The torch requirement the Makefile installs first (its `TORCH ?=` line)."
    return next(l.split('?=', 1)[1].strip() for l in (ROOT/'Makefile').read_text().splitlines() if l.startswith('TORCH'))


def spec_digest() -> str:
    "A digest of what the lock must satisfy: pyproject.toml's dependencies and its dev extra, and the torch the Makefile installs."
    import tomllib
    proj = tomllib.loads((ROOT/'pyproject.toml').read_text(encoding='utf-8'))['project']
    spec = json.dumps([sorted(proj['dependencies']), sorted(proj['optional-dependencies']['dev']), makefile_torch()])
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _header(path: Path) -> dict:
    "The `# key: value` lines at the top of the lock."
    out = {}
    for line in path.read_text(encoding='utf-8').splitlines():
        if not line.startswith('#'): break
        if ': ' in line: k, v = line[1:].split(': ', 1); out[k.strip()] = v.strip()
    return out


def resolve(torch: str) -> list[dict]:
    "Resolve `torch` and `.[dev]` from scratch with pip (`--dry-run --report`): one dict per package, with the file pip chose."
    with tempfile.TemporaryDirectory() as d:
        report = Path(d)/'report.json'
        subprocess.run([sys.executable, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--quiet', '--report', str(report),
                        torch, '-e', f'{ROOT}[dev]'], check=True)
        return json.loads(report.read_text())['install']


def write_lock(torch: str) -> int:
    rows = []
    for item in resolve(torch):
        name, version = item['metadata']['name'], item['metadata']['version']
        if name.lower() in UNLOCKED: continue
        sha = item['download_info'].get('archive_info', {}).get('hashes', {}).get('sha256')
        if not sha:
            url = item['download_info']['url']
            if not url.startswith('file://'): raise SystemExit(f'lock: pip gave no SHA-256 for {name} {version} ({url})')
            sha = hashlib.sha256(Path(url[len('file://'):]).read_bytes()).hexdigest()
        rows.append(f'{name}=={version} \\\n    --hash=sha256:{sha}')
    LOCK.parent.mkdir(exist_ok=True)
    head = [f'# The development environment of fitlam, pinned with hashes: written by `python tools/lock.py`; do not edit.',
            f'# platform: {platform_tag()}', f'# spec: {spec_digest()}', f'# torch: {torch} (installed first, outside the lock)']
    tmp = LOCK.with_suffix('.tmp')
    tmp.write_text('\n'.join(head + sorted(rows, key=str.lower)) + '\n', encoding='utf-8')
    os.replace(tmp, LOCK)
    print(f'wrote {LOCK.relative_to(ROOT)}: {len(rows)} packages for {platform_tag()}')
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument('--check', action='store_true', help="fail if pyproject.toml's requirements changed since the lock was written")
    g.add_argument('--matches', action='store_true', help='succeed only on the platform the lock was made for')
    a = ap.parse_args()
    if a.check or a.matches:
        if not LOCK.is_file(): print(f'{LOCK.relative_to(ROOT)}: missing; write it with `python tools/lock.py`'); return 1
        head = _header(LOCK)
        if a.matches: return 0 if head.get('platform') == platform_tag() else 1
        if sys.version_info < (3, 11): print('lock: not checked (reading pyproject.toml needs Python 3.11)'); return 0
        if head.get('spec') != spec_digest():
            print(f"{LOCK.relative_to(ROOT)} is out of date: pyproject.toml's requirements (or the Makefile's TORCH) changed since "
                  f"it was written; refresh it with `make lock`")
            return 1
        print(f'{LOCK.relative_to(ROOT)}: current ({head.get("platform")})')
        return 0
    return write_lock(makefile_torch())


if __name__ == '__main__':
    sys.exit(main())
