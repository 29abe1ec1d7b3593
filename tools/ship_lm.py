#!/usr/bin/env python
"""Write a pretrained LM checkpoint into the package as a shipped LM: its weights in float16 (tied tensors once),
everything else as saved, under fitlam/pretrained/NAME.pth; print its size and SHA-256 for `fitlam.models.zoo.SHIPPED`.

    .venv/bin/python tools/ship_lm.py /tmp/race/lms/awd_words.pth fitlam_en_small   # the LM of bench/lm_race.py --save
"""
import sys

from fitlam.core import atomic_save
from fitlam.models.pretrained import read_checkpoint
from fitlam.models.zoo import PRETRAINED_DIR, file_sha256

def main(src: str, name: str):
    ckpt = read_checkpoint(src)
    seen, state = {}, {}
    for k, v in ckpt['state_dict'].items():
        key = (v.data_ptr(), v.shape, v.stride())
        if key not in seen: seen[key] = v.half() if v.is_floating_point() else v
        state[k] = seen[key]
    out = PRETRAINED_DIR/f'{name}.pth'
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({**ckpt, 'state_dict': state}, out)
    print(f'{out}: {out.stat().st_size:,} bytes, sha256 {file_sha256(out)}')

if __name__ == '__main__': main(*sys.argv[1:])
