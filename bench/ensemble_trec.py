"""Forward, backward and forward + backward ULMFiT on TREC-6 (the paper's 3.3 ensemble), at bench/ulmfit_trec.py's CPU scale.

Stage 1 pretrains two LMs, one reading left to right and one right to left (`pretrain_lm(backwards=)`), on the same first
`--pretrain-words` words of `gutenberg/`; then `ulmfit_ensemble` fine-tunes each on the TREC-6 questions and trains a
classifier on each (gradual unfreezing, STLR, discriminative LRs), and the ensemble averages their probabilities. Errors
are on `trec6/valid.csv` (546 questions; the test split is held out).

  FITLAM_DATA=../shared/data flock -x /tmp/fitlam-cpu.lock .venv/bin/python bench/ensemble_trec.py

Prints a markdown table for docs/benchmarks.md and writes bench/out/ensemble_trec.json.
"""
import argparse, os, platform, time
from pathlib import Path

from _common import OUT, write_json


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--data', default=os.environ.get('FITLAM_DATA'), help='folder with trec6/ and gutenberg/ (default: $FITLAM_DATA)')
    ap.add_argument('--pretrain-words', type=int, default=1_000_000)
    ap.add_argument('--emb', type=int, default=200); ap.add_argument('--hid', type=int, default=512); ap.add_argument('--layers', type=int, default=2)
    ap.add_argument('--lm-epochs', type=int, default=4); ap.add_argument('--lm-frozen-epochs', type=int, default=1)
    ap.add_argument('--clas-epochs', type=int, default=1); ap.add_argument('--clas-last-epochs', type=int, default=6)
    ap.add_argument('--seed', type=int, default=42)
    ap.add_argument('--workdir', default='/tmp/fitlam_bench_ensemble')
    args = ap.parse_args()
    if not args.data or not (Path(args.data)/'trec6'/'train.csv').exists():
        raise SystemExit('bench/ensemble_trec.py needs --data (or $FITLAM_DATA) pointing at a folder with trec6/ and gutenberg/')

    import torch
    from fitlam.download import get_corpus, get_dataset
    from fitlam.models.awdlstm import AWDLSTMConfig, FASTAI_LM_CONFIG
    from fitlam.text_learner import pretrain_lm, ulmfit

    work = Path(args.workdir); work.mkdir(parents=True, exist_ok=True)
    config = AWDLSTMConfig(**{**FASTAI_LM_CONFIG.to_dict(), 'emb_sz': args.emb, 'n_hid': args.hid, 'n_layers': args.layers})
    splits = get_dataset('trec6', path=Path(args.data)/'trec6')
    train, valid = splits['train'], splits['valid']
    report, times = dict(date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()), machine=platform.machine(),
                         threads=torch.get_num_threads(), args=vars(args)), {}

    lms = {}
    for direction, backwards in (('forward', False), ('backward', True)):
        path = work/f'lm_{direction}.pth'
        t = time.perf_counter()
        if not path.exists():
            source = get_corpus(Path(args.data)/'gutenberg').source(max_words=args.pretrain_words)
            lm = pretrain_lm(source, config=config, backwards=backwards, seed=args.seed, path=work, progress=False)
            lm.save_lm(path)
            report[f'pretrain_{direction}'] = dict(train_tokens=lm.data.train_dl.n_tokens, vocab=len(lm.vocab),
                                                  valid_perplexity=float(lm.recorder.history.perplexity.iloc[-1]))
        times[f'pretrain {direction}'] = time.perf_counter() - t
        lms[direction] = path
        print(f'pretrained the {direction} LM: {times[f"pretrain {direction}"]:.1f} s', flush=True)

    clas = {}
    for direction, backwards in (('forward', False), ('backward', True)):
        t = time.perf_counter()
        clas[direction] = ulmfit(train, valid, pretrained=lms[direction], backwards=backwards, lm_epochs=args.lm_epochs,
                                 lm_freeze_epochs=args.lm_frozen_epochs, lm_drop_mult=0.3,
                                 clas_epochs=[args.clas_epochs] * 3 + [args.clas_last_epochs], clas_drop_mult=0.5,
                                 seed=args.seed, path=work/direction, progress=False, verbose=False)
        times[f'stages 2-3 {direction}'] = time.perf_counter() - t
        print(f'{direction}: stages 2 and 3 in {times[f"stages 2-3 {direction}"]:.1f} s', flush=True)

    from fitlam.text_learner import Ensemble
    texts, labels = valid.text.tolist(), valid.label.tolist()
    ens = Ensemble([clas['forward'], clas['backward']])
    errors = {d: 1 - float(c.validate()['accuracy']) for d, c in clas.items()}
    errors['forward + backward'] = 1 - ens.accuracy(texts, labels)
    p_f, p_b = (clas[d].predict_proba(texts) for d in ('forward', 'backward'))
    agree = float((p_f.argmax(1) == p_b.argmax(1)).float().mean())
    report.update(errors=errors, times_s={k: round(v, 1) for k, v in times.items()}, fwd_bwd_agreement=agree)

    print(f'\nTREC-6 valid ({len(valid)} questions), AWD-LSTM {args.emb}/{args.hid}/{args.layers}, {args.pretrain_words:,} pretraining words '
          f'per direction, {torch.get_num_threads()} threads, {report["date"]}:\n')
    print('| model | valid error |'); print('|---|---|')
    for k, v in errors.items(): print(f'| {k} | {100 * v:.2f}% |')
    print(f'\nforward and backward predict the same class for {100 * agree:.1f}% of the questions; wall s: '
          + ', '.join(f'{k} {v:.1f}' for k, v in times.items()))
    write_json(OUT/'ensemble_trec.json', report)


if __name__ == '__main__':
    main()
