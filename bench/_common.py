"""What the benchmark scripts share: paths, the load average, JSON output, and memory samplers of a process tree.

Standard library only: the peer's python (fastai's virtualenv) imports it too, when a script runs a worker there.
A script in bench/ imports it as `from _common import ...` (Python puts the script's folder first on sys.path).
"""
from __future__ import annotations
import json, os, sys, threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent           # the checkout
OUT = ROOT/'bench'/'out'                                # the scripts' JSON files (git-ignored)
SHARED = ROOT.parent/'shared'                           # beside the checkout: data/ and peer/
PEER_PYTHON = '/tmp/fitlam-peer-venv/bin/python'        # fastai 2.8.12's virtualenv (bash ../shared/peer/setup.sh)


def loadavg() -> list[str]:
    "The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."
    with open('/proc/loadavg') as f: return f.read().split()[:3]


def data_dir() -> Path:
    "The real data: $FITLAM_DATA, else ../shared/data beside the checkout."
    return Path(os.environ.get('FITLAM_DATA', SHARED/'data')).resolve()     # absolute: the peer runs in another folder


def require_peer_python(python: str):
    "Exit with a hint when the peer's python is missing."
    if not Path(python).exists(): raise SystemExit(f'{python}: no such python (run ../shared/peer/setup.sh)')


def command() -> str:
    "The command line that started this process, the python by its name."
    return ' '.join([Path(sys.executable).name] + sys.argv)


def write_json(path, obj):
    "Write `obj` to `path` as indented JSON, making its folder first."
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=1))


def print_block(lines: list[str], json_path):
    "Print the markdown block for docs/benchmarks.md, then where the JSON went."
    print('\n' + '\n'.join(lines))
    print(f'\nJSON: {json_path}')


# Memory of a process tree, from /proc.
def _children() -> dict[int, list[int]]:
    "Every process's children, by parent id (a scan of /proc/*/stat: the children of all the parent's threads)."
    kids = {}
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            with open(f'/proc/{p}/stat') as f: ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(p))
        except (OSError, IndexError, ValueError): pass
    return kids


def tree_mem(root: int) -> tuple[int, int, int]:
    "(RSS, PSS) in kB summed over `root` and its descendants, and the number of processes."
    kids, todo, rss, pss, n = _children(), [root], 0, 0, 0
    while todo:
        p = todo.pop(); todo += kids.get(p, [])
        try:
            with open(f'/proc/{p}/smaps_rollup') as f:
                for line in f:
                    k, v = line.split(':', 1)
                    if k == 'Rss': rss += int(v.split()[0])
                    elif k == 'Pss': pss += int(v.split()[0])
            n += 1
        except OSError: pass
    return rss, pss, n


def tree_pids(pid: int) -> list[int]:
    "`pid` and its descendants, through /proc/PID/task/PID/children (the children of each process's main thread)."
    out, todo = [], [pid]
    while todo:
        p = todo.pop(); out.append(p)
        try:
            with open(f'/proc/{p}/task/{p}/children') as f: todo += [int(c) for c in f.read().split()]
        except OSError: pass
    return out


def rss_tree_mb(pid: int) -> float:
    "Resident memory (VmRSS) of `pid` and its descendants, MB."
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f'/proc/{p}/status') as f:
                total += next(int(l.split()[1]) for l in f if l.startswith('VmRSS:'))
        except (OSError, StopIteration): pass
    return total / 1024


class Sampler:
    "Call `sample()` every `every` s in a thread while the block runs (`reset()` first); a subclass keeps the peaks."
    def __init__(self, pid: int | None = None, every: float = 0.02): self.pid, self.every = pid or os.getpid(), every
    def reset(self): pass
    def sample(self): raise NotImplementedError
    def __enter__(self):
        self.reset()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True); self._t.start()
        return self
    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every)
    def __exit__(self, *exc):
        self._stop.set(); self._t.join()


class PeakMem(Sampler):
    "The peaks of the RSS and PSS summed over the process tree under `pid` (default: this process), and of its size."
    def reset(self): self.rss = self.pss = self.procs = 0
    def sample(self):
        rss, pss, n = tree_mem(self.pid)
        self.rss, self.pss, self.procs = max(self.rss, rss), max(self.pss, pss), max(self.procs, n)
    def mb(self) -> dict: return dict(peak_rss_mb=round(self.rss / 1024), peak_pss_mb=round(self.pss / 1024), max_processes=self.procs)


class PeakRSS(Sampler):
    "The peak of `rss_tree_mb(pid)` (MB) while the block runs; set `peak` to 0 to start a new stretch."
    def reset(self): self.peak = 0.
    def sample(self): self.peak = max(self.peak, rss_tree_mb(self.pid))
