#!/usr/bin/env python
"""Write a pretrained LM checkpoint into the package as a shipped LM: its weights in float16 (tied tensors once),
everything else as saved, under fitlam/pretrained/NAME.pth; print its size and SHA-256 for `fitlam.models.zoo.SHIPPED`.

    .venv/bin/python tools/ship_lm.py /tmp/race/lms/awd_words.pth fitlam_en_small   # the LM of bench/lm_race.py --save
"""
import sys

from fitlam.core import atomic_save
from fitlam.models.pretrained import cpu_state, read_checkpoint
from fitlam.models.zoo import PRETRAINED_DIR, file_sha256

def main(src: str, name: str):
    ckpt = read_checkpoint(src)
    state = cpu_state(ckpt['state_dict'], half=True)
    out = PRETRAINED_DIR/f'{name}.pth'
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_save({**ckpt, 'state_dict': state}, out)
    print(f'{out}: {out.stat().st_size:,} bytes, sha256 {file_sha256(out)}')

if __name__ == '__main__': main(*sys.argv[1:])
