#!/usr/bin/env python
"""ULMFiT end to end on TREC-6: fitlam vs fastai 2.8.12 in one run, plus two fitlam ablations.

Both libraries run the same pipeline at the same CPU-sized config:
  stage 1  pretrain an AWD-LSTM LM (--emb/--hid/--layers) for --pretrain-epochs on the first
           --pretrain-words words of the Gutenberg corpus (paragraphs as documents)
  stage 2  fine-tune it on the TREC-6 train + valid questions (labels unused)
  stage 3  fine-tune the classifier with gradual unfreezing (4 stages), then the valid error.

fastai runs /work/shared/peer/peer_ulmfit_trec.py (its tutorial's recipe: fit_one_cycle everywhere,
1 frozen LM epoch then --lm-epochs, classifier stages freeze_to(-1), -2, -3, unfreeze with the
tutorial's LRs) in the peer virtualenv, with the valid split passed as its --test set.
fitlam runs the paper's recipe with the paper's defaults (STLR, discriminative LRs / 2.6, base LRs
0.004 / 0.01, Adam betas 0.7/0.99), the same epochs per stage, the same dropouts multipliers, the same
vocab limits (60k, min_freq 3), in a subprocess of this script's Python. Ablations (fitlam):
  no_pretrain  stages 2 + 3 from a randomly initialised LM
  one_cycle    fastai's way with fitlam: fit_one_cycle and fastai's tutorial LRs in stages 2 and 3

Each side's peak RSS is sampled from /proc every 0.2 s per stage (the process and its children).
Run alone (flock -x /tmp/fitlam-cpu.lock ...): the machine is noisy and ratios need a quiet one.

  .venv/bin/python bench/ulmfit_trec.py --data $FITLAM_DATA [--peer-python /tmp/fitlam-peer-venv/bin/python]
"""
import argparse, json, os, platform, re, subprocess, sys, time
from pathlib import Path

from _common import OUT, PEER_PYTHON, SHARED, PeakRSS, loadavg, rss_tree_mb, write_json


def run_sampled(cmd, log_path: Path, stage_re: str, env=None) -> dict:
    """Run `cmd`, tee its output to `log_path`, sample the RSS of its process tree, and cut the samples
    into stages at each output line matching `stage_re` (group 1: the stage's name, which has just ended)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, bufsize=1)
    peaks = {}
    with PeakRSS(proc.pid, every=0.2) as mem, open(log_path, 'w') as log:
        for line in proc.stdout:
            log.write(line); log.flush()
            if (m := re.search(stage_re, line)):
                peaks[m.group(1)] = round(max(mem.peak, rss_tree_mb(proc.pid)), 1); mem.peak = 0.
            if 'Error' in line or line.startswith('[') or 'stage' in line: print('   ', line.rstrip()[:160], flush=True)
        rc = proc.wait()
    if rc: raise SystemExit(f'{cmd[:3]} failed with exit code {rc}; see {log_path}')
    return dict(peak_rss_mb_per_stage=peaks, process_wall_s=round(time.perf_counter() - t0, 1))


# ------------------------------------------------------------------------------------------------
# the fitlam side (runs in a subprocess: `--fitlam-worker`)

def fitlam_worker(args):
    import numpy as np, pandas as pd, torch
    torch.set_num_threads(args.threads)
    from fitlam.core import set_seed
    from fitlam.download import get_corpus, get_dataset
    from fitlam.data import TextClasDataBunch, TextLMDataBunch
    from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_LM_CONFIG
    from fitlam.text_learner import language_model_learner, pretrain_lm, text_classifier_learner

    out = Path(args.workdir)/'fitlam'; out.mkdir(parents=True, exist_ok=True)
    report = dict(variant=args.variant, stages={})
    splits = get_dataset('trec6', path=Path(args.data)/'trec6')
    train, valid = splits['train'], splits['valid']
    config = AWDLSTMConfig(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': args.emb, 'n_hid': args.hid, 'n_layers': args.layers})
    T0 = time.perf_counter()

    def stage(name, fn):
        set_seed(args.seed)
        t = time.perf_counter(); res = fn() or {}; res['wall_s'] = round(time.perf_counter() - t, 1)
        report['stages'][name] = res
        print(f'[{time.perf_counter() - T0:8.1f}s] STAGE_DONE {name} {json.dumps(res)}', flush=True)

    pre_path = Path(args.workdir)/'fitlam_pretrained_lm.pth'
    def pretrain():
        if args.variant == 'no_pretrain': return dict(skipped='no pretraining (ablation)')
        if pre_path.exists(): return dict(reused=str(pre_path))
        source = get_corpus(Path(args.data)/'gutenberg').source(max_words=args.pretrain_words)   # streamed paragraphs
        learn = pretrain_lm(source, config=config, epochs=args.pretrain_epochs, lr=args.pretrain_lr, bs=args.bs, bptt=args.bptt,
                            drop_mult=args.pretrain_drop_mult, seed=args.seed, path=out, progress=False)
        learn.save_lm(pre_path)
        return dict(train_tokens=learn.data.train_dl.n_tokens, vocab=len(learn.vocab), history=learn.recorder.history.to_dict('records'))

    state = {}
    def finetune_lm():
        texts = list(train.text) + list(valid.text)
        data = TextLMDataBunch.from_texts(texts, bs=args.bs, bptt=args.bptt, seed=args.seed, progress=False)
        pretrained = None if args.variant == 'no_pretrain' else pre_path
        lm = language_model_learner(data, config=config if pretrained is None else None, pretrained=pretrained,
                                    drop_mult=args.lm_drop_mult, path=out, progress=False)
        if args.variant == 'one_cycle':       # fastai's tutorial: a frozen epoch at 10x, then all layers, one-cycle
            lm.freeze(); lm.fit_one_cycle(args.lm_frozen_epochs, lr=args.peer_lm_lr * 10)
            lm.unfreeze(); lm.fit_one_cycle(args.lm_epochs, lr=args.peer_lm_lr)
        else: lm.fine_tune(args.lm_epochs, freeze_epochs=args.lm_frozen_epochs)
        state['vocab'], state['enc'] = data.vocab, lm.save_encoder(out/f'enc_{args.variant}.pth')
        return dict(vocab=len(data.vocab), history=lm.recorder.history.to_dict('records'))

    def classifier():
        data = TextClasDataBunch.from_df(train, valid_df=valid, vocab=state['vocab'], bs=args.bs, seed=args.seed, progress=False)
        clas = text_classifier_learner(data, encoder=state['enc'], drop_mult=args.clas_drop_mult, bptt=args.bptt, path=out,
                                       progress=False)
        epochs = [args.clas_epochs] * 3 + [args.clas_last_epochs]
        if args.variant == 'one_cycle':       # fastai's tutorial: freeze_to(-1), (-2), (-3), unfreeze; slice(lr/2.6**4, lr)
            lrs = [float(x) for x in args.peer_clas_lrs.split(',')]
            for k, (ep, lr) in enumerate(zip(epochs, lrs), 1):
                if k == 4: clas.unfreeze()
                else: clas.freeze_to(-k)
                # fastai's slice(lr / 2.6**4, lr) spreads the LRs geometrically over all the layer groups
                clas.fit_one_cycle(ep, lr=lr, lr_factor=None if k == 1 else 2.6 ** (4 / (len(clas.layer_groups) - 1)))
        else: clas.fine_tune(epochs)
        acc = clas.validate()['accuracy']
        state['acc'] = acc
        return dict(valid_accuracy=round(acc, 4), valid_error=round(1 - acc, 4), history=clas.recorder.history.to_dict('records'))

    stage('1_pretrain_lm', pretrain)
    stage('2_finetune_lm', finetune_lm)
    stage('3_classifier', classifier)
    report['valid_error'] = round(1 - state['acc'], 4)
    report['total_wall_s'] = round(time.perf_counter() - T0, 1)
    print('FITLAM_REPORT ' + json.dumps(report), flush=True)


# ------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--data', default=os.environ.get('FITLAM_DATA'), help='folder with trec6/ and gutenberg/ (default: $FITLAM_DATA)')
    ap.add_argument('--peer-python', default=PEER_PYTHON)
    ap.add_argument('--peer-script', default=str(SHARED/'peer'/'peer_ulmfit_trec.py'))
    ap.add_argument('--workdir', default='/tmp/fitlam_bench_ulmfit')
    ap.add_argument('--emb', type=int, default=200); ap.add_argument('--hid', type=int, default=512)
    ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--bs', type=int, default=64); ap.add_argument('--bptt', type=int, default=70)
    ap.add_argument('--pretrain-words', type=int, default=2_000_000); ap.add_argument('--pretrain-epochs', type=int, default=1)
    ap.add_argument('--pretrain-lr', type=float, default=5e-3); ap.add_argument('--pretrain-drop-mult', type=float, default=0.5)
    ap.add_argument('--lm-frozen-epochs', type=int, default=1); ap.add_argument('--lm-epochs', type=int, default=8)
    ap.add_argument('--clas-epochs', type=int, default=2); ap.add_argument('--clas-last-epochs', type=int, default=8)
    ap.add_argument('--lm-drop-mult', type=float, default=0.3); ap.add_argument('--clas-drop-mult', type=float, default=0.5)
    ap.add_argument('--peer-lm-lr', type=float, default=2e-3); ap.add_argument('--peer-clas-lrs', default='2e-2,1e-2,5e-3,1e-3')
    ap.add_argument('--threads', type=int, default=2); ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--variants', default='paper,no_pretrain,one_cycle', help='fitlam variants to run (comma list)')
    ap.add_argument('--skip-peer', action='store_true')
    ap.add_argument('--json', default=str(OUT/'ulmfit_trec.json'))
    ap.add_argument('--fitlam-worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--variant', default='paper', help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fitlam_worker: return fitlam_worker(args)
    if not args.data or not (Path(args.data)/'trec6'/'train.csv').exists():
        raise SystemExit('bench/ulmfit_trec.py needs --data (or $FITLAM_DATA) pointing at a folder with trec6/ and gutenberg/')
    work = Path(args.workdir); work.mkdir(parents=True, exist_ok=True)
    for f in work.glob('fitlam_pretrained_lm.pth'): f.unlink()          # pretrain afresh, timed, in this run
    res = dict(machine=dict(python=platform.python_version(), cpus=os.cpu_count(), threads=args.threads,
                            loadavg_start=loadavg()),
               date=time.strftime('%Y-%m-%d %H:%M'), args={k: v for k, v in vars(args).items() if k not in ('fitlam_worker', 'variant')},
               fitlam={}, fastai=None)
    common = ['--emb', str(args.emb), '--hid', str(args.hid), '--layers', str(args.layers), '--bs', str(args.bs),
              '--bptt', str(args.bptt), '--seed', str(args.seed), '--threads', str(args.threads)]
    for variant in args.variants.split(','):
        print(f'== fitlam, {variant}', flush=True)
        cmd = [sys.executable, __file__, '--fitlam-worker', '--variant', variant, '--data', args.data, '--workdir', args.workdir,
               '--pretrain-words', str(args.pretrain_words), '--pretrain-epochs', str(args.pretrain_epochs),
               '--pretrain-lr', str(args.pretrain_lr), '--pretrain-drop-mult', str(args.pretrain_drop_mult),
               '--lm-frozen-epochs', str(args.lm_frozen_epochs), '--lm-epochs', str(args.lm_epochs),
               '--clas-epochs', str(args.clas_epochs), '--clas-last-epochs', str(args.clas_last_epochs),
               '--lm-drop-mult', str(args.lm_drop_mult), '--clas-drop-mult', str(args.clas_drop_mult),
               '--peer-lm-lr', str(args.peer_lm_lr), '--peer-clas-lrs', args.peer_clas_lrs, *common]
        log = work/f'fitlam_{variant}.log'
        sampled = run_sampled(cmd, log, r'STAGE_DONE (\S+)')
        rep = json.loads(next(l for l in log.read_text().splitlines() if l.startswith('FITLAM_REPORT '))[len('FITLAM_REPORT '):])
        res['fitlam'][variant] = {**rep, **sampled}
    if not args.skip_peer:
        print('== fastai 2.8.12', flush=True)
        d = Path(args.data)
        cmd = [args.peer_python, args.peer_script, '--train', str(d/'trec6'/'train.csv'), '--valid', str(d/'trec6'/'valid.csv'),
               '--test', str(d/'trec6'/'valid.csv'), '--corpus', *sorted(str(p) for p in (d/'gutenberg'/'books').glob('*.txt')),
               '--corpus-format', 'paragraphs', '--corpus-max-words', str(args.pretrain_words),
               '--pretrain-epochs', str(args.pretrain_epochs), '--pretrain-lr', str(args.pretrain_lr),
               '--pretrain-drop-mult', str(args.pretrain_drop_mult), '--lm-frozen-epochs', str(args.lm_frozen_epochs),
               '--lm-epochs', str(args.lm_epochs), '--lm-lr', str(args.peer_lm_lr), '--clas-epochs', str(args.clas_epochs),
               '--clas-last-epochs', str(args.clas_last_epochs), '--clas-lrs', args.peer_clas_lrs,
               '--lm-drop-mult', str(args.lm_drop_mult), '--clas-drop-mult', str(args.clas_drop_mult),
               '--workdir', str(work/'peer'), '--json', str(work/'peer.json'), '--quiet-warnings', *common]
        sampled = run_sampled(cmd, work/'peer.log', r'\] (\d_\w+): \{')
        peer = json.loads((work/'peer.json').read_text())
        res['fastai'] = {**sampled, 'valid_error': peer['stages']['4_test']['test_error'], 'total_wall_s': peer['total_wall_s'],
                         'stage_wall_s': {k: v['wall_s'] for k, v in peer['stages'].items()}, 'report': peer}
    res['machine']['loadavg_end'] = loadavg()
    write_json(args.json, res)
    print(markdown(res))


def markdown(res) -> str:
    "The results as the markdown table for docs/benchmarks.md."
    rows = ['| run | valid error | pretrain s | LM fine-tune s | classifier s | total s | peak RSS MB (pretrain / LM / clas) |',
            '|---|---|---|---|---|---|---|']
    for v, r in res['fitlam'].items():
        s, pk = r['stages'], r['peak_rss_mb_per_stage']
        rows.append(f"| fitlam {v} | {r['valid_error']:.2%} | {s['1_pretrain_lm']['wall_s']} | {s['2_finetune_lm']['wall_s']} | "
                    f"{s['3_classifier']['wall_s']} | {r['total_wall_s']} | "
                    f"{pk.get('1_pretrain_lm', '-')} / {pk.get('2_finetune_lm', '-')} / {pk.get('3_classifier', '-')} |")
    if res['fastai']:
        f, pk = res['fastai'], res['fastai']['peak_rss_mb_per_stage']
        w = f['stage_wall_s']
        rows.append(f"| fastai 2.8.12 | {f['valid_error']:.2%} | {w['1_pretrain_lm']} | {w['2_finetune_lm']} | {w['3_classifier']} | "
                    f"{f['total_wall_s']} | {pk.get('1_pretrain_lm', '-')} / {pk.get('2_finetune_lm', '-')} / {pk.get('3_classifier', '-')} |")
        if 'paper' in res['fitlam']:
            p = res['fitlam']['paper']
            rows.append(f"\nfastai / fitlam (paper recipe): total wall {f['total_wall_s'] / p['total_wall_s']:.2f}x, "
                        f"valid error {f['valid_error']:.2%} vs {p['valid_error']:.2%}")
    return '\n'.join(rows)


if __name__ == '__main__':
    main()
