"""``make demo``: the built-in synthetic set, TASN and the baseline with the same backbone and
budget on CPU, both evaluated, the comparison table, curves and visualisations."""
import json
import logging
import os
import shutil
import time

from .checkpoint import atomic_write_text
from .compare import compare_table, read_published
from .devices import get_contexts
from .evaluation import evaluate_checkpoint, format_result, write_result_json
from .metrics import read_metrics_csv, save_figure
from .recipes import RECIPES
from .training import prepare_data_dir, run, setup_logging

__all__ = ['run_demo']

logger = logging.getLogger('tasn_gluon')
# The demo trains the first epochs of the synthetic recipe, to stay within 10 minutes on 2 cores.
DEMO_EPOCHS = 6
DEMO_PARTS = ('tasn', 'baseline', 'vis', 'eval_tasn.json', 'eval_baseline.json',
              'comparison.md', 'curves.png', 'summary.json', 'demo.log')


def _plot_both(path, runs):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, rows in runs.items():
        ep = [r['epoch'] for r in rows]
        axes[0].plot(ep, [r['train_loss'] for r in rows], marker='o', label=name)
        axes[1].plot(ep, [100 * r['val_top1'] for r in rows], marker='o', label=name)
    axes[0].set_title('training loss'); axes[0].set_xlabel('epoch'); axes[0].legend()
    axes[1].set_title('val top-1 (%) (TASN: master_aux)'); axes[1].set_xlabel('epoch')
    axes[1].legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=80)


def _badge_zoom(run_dir, data_dir):
    """Mean badge magnification of the trained TASN on the val set (None: not the built-in set,
    which alone records where the badge is)."""
    if not os.path.isfile(os.path.join(data_dir, 'synthetic.json')):
        return None
    from .zoom import checkpoint_badge_magnification
    return checkpoint_badge_magnification(run_dir, data_dir)


def run_demo(out='runs/demo', data_dir=None, epochs=None, batch_size=None, seed=0,
             num_vis=4, progress=True, settings=None):
    """Runs the whole demo into ``out``; returns the summary dict."""
    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    for name in DEMO_PARTS:  # a rerun starts over (only the demo's own outputs are removed)
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    setup_logging(out, filename='demo.log', tag='demo')
    recipe = RECIPES['synthetic']
    base = dict(dataset='synthetic', data_dir=data_dir, seed=seed, progress=progress,
                epochs=epochs or DEMO_EPOCHS, batch_size=batch_size, log_interval=10)
    base.update(settings or {})
    tic = time.time()
    data_dir = prepare_data_dir(dict(base, data_dir=data_dir))
    t_data = time.time() - tic
    summary = dict(data_dir=os.path.abspath(data_dir), data_seconds=t_data, runs={})
    histories = {}
    for method in ('tasn', 'baseline'):
        tic = time.time()
        logger.info('=== training %s (%s, input %s, sampled %s) ===', method,
                    base.get('net') or recipe['net'], base.get('input_size') or
                    recipe['input_size'], base.get('sample_size') or recipe['sample_size'])
        cfg = dict(base, method=method, data_dir=data_dir, out=os.path.join(out, method))
        histories[method] = run(cfg)
        t_train = time.time() - tic
        tic = time.time()
        res = evaluate_checkpoint(os.path.join(out, method), data_dir, get_contexts(''),
                                  out=os.path.join(out, 'eval_%s.json' % method))
        res['label'] = method
        write_result_json(os.path.join(out, 'eval_%s.json' % method), res)
        logger.info('evaluation of %s:\n%s', method, format_result(res))
        summary['runs'][method] = dict(train_seconds=t_train, eval_seconds=time.time() - tic,
                                       top1=res['top1'], top5=res['top5'],
                                       num_images=res['num_images'])
    results = [json.load(open(os.path.join(out, 'eval_%s.json' % m))) for m in
               ('tasn', 'baseline')]
    table = compare_table(results, read_published())
    atomic_write_text(os.path.join(out, 'comparison.md'), table + '\n')
    _plot_both(os.path.join(out, 'curves.png'),
               {m: read_metrics_csv(os.path.join(out, m, 'metrics.csv')) for m in histories})
    tic = time.time()
    try:
        from .visualize import run_visualize
        paths = run_visualize(os.path.join(out, 'vis'), checkpoint=os.path.join(out, 'tasn'),
                              data_dir=data_dir, num_images=num_vis)
    except Exception as e:  # pictures are a bonus; the numbers are already saved
        logger.warning('visualisation failed: %s', e)
        paths = []
    summary['vis_seconds'] = time.time() - tic
    summary['badge_magnification'] = _badge_zoom(os.path.join(out, 'tasn'), data_dir)
    summary['visualisations'] = paths
    summary['total_seconds'] = time.time() - t0
    diff = 100 * (summary['runs']['tasn']['top1'] - summary['runs']['baseline']['top1'])
    summary['tasn_minus_baseline_points'] = diff
    atomic_write_text(os.path.join(out, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print('\n' + table)
    print('TASN (master_aux) %.2f%% vs baseline %.2f%% top-1 on %d val images: %+.2f points'
          % (100 * summary['runs']['tasn']['top1'], 100 * summary['runs']['baseline']['top1'],
             summary['runs']['tasn']['num_images'], diff))
    if summary['badge_magnification'] is not None:
        print("TASN's sampler magnifies the badge %.2fx on average (a plain resize: 1x)"
              % summary['badge_magnification'])
    print('time: data %.0fs, TASN %.0fs + eval %.0fs, baseline %.0fs + eval %.0fs, pictures '
          '%.0fs; total %.0fs (%.1f min)' % (
              t_data, summary['runs']['tasn']['train_seconds'],
              summary['runs']['tasn']['eval_seconds'],
              summary['runs']['baseline']['train_seconds'],
              summary['runs']['baseline']['eval_seconds'], summary['vis_seconds'],
              summary['total_seconds'], summary['total_seconds'] / 60))
    print('outputs in %s: comparison.md, curves.png, {tasn,baseline}/ (checkpoints, metrics.csv, '
          'curves.png, train.log), vis/*.png, eval_*.json, summary.json' % out)
    return summary
