"""Where a fitlam LM training batch spends its time: torch.profiler over 3 batches (after 4 untimed), ops by self CPU time.

    flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/diagnostics/lm_profile.py 400,1152,3

fitlam only (a diagnostic for bench/lm_train.py): `language_model_learner(data, config).fit_one_cycle(1, 2e-3, moms=(0.8, 0.7, 0.8))`
on random ids over a 10k vocab, bs 64, bptt 70 (fixed), 2 threads. Prints each batch's seconds and the op table.
"""
import sys, time, numpy as np, torch
torch.set_num_threads(2)
from torch.profiler import profile, schedule, ProfilerActivity
from fitlam.callback import Callback
from fitlam.core import set_seed
from fitlam.data import TextLMDataBunch
from fitlam.models.awdlstm import AWDLSTMConfig
from fitlam.text_learner import language_model_learner
from fitlam.corpus import DocIds
from fitlam.tokenizer import Tokenizer
from fitlam.vocab import Vocab
emb, hid, nl = map(int, (sys.argv[1] if len(sys.argv) > 1 else '400,1152,3').split(','))
set_seed(0)
vocab = Vocab(['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxmaj', 'xxup', 'xxrep', 'xxwrep'] + [f'w{i}' for i in range(10_000 - 9)])
rng = np.random.default_rng(0)
docs = [rng.integers(9, 10_000, 2000) for _ in range(30)]
data = TextLMDataBunch(DocIds.from_lists(docs), DocIds.from_lists([docs[0]]), vocab, Tokenizer(), bs=64, bptt=70, variable_bptt=False)
learn = language_model_learner(data, AWDLSTMConfig(emb_sz=emb, n_hid=hid, n_layers=nl), progress=False, metrics=[])
times = []
class P(Callback):
    order = 10_000
    def before_batch(self):
        if self.learn.training: self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.learn.training: return
        times.append(time.perf_counter() - self.t0); prof.step()
sched = schedule(wait=3, warmup=1, active=3, repeat=1)
with profile(activities=[ProfilerActivity.CPU], schedule=sched, record_shapes=True) as prof:
    learn.fit_one_cycle(1, 2e-3, moms=(0.8, 0.7, 0.8), cbs=[P()])
print('batch s:', [round(t, 3) for t in times])
ka = prof.key_averages()
print(ka.table(sort_by='self_cpu_time_total', row_limit=40, max_name_column_width=60))
