#!/usr/bin/env python
"""TASN's parts on the built-in synthetic set: TASN vs the baseline vs TASN with a uniform
sampler (the sampler's contribution) vs TASN without distillation, with the same backbone,
sizes, data and budget, over a few seeds.

    python bench/synthetic_study.py --out runs/synthetic_study --seeds 0,1,2 [--gpus 0]

Writes OUT/synthetic_study.md (the table), OUT/synthetic_study.png (the plot) and
OUT/synthetic_study.json (every number), and prints the table. Finished runs are reused, so an
interrupted study continues where it stopped, and parts can run as separate processes into the
same --out (e.g. one variant each with OMP_NUM_THREADS=1: on the 2-core development machine two
such processes ran as fast each as one process with two threads); a last call naming every
variant and seed then only evaluates and writes the table (with --only-finished, the table of
whatever runs are finished, e.g. the ablations with one seed beside TASN and the baseline with
five, without training anything). Target (issue 5): TASN ahead of the
baseline by 10 points or more at equal input resolution (both see the same input; the
baseline's backbone sees it resized to --sample-size, TASN's the attention-sampled images of
that size).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from tasn_gluon.engine import find_checkpoint, get_contexts, run
from tasn_gluon.engine.builders import prepare_data_dir
from tasn_gluon.files import atomic_write_text
from tasn_gluon.engine.config import resolve_config
from tasn_gluon.engine.evaluation import evaluate_checkpoint
from tasn_gluon.logs import run_log
from tasn_gluon.engine.metrics import save_figure
from tasn_gluon.reports.zoom import checkpoint_badge_magnification

VARIANTS = {
    'tasn': dict(method='tasn'),
    'baseline': dict(method='baseline'),
    'tasn-uniform': dict(method='tasn', uniform_sampler=True),
    'tasn-no-kd': dict(method='tasn', kd_weight=0.0),
}
DESCRIPTION = {
    'tasn': 'TASN (attention sampling + distillation)',
    'baseline': 'baseline: backbone on the input resized to the sample size',
    'tasn-uniform': 'TASN with uniform profiles (sampler replaced by a plain resize)',
    'tasn-no-kd': 'TASN without the distillation term',
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    a = p.add_argument
    a('--out', default='runs/synthetic_study')
    a('--seeds', default='0,1,2', help='comma-separated seeds')
    a('--variants', default=','.join(VARIANTS), help='subset of %s' % ','.join(VARIANTS))
    a('--data-dir', default=None, help='default: the built-in synthetic set (cached)')
    a('--gpus', default='')
    a('--net', default=None)
    a('--epochs', type=int, default=None)
    a('--batch-size', type=int, default=None)
    a('--lr', type=float, default=None)
    a('--lr-steps', default=None)
    a('--input-size', type=int, default=None)
    a('--att-size', type=int, default=None)
    a('--sample-size', type=int, default=None)
    a('--no-progress', action='store_true')
    a('--only-finished', action='store_true',
      help='train nothing: the table of the finished runs in --out among --variants x --seeds')
    return p.parse_args(argv)


def _plot(path, summary, histories):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    names = list(summary)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    means = [100 * summary[n]['mean'] for n in names]
    stds = [100 * summary[n]['std'] for n in names]
    axes[0].bar(range(len(names)), means, yerr=stds, capsize=4)
    axes[0].set_xticks(range(len(names)))
    axes[0].set_xticklabels(names, rotation=15)
    axes[0].set_ylabel('val top-1 (%)')
    axes[0].set_title('final accuracy, mean and std over seeds')
    for n in names:
        for i, h in enumerate(histories[n]):
            axes[1].plot([r['epoch'] for r in h], [100 * r['val_top1'] for r in h],
                         color='C%d' % names.index(n), alpha=0.8,
                         label=n if i == 0 else None)
    axes[1].set_xlabel('epoch')
    axes[1].set_ylabel('val top-1 (%)')
    axes[1].set_title('validation accuracy per seed')
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def main(argv=None):
    args = parse_args(argv)

    seeds = [int(s) for s in args.seeds.split(',') if s.strip()]
    variants = [v.strip() for v in args.variants.split(',') if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        print('error: unknown variant(s) %s; choose from %s' % (bad, list(VARIANTS)),
              file=sys.stderr)
        return 2
    common = dict(dataset='synthetic', data_dir=args.data_dir, gpus=args.gpus, net=args.net,
                  epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                  lr_steps=args.lr_steps, input_size=args.input_size, att_size=args.att_size,
                  sample_size=args.sample_size, progress=False if args.no_progress else None)
    data_dir = prepare_data_dir(resolve_config(common))
    common['data_dir'] = data_dir
    ctx = get_contexts(args.gpus)
    os.makedirs(args.out, exist_ok=True)
    results, histories, seconds, zooms, done = {}, {}, {}, {}, {}
    t0 = time.time()
    for v in variants:
        results[v], histories[v], seconds[v], zooms[v], done[v] = [], [], [], [], []
        for seed in seeds:
            out = os.path.join(args.out, '%s-seed%d' % (v, seed))
            cfg = dict(common, seed=seed, out=out, **VARIANTS[v])
            want = resolve_config(cfg).epochs
            rec = find_checkpoint(out)
            if args.only_finished and (rec is None or rec['epoch'] < want):
                continue
            done[v].append(seed)
            if rec is None or rec['epoch'] < want:
                with run_log(out):
                    run(cfg if rec is None else dict(resume=out, epochs=want,
                                                     progress=cfg['progress']))
            res = evaluate_checkpoint(out, data_dir, ctx)
            results[v].append(res['top1'])
            histories[v].append(find_checkpoint(out)['history'])
            # From the run's own record, so that reused and resumed runs count in full.
            seconds[v].append(sum(r['epoch_time_s'] for r in histories[v][-1]))
            if VARIANTS[v]['method'] == 'tasn' and not VARIANTS[v].get('uniform_sampler'):
                zooms[v].append(checkpoint_badge_magnification(out, data_dir, ctx[0]))
            print('%s seed %d: top-1 %.2f%% (%.0fs)%s' % (
                v, seed, 100 * res['top1'], seconds[v][-1],
                ', badge magnified %.2fx' % zooms[v][-1] if zooms[v] else ''), flush=True)
    summary = {v: dict(mean=float(np.mean(r)), std=float(np.std(r)), seeds=done[v], per_seed=r,
                       train_seconds=seconds[v], badge_magnification=zooms[v] or None)
               for v, r in results.items() if r}
    if not summary:
        print('error: no finished run in %s for variants %s and seeds %s'
              % (args.out, ','.join(variants), args.seeds), file=sys.stderr)
        return 2
    cfg0 = resolve_config(dict(common))
    lines = ['Synthetic study: %s, input %d, attention %d, samples %d, %d epochs, batch %d, '
             'lr %g, seeds %s; %s; %.0f s in all.' % (
                 cfg0.net, cfg0.input_size, cfg0.att_size, cfg0.sample_size,
                 cfg0.epochs, cfg0.batch_size, cfg0.lr,
                 ','.join(map(str, sorted({x for s in summary.values() for x in s['seeds']}))),
                 'CPU' if not args.gpus else 'GPU ' + args.gpus, time.time() - t0), '',
             '| variant | what | val top-1 (%) mean ± std | per seed | badge magnification |',
             '|---|---|---|---|---|']
    for v, s in summary.items():
        zoom = s['badge_magnification']
        lines.append('| %s | %s | %.2f ± %.2f | %s | %s |' % (
            v, DESCRIPTION[v], 100 * s['mean'], 100 * s['std'],
            ', '.join('%d: %.2f' % (seed, 100 * x) for seed, x in zip(s['seeds'], s['per_seed'])),
            '%.2fx' % np.mean(zoom) if zoom else '1x (plain resize)'))
    lines += ['', 'Badge magnification: output pixels that sample the badge, per axis, relative '
              'to a plain resize (structure-preserved image, val set, mean over seeds).']
    if 'tasn' in summary and 'baseline' in summary:
        gap = 100 * (summary['tasn']['mean'] - summary['baseline']['mean'])
        same = summary['tasn']['seeds'] == summary['baseline']['seeds']
        lines += ['', 'TASN - baseline: %+.2f points (target: +10 or more): %s%s'
                  % (gap, 'met' if gap >= 10 else 'NOT met',
                     '' if same else ' (careful: the two were run with different seeds)')]
    table = '\n'.join(lines)
    atomic_write_text(os.path.join(args.out, 'synthetic_study.md'), table + '\n')
    atomic_write_text(os.path.join(args.out, 'synthetic_study.json'),
                      json.dumps(dict(config=cfg0.to_dict(), summary=summary), indent=1,
                                 default=str) + '\n')
    _plot(os.path.join(args.out, 'synthetic_study.png'), summary, histories)
    print(table)
    return 0


if __name__ == '__main__':
    sys.exit(main())
