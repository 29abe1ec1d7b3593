#!/usr/bin/env python
"""Download every file of fitlam's download registry and print its size, md5 and SHA-256, for `Remote(sha256=...)`.

The registry knows a whole-file SHA-256 only where one could be computed offline (TREC's `train_5500.label`, from the
shared byte-for-byte copy). Run this where there is internet, check the values against the files' publishers where
they publish any, and paste the SHA-256s into `REGISTRY` in `nbs/15_download.ipynb`:

    .venv/bin/python tools/registry_checksums.py                 # every registry file (about 700 MB)
    .venv/bin/python tools/registry_checksums.py trec6 wt103_fwd # some of them
"""
import hashlib, sys, urllib.request

from fitlam.download import REGISTRY


def hashes(url: str) -> tuple[int, str, str]:
    "The size, md5 and SHA-256 of the file at `url`, streamed."
    md5, sha, n = hashlib.md5(), hashlib.sha256(), 0
    with urllib.request.urlopen(urllib.request.Request(url, headers={'User-Agent': 'fitlam'}), timeout=60) as r:
        while block := r.read(1 << 20): md5.update(block); sha.update(block); n += len(block)
    return n, md5.hexdigest(), sha.hexdigest()


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in REGISTRY]
    if unknown: print(f'unknown names {unknown}; known: {sorted(REGISTRY)}', file=sys.stderr); return 2
    for name in names or sorted(REGISTRY):
        for remote in REGISTRY[name].remotes:
            size, md5, sha = hashes(remote.url)
            same = [f'{k} {"ok" if want in (None, got) else f"DIFFERS (registry {want})"}'
                    for k, want, got in (('size', remote.size, size), ('md5', None if remote.md5_bytes else remote.md5, md5),
                                         ('sha256', remote.sha256, sha))]
            print(f'{name}: {remote.url}\n    size={size}, md5={md5!r}, sha256={sha!r}  ({", ".join(same)})')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
