#!/usr/bin/env python
"""ULMFiT at full scale on one GPU in a fixed time box: every local dataset, the paper's recipe, CUDA checked on the way.

  python bench/full_scale.py              # the full run: 10 minutes on one H100 (--minutes), bench/out/full_scale.json
  python bench/full_scale.py --tiny       # the same code at toy scale on the CPU, < 2 minutes (tests/test_full_scale.py)

Stages (forward LMs; the paper's AWD-LSTM 400/1152/3, bs 64, bptt 70, vocab 60k, min_freq 3; bf16 autocast on CUDA):
  data       read and tokenize every text once (token cache in --work/tokens)
  pretrain   stage 1 from scratch on all the local general text (gutenberg/ + wikitext2's test file; validated on its valid
             file), one-cycle at 5e-3; `--wt103`: fastai's WikiText-103 LM instead (downloaded)
  imdb_lm    stage 2 on IMDb's 22,500 training + 49,730 unlabelled reviews (validated on the 2,500 valid ones): a frozen
             epoch where two fit, then all layers; STLR, discriminative LRs 4e-3 / 2.6 per layer group
  imdb_clas  stage 3 on all 22,500 labels: gradual unfreezing, STLR, 1e-2      imdb_100  the same from 100 balanced labels
  trec6      stages 2 + 3 on TREC-6 (4,906 questions)                          ag_news   the same on the AG News slice (5,472)
  checks     the yardsticks (fitlam.baseline: TF-IDF + logistic regression on each classifier's tokens and split), and CUDA:
             the TREC-6 classifier exported on the device predicts the same classes loaded on the CPU; a training checkpoint
             written on the device (a fit killed after the first of its two epochs) resumes on the CPU
Errors are on the validation splits (the test splits are held out); the paper's test errors are printed beside them.

Time budget: stage s gets --fractions[s] x --minutes, printed as a plan before anything runs. A training stage times a few
batches of its learner (the probe: `lr_find`, which puts weights, optimizer and RNGs back; R tokens/s), so an epoch costs
E = (train_tokens + valid_tokens / 3) / R (validation is forward only) and an LM trains floor(seconds left / E) epochs,
capped by RECIPE (the tutorials' `full` presets). Gradual unfreezing's stage k trains the last k layer groups and runs no
backward pass through a frozen LSTM: its epoch costs (1 + 2u) / 3 of E's training part, u the share of LSTMs that train;
every stage but the last gets the recipe's epochs, the last what is left. At least one epoch per fit. --tok-s plans
from a given speed and the budgets alone, not the probe and the clock: epochs independent of the machine (the test).

The fractions, for 10 minutes on one H100 (not yet timed on a GPU; the JSON keeps every probe's speed to re-set them).
docs/benchmarks.md, "On a GPU": fitlam trains the 400/1152/3 LM at 254k tokens/s on an H100 with a 10k vocab, 157x its
1,619 on 2 CPU cores ("Language-model training"); a 60k vocab adds ~1/6 (decoder): ~215k tokens/s. Gutenberg is 9.69M
tokens, IMDb ~1.27 tokens a word (17M words: ~21.5M tokens) ("Tutorials"); tokenizing runs ~500k tokens/s on 2 cores
("Tokenization at scale"), more on 16. Hence data 48 s (~32M tokens), pretrain 108 s (2 epochs of ~10M tokens), imdb_lm
132 s (1 epoch of 21.5M), imdb_clas 150 s (one epoch per unfreezing stage over 7.2M tokens: ~3.7 full epochs), imdb_100
24 s, trec6 30 s (the recipe's 1+15 LM and 1/1/1/1/20 classifier epochs of ~60k tokens), ag_news 48 s (1+10 and
1/1/1/1/10 of ~270k), checks 60 s (the IMDb yardstick: one TF-IDF fit on 22,500 reviews).
"""
from __future__ import annotations
import argparse, math, os, platform, time
from pathlib import Path

import torch
from _common import OUT, command, data_dir, print_block, write_json
from fitlam.all import (AWDLSTMConfig, Callback, CancelFitException, FASTAI_LM_CONFIG, FitlamError, ListSource, ProgressCallback,
                        TextClasDataBunch, TextLMDataBunch, baseline, default_device, fastai_wt103, get_corpus, get_dataset,
                        language_model_learner, load_learner, set_seed, text_classifier_learner)
from fitlam.core import _device
from fitlam.testing import synth_corpus
from fitlam.tutorial import balanced, stratified

FRACTIONS = dict(data=.08, pretrain=.18, imdb_lm=.22, imdb_clas=.25, imdb_100=.04, trec6=.05, ag_news=.08, checks=.10)
RECIPE = dict(pretrain_epochs=10, imdb_lm_epochs=10, imdb_clas_epochs=1, imdb_clas_final=4, imdb_100_epochs=2,
              imdb_100_final=20, trec6_lm_epochs=15, trec6_clas_epochs=1, trec6_clas_final=20, ag_news_lm_epochs=10,
              ag_news_clas_epochs=1, ag_news_clas_final=10)
TINY_RECIPE = dict(RECIPE, imdb_clas_final=12, imdb_100_final=12, trec6_clas_final=12, ag_news_clas_final=12)  # toy models learn late
PAPER = dict(imdb_clas=4.6, trec6=3.6, ag_news=5.01)          # test error %, the paper's tables 2 and 3 (AG News: 120k rows)
FULL = dict(minutes=10., emb=400, hid=1152, layers=3, bs=64, bptt=70, max_vocab=60_000, min_freq=3, max_docs=0, corpus_words=0,
            pretrain_lr=5e-3, lm_lr=4e-3, clas_lr=1e-2, pretrain_drop_mult=.5, lm_drop_mult=1., clas_drop_mult=1.,
            probe_batches=10, check_texts=200, check_docs=256, device='', threads=0, work='/tmp/fitlam_full_scale',
            out=str(OUT/'full_scale.json'))
TINY = dict(FULL, minutes=1., emb=16, hid=24, layers=2, bs=16, bptt=20, max_vocab=2_000, min_freq=1, max_docs=600,
            corpus_words=20_000, pretrain_lr=1e-2, lm_lr=1e-2, clas_lr=5e-2, pretrain_drop_mult=.1, lm_drop_mult=.1,
            clas_drop_mult=.1, probe_batches=4, check_texts=50, check_docs=64, device='cpu', threads=1,
            work='/tmp/fitlam_full_scale_tiny', out=str(OUT/'full_scale_tiny.json'))   # LRs, dropouts: fitlam's synthetic recipe


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--tiny', action='store_true', help='toy sizes on the CPU (the defaults in brackets below)')
    for k, v in FULL.items():        # 0 or '': all / the default
        ap.add_argument('--' + k.replace('_', '-'), type=type(v), default=None, help=f'default {v!r} [--tiny: {TINY[k]!r}]')
    ap.add_argument('--data', default=None, help='the folder with imdb/ trec6/ ag_news/ gutenberg/ wikitext2/ (default $FITLAM_DATA, else ../shared/data)')
    ap.add_argument('--synthetic', action='store_true', help='fitlam.testing.synth_corpus for every task (--tiny: where the data is absent)')
    ap.add_argument('--wt103', action='store_true', help="skip stage 1: fastai's WikiText-103 LM (downloaded; 400/1152/3)")
    ap.add_argument('--arch', choices=['awd_lstm', 'qrnn'], default='awd_lstm')
    ap.add_argument('--bf16', choices=['auto', 'on', 'off'], default='auto', help='bf16 autocast (auto: on CUDA)')
    ap.add_argument('--fractions', default='', help=f'stage=fraction,... over {FRACTIONS} (renormalised to sum to 1)')
    ap.add_argument('--recipe', default='', help=f'key=epochs,... over {RECIPE} [--tiny: {TINY_RECIPE}]')
    ap.add_argument('--tok-s', type=float, default=None, help='plan the epochs from this speed and the budgets, not the probe and the clock')
    ap.add_argument('--low-shot', type=int, default=100, help='imdb_100: the labels'); ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--task-lm-share', type=float, default=.4, help="trec6 / ag_news: the LM's share of the stage's budget")
    ap.add_argument('--valid-cost', type=float, default=1 / 3, help='the cost of a validation token, in training tokens')
    ap.add_argument('--margin', type=float, default=.01, help='export check: a class may differ only where the top two probabilities are this close')
    ap.add_argument('--yardstick-cv-max', type=int, default=10_000, help='above this many training docs the yardstick fits one C (--yardstick-c)')
    ap.add_argument('--yardstick-c', type=float, default=10.)
    args = ap.parse_args(argv)
    for k in FULL:
        if getattr(args, k) is None: setattr(args, k, (TINY if args.tiny else FULL)[k])
    if args.arch == 'qrnn': raise FitlamError("--arch qrnn: fitlam has no QRNN yet; --arch awd_lstm is the paper's AWD-LSTM")
    return args


def kv(text: str, base: dict, what: str) -> dict:
    "`base` with the `key=value,...` of `text`; an unknown key is an error."
    out = dict(base)
    for item in filter(None, text.split(',')):
        k, _, v = item.partition('=')
        if k not in base: raise FitlamError(f'--{what}: {k!r} unknown; expected one of {sorted(base)}')
        out[k] = type(base[k])(float(v))
    return out


class Clock(Callback):
    "Training tokens (padding left out) and seconds of the fits it is in; `per_batch`: a mark after each batch (the probe)."
    order = 1                          # before LRFinder ends the probe in its after_batch
    def __init__(self, sync, pad: int, per_batch: bool = False):
        self.sync, self.pad, self.per_batch, self.n, self.secs, self.marks = sync, pad, per_batch, 0, 0., []
    def before_train(self): self.sync(); self.t0 = time.perf_counter()
    def after_batch(self):
        if not self.learn.training: return
        n = (self.learn.xb != self.pad).sum()
        if self.per_batch: self.sync(); self.marks.append((time.perf_counter(), int(n)))
        else: self.n = self.n + n      # stays on the device: no sync per batch
    def after_train(self): self.sync(); self.secs += time.perf_counter() - self.t0

class KillAfterFirstEpoch(Callback):
    "End the fit after its first epoch, as a killed job would (the checkpoint of that epoch written)."
    order = 1001                       # after Checkpoint (1000) has written the epoch
    def after_epoch(self): raise CancelFitException()

class Snapshot(Callback):
    "The weights as training starts (after `resume=` restored them)."
    def before_train(self): self.state = {k: v.detach().float().cpu().clone() for k, v in self.learn.model.state_dict().items()}


class Budget:
    "The stages' seconds (the plan), the clock of the one running, its records."
    def __init__(self, args, cuda: bool, device):
        fractions = kv(args.fractions, FRACTIONS, 'fractions')
        self.args, self.cuda, self.device, self.t0, self.records = args, cuda, device, time.perf_counter(), {}
        self.total = args.minutes * 60
        self.budget = {k: self.total * v / sum(fractions.values()) for k, v in fractions.items()}
        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def open(self, name: str):
        if self.cuda: torch.cuda.reset_peak_memory_stats(self.device)
        self.name, self.start, self.planned = name, time.perf_counter(), self.budget[name]
        print(f'\n== [{self.start - self.t0:6.1f} s] {name}: budget {self.budget[name]:.1f} s', flush=True)

    def close(self, **rec):
        s = time.perf_counter() - self.start
        rec.update(budget_s=round(self.budget[self.name], 1), seconds=round(s, 1),
                   peak_gpu_mib=round(torch.cuda.max_memory_allocated(self.device) / 2**20) if self.cuda else None)
        self.records[self.name] = rec
        print(f'== {self.name} done in {s:.1f} s (budget {self.budget[self.name]:.1f}): {rec}', flush=True)

    def left(self) -> float:
        "The stage's seconds left: by the clock, or with --tok-s, its budget less the planned seconds of its earlier fits."
        return max(0., self.planned if self.args.tok_s else self.start + self.budget[self.name] - time.perf_counter())

    def probe(self, learn, data, lr, share: float = 1.) -> dict:
        "Time `--probe-batches` of `learn`'s batches after two warm-up ones; the plan: `share` of the seconds left, an epoch's seconds of training and validation."
        clock = Clock(self.sync, learn.vocab.pad_idx, per_batch=True)
        with learn.added_cbs(clock): learn.lr_find(lr / 100, lr, num_it=self.args.probe_batches + 2, stop_div=False, suggest=())
        (t0, _), rest = clock.marks[1], clock.marks[2:]
        probe, n = sum(k for _, k in rest) / (rest[-1][0] - t0), (lambda dl: int(dl.lengths.sum()))
        rate = self.args.tok_s or probe
        return dict(seconds_left=round(share * self.left(), 3), probe_tok_s=round(probe), planned_tok_s=round(rate),
                    train_s=float(f'{n(data.train_dl) / rate:.6g}'), valid_s=float(f'{self.args.valid_cost * n(data.valid_dl) / rate:.6g}'))

    def fit(self, learn, fit, plan: dict, spent: float, **rec) -> dict:
        "Take the planned seconds off the stage, run `fit` with a Clock and the progress table; the record with tokens/s and the last validation."
        self.planned -= spent
        clock = Clock(self.sync, learn.vocab.pad_idx)
        with learn.added_cbs([clock, ProgressCallback(console=True)]): fit()
        last = learn.recorder.history.iloc[-1]
        return dict(plan, **rec, planned_s=round(spent, 3), tok_s=round(float(clock.n) / clock.secs), train_tokens=int(clock.n),
                    valid_loss=round(float(last['valid_loss']), 4), **{k: round(float(last[k]), 4) for k in ('accuracy', 'perplexity') if k in last})


def load_tasks(args, root: Path, synthetic: bool) -> tuple[dict, object, object]:
    "The three tasks' train / valid DataFrames and unlabelled texts, and stage 1's corpus and its validation text."
    if synthetic:
        def synth(n_classes, seed):
            df = synth_corpus(args.max_docs or 400, n_classes=n_classes, seed=seed); k = len(df) * 4 // 5
            return dict(train=df[:k].reset_index(drop=True), valid=df[k:].reset_index(drop=True), unsup=None)
        tasks = dict(imdb=synth(2, 1), trec6=synth(4, 2), ag_news=synth(4, 3))
        tasks['imdb']['unsup'] = list(synth_corpus(args.max_docs or 400, n_classes=2, seed=101).text)
        return tasks, ListSource(list(synth_corpus(600, 4, seed=4).text)), ListSource(list(synth_corpus(100, 4, seed=5).text))
    for name in ('imdb', 'trec6', 'ag_news', 'gutenberg', 'wikitext2'):
        if not (root/name).is_dir():
            raise FitlamError(f'{root/name}: missing. The full run reads imdb/, trec6/, ag_news/, gutenberg/ and wikitext2/ from --data, '
                              f'else $FITLAM_DATA, else ../shared/data; `--tiny` runs without them on synthetic data')
    cut = (lambda df: stratified(df, args.max_docs, args.seed).reset_index(drop=True)) if args.max_docs else (lambda df: df)
    tasks = {}
    for name in ('imdb', 'trec6', 'ag_news'):
        d = get_dataset(name, path=root/name)
        tasks[name] = dict(train=cut(d['train']), valid=cut(d['valid']),
                           unsup=list(d['unsup'].text[:args.max_docs or None]) if 'unsup' in d else None)
    words = args.corpus_words or None
    corpus = [get_corpus(root/'gutenberg').source(max_words=words), get_corpus(root/'wikitext2'/'wiki.test.tokens').source(max_words=words)]
    return tasks, corpus, get_corpus(root/'wikitext2'/'wiki.valid.tokens').source(max_words=words and words // 5)


def main(argv=None):
    args = parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    device = _device(args.device) if args.device else default_device()
    cuda = device.type == 'cuda'
    bf16 = args.bf16 == 'on' or (args.bf16 == 'auto' and cuda)
    B, recipe = Budget(args, cuda, device), kv(args.recipe, TINY_RECIPE if args.tiny else RECIPE, 'recipe')
    work = Path(args.work); work.mkdir(parents=True, exist_ok=True)
    learner_kw = dict(device=device, bf16=bf16, path=work, progress=False)
    data_kw = dict(bs=args.bs, seed=args.seed, cache_dir=work/'tokens', progress=False)
    root = Path(args.data).resolve() if args.data else data_dir()
    synthetic = args.synthetic or (args.tiny and not all((root/n).is_dir() for n in ('imdb', 'trec6', 'ag_news', 'gutenberg', 'wikitext2')))

    # 0. the plan, printed before anything runs
    report = dict(command=command(), date=time.strftime('%Y-%m-%d %H:%M %Z'), tiny=args.tiny, synthetic=synthetic, bf16=bf16,
                  machine=dict(device=torch.cuda.get_device_name(device) if cuda else f'CPU ({os.cpu_count()} cores)',
                               torch=torch.__version__, python=platform.python_version(), threads=torch.get_num_threads()),
                  args=vars(args), recipe=recipe, plan=dict(total_s=B.total, stages={k: round(v, 2) for k, v in B.budget.items()}),
                  stages=B.records, checks={})
    print(f"PLAN {B.total:.0f} s on {report['machine']['device']}, bf16 {bf16}, AWD-LSTM {args.emb}/{args.hid}/{args.layers}, "
          f"{'synthetic data' if synthetic else root}{' (--tiny)' if args.tiny else ''}; epoch caps {recipe}")
    for k, v in B.budget.items(): print(f'PLAN   {k:<10} {v / B.total:6.1%} {v:7.1f} s')
    print(f"PLAN   epochs: floor(seconds left x {'--tok-s' if args.tok_s else 'probed'} tokens/s / (train + valid / "
          f"{1 / args.valid_cost:.0f} tokens)), each stage of gradual unfreezing at its cost", flush=True)

    def lm_fine_tune(name, pretrained, cap, share=1.):
        "Stage 2 in `share` of the seconds left: a frozen epoch where two or more fit, then all layers; the encoder's file and the record."
        lm = language_model_learner(lm_data[name], pretrained=pretrained, drop_mult=args.lm_drop_mult, **learner_kw)
        plan = B.probe(lm, lm_data[name], args.lm_lr, share)
        epoch_s = plan['train_s'] + plan['valid_s']
        e = max(1, min(cap + 1, int(plan['seconds_left'] // epoch_s)))
        rec = B.fit(lm, lambda: lm.fine_tune(e - (e > 1), lr=args.lm_lr, freeze_epochs=int(e > 1)), plan, e * epoch_s,
                    epochs=[int(e > 1), e - (e > 1)], vocab=len(lm_data[name].vocab))
        return lm.save_encoder(work/f'enc_{name}.pth'), rec

    def classifier(data, enc, per_stage, cap):
        "Stage 3 in the seconds left: gradual unfreezing, each stage but the last `per_stage` epochs, the last what is left (<= cap)."
        clas = text_classifier_learner(data, encoder=enc, drop_mult=args.clas_drop_mult, **learner_kw)
        plan, n = B.probe(clas, data, args.clas_lr), len(clas.layer_groups)     # groups: embedding, the LSTMs, the head
        cost = [plan['train_s'] * (1 + 2 * min(1, (k - 1) / max(1, n - 2))) / 3 + plan['valid_s'] for k in range(1, n + 1)]
        first = per_stage if per_stage * sum(cost[:-1]) + cost[-1] <= plan['seconds_left'] else 1
        epochs = [first] * (n - 1) + [max(1, min(cap, int((plan['seconds_left'] - first * sum(cost[:-1])) // cost[-1])))]
        rec = B.fit(clas, lambda: clas.fine_tune(epochs, lr=args.clas_lr), plan, sum(e * c for e, c in zip(epochs, cost)), epochs=epochs,
                    stage_s=[round(c, 6) for c in cost])
        rec.update(valid_error=round(1 - rec['accuracy'], 4), n_train=len(data.train_dl.docs), n_valid=len(data.valid_dl.docs))
        return clas, rec

    # 1. data: every text read and tokenized once; the task LMs keep stage 1's words in their vocab
    B.open('data')
    tasks, corpus, corpus_valid = load_tasks(args, root, synthetic)
    vocab_kw = dict(max_vocab=args.max_vocab, min_freq=args.min_freq)
    if args.wt103: pretrained = pre_vocab = fastai_wt103()
    else:
        corpus = corpus if isinstance(corpus, list) else [corpus]
        pre_data = TextLMDataBunch.from_sources(corpus[0], corpus_valid, extra=corpus[1:], bptt=args.bptt, **vocab_kw, **data_kw)
        pre_vocab = pre_data.vocab
    lm_data, clas_data = {}, {}
    for name, t in tasks.items():
        lm_data[name] = TextLMDataBunch.from_sources(ListSource(list(t['train'].text)), ListSource(list(t['valid'].text)),
                                                     extra=[ListSource(t['unsup'])] if t['unsup'] else (), bptt=args.bptt,
                                                     pretrained_vocab=pre_vocab, **vocab_kw, **data_kw)
        clas_data[name] = TextClasDataBunch.from_df(t['train'], valid_df=t['valid'], vocab=lm_data[name].vocab, **data_kw)
    few = balanced(tasks['imdb']['train'], args.low_shot, args.seed)
    clas_data['imdb_100'] = TextClasDataBunch.from_df(few, valid_df=tasks['imdb']['valid'], vocab=lm_data['imdb'].vocab, **{**data_kw, 'bs': min(16, args.bs)})
    t6 = tasks['trec6']
    check_data = TextClasDataBunch.from_df(t6['train'][:args.check_docs], valid_df=t6['valid'][:args.check_docs // 2],
                                           vocab=lm_data['trec6'].vocab, **data_kw)
    B.close(pretrain_tokens=None if args.wt103 else pre_data.train_dl.n_tokens, **{f'{k}_lm_tokens': d.train_dl.n_tokens for k, d in lm_data.items()})

    # 2. stage 1: the LM from scratch on the general text, one-cycle (or fastai's WikiText-103 LM)
    B.open('pretrain')
    if args.wt103: B.close(skipped="--wt103: fastai's WikiText-103 LM")
    else:
        set_seed(args.seed)
        config = AWDLSTMConfig(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': args.emb, 'n_hid': args.hid, 'n_layers': args.layers})
        lm = language_model_learner(pre_data, config=config, drop_mult=args.pretrain_drop_mult, **learner_kw)
        plan = B.probe(lm, pre_data, args.pretrain_lr)
        epoch_s = plan['train_s'] + plan['valid_s']
        e = max(1, min(recipe['pretrain_epochs'], int(plan['seconds_left'] // epoch_s)))
        B.close(**B.fit(lm, lambda: lm.fit_one_cycle(e, lr=args.pretrain_lr), plan, e * epoch_s, epochs=e, vocab=len(pre_data.vocab)))
        pretrained = lm.save_lm(work/'pretrained_lm.pth')
        del lm

    # 3. IMDb: stage 2 on train + unsup, then stage 3 on all the labels and on 100 of them, from the same fine-tuned LM
    B.open('imdb_lm'); set_seed(args.seed)
    imdb_enc, rec = lm_fine_tune('imdb', pretrained, recipe['imdb_lm_epochs']); B.close(**rec)
    for name, data in (('imdb_clas', clas_data['imdb']), ('imdb_100', clas_data['imdb_100'])):
        B.open(name); set_seed(args.seed)
        _, rec = classifier(data, imdb_enc, recipe[f'{name}_epochs'], recipe[f'{name}_final']); B.close(**rec, paper_error=PAPER.get(name))

    # 4. TREC-6 and AG News: stages 2 + 3, the LM in `--task-lm-share` of the stage's budget
    learners = {}
    for name in ('trec6', 'ag_news'):
        B.open(name); set_seed(args.seed)
        enc, lm_rec = lm_fine_tune(name, pretrained, recipe[f'{name}_lm_epochs'], share=args.task_lm_share)
        learners[name], rec = classifier(clas_data[name], enc, recipe[f'{name}_clas_epochs'], recipe[f'{name}_clas_final'])
        B.close(**rec, lm=lm_rec, paper_error=PAPER.get(name))

    # 5. checks: the yardsticks; an export trained on the device predicts the same classes on the CPU; a checkpoint
    #    written on the device resumes on the CPU
    B.open('checks')
    for name, data in (('imdb_clas', clas_data['imdb']), *((k, clas_data[k]) for k in ('imdb_100', 'trec6', 'ag_news'))):
        try:
            y = baseline(data, **({} if len(data.train_dl.docs) <= args.yardstick_cv_max else {'C': args.yardstick_c}), seed=args.seed)
            B.records[name].update(yardstick_error=round(y.error, 4), yardstick_C=y.C)
        except FitlamError as e: B.records[name].update(yardstick_error=None, yardstick_note=str(e))   # no scikit-learn
    clas, texts = learners['trec6'], list(t6['valid'].text[:args.check_texts])
    p_dev = clas.predict_proba(texts).float().cpu()
    p_cpu = load_learner(clas.export(work/'trec6_export.pth'), device='cpu').predict_proba(texts)
    top2, differ = p_dev.topk(2, dim=1).values, p_dev.argmax(1) != p_cpu.argmax(1)
    flips = int((differ & (top2[:, 0] - top2[:, 1] > args.margin)).sum())       # near-ties may flip under bf16
    report['checks']['export'] = dict(trained_on=str(device), texts=len(texts), same_class=round(1 - float(differ.float().mean()), 4),
                                      max_prob_diff=float((p_dev - p_cpu).abs().max()), flips_beyond_margin=flips, passed=flips == 0)
    set_seed(args.seed)
    ck, enc6, snap = work/'resume_check.pth', work/'enc_trec6.pth', Snapshot()
    dev = text_classifier_learner(check_data, encoder=enc6, drop_mult=args.clas_drop_mult, **learner_kw)
    dev.fit(2, lr=args.clas_lr, checkpoint=ck, cbs=KillAfterFirstEpoch())                  # killed after its first epoch
    cpu = text_classifier_learner(check_data, encoder=enc6, drop_mult=args.clas_drop_mult, **{**learner_kw, 'device': 'cpu', 'bf16': False})
    cpu.fit(2, lr=args.clas_lr, resume=ck, cbs=snap)                                       # the second epoch, on the CPU
    diff = max(float((snap.state[k] - v.detach().float().cpu()).abs().max()) for k, v in dev.model.state_dict().items())
    hist = cpu.recorder.history
    report['checks']['resume'] = dict(written_on=str(device), resumed_on='cpu', weights_max_diff=diff, epochs=hist['epoch'].tolist(),
                                      valid_loss=float(hist['valid_loss'].iloc[-1]),
                                      passed=diff == 0 and hist['epoch'].tolist() == [0, 1] and math.isfinite(hist['valid_loss'].iloc[-1]))
    B.close(**{k: c['passed'] for k, c in report['checks'].items()})

    # 6. the results: JSON, the markdown table, and a non-zero exit if a check failed
    report['total_s'], report['passed'] = round(time.perf_counter() - B.t0, 1), all(c['passed'] for c in report['checks'].values())
    write_json(args.out, report)
    print_block(table(report), args.out)
    if not report['passed']: raise SystemExit(f"a CUDA check failed: {report['checks']}")


def table(r) -> list[str]:
    "The results as a markdown table for docs/benchmarks.md."
    pct = lambda v: '-' if v is None else f'{100 * v:.2f}%'
    rows = [f"{r['machine']['device']}, torch {r['machine']['torch']}, bf16 {r['bf16']}: plan {r['plan']['total_s']:.0f} s, total "
            f"{r['total_s']} s; checks: " + ', '.join(f"{k} {'passed' if c['passed'] else 'FAILED'}" for k, c in r['checks'].items()), '',
            '| stage | budget s | seconds | epochs | train tokens/s | valid | yardstick (TF-IDF) | paper (test) | peak GPU MiB |',
            '|---|---|---|---|---|---|---|---|---|']
    for name, s in r['stages'].items():
        lm = s.get('lm', {})
        valid = f"ppl {s['perplexity']:.1f}" if 'perplexity' in s else pct(s['valid_error']) if 'valid_error' in s else '-'
        if lm: valid += f" (LM ppl {lm['perplexity']:.1f})"
        rows.append(f"| {name} | {s['budget_s']} | {s['seconds']} | {s.get('epochs', '-')}{' (LM %s)' % lm['epochs'] if lm else ''} | "
                    f"{s.get('tok_s') or '-'}{' (LM %s)' % lm['tok_s'] if lm else ''} | {valid} | {pct(s.get('yardstick_error'))} | {s.get('paper_error') or '-'} | "
                    f"{s['peak_gpu_mib'] or '-'} |")
    return rows


if __name__ == '__main__':
    try: main()
    except FitlamError as e: raise SystemExit(f'bench/full_scale.py: {e}')
