"""``make demo``: the built-in synthetic set, TASN and the baseline with the same backbone and
budget on CPU, both evaluated, the comparison table, curves and visualisations."""
import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import sys
import time

from ..data import read_dataset_info
from ..engine.builders import prepare_data_dir
from ..engine.checkpoint import drop_trainer_states
from ..engine.devices import get_contexts
from ..engine.evaluation import evaluate_checkpoint
from ..engine.metrics import read_metrics_csv, save_figure
from ..engine.config import resolve_config
from ..engine.results import format_result, write_result_json
from ..engine.training import run
from ..errors import ConfigError, InputError
from ..files import atomic_write_text
from ..logs import run_log
from .compare import compare_table, read_published
from .visualize import run_visualize
from .zoom import checkpoint_badge_magnification

__all__ = ['run_demo']

logger = logging.getLogger(__name__)
# The synthetic recipe shortened to stay within 10 minutes on 2 cores: 3 epochs instead of 6, the
# learning rate x0.1 for the last one as in the recipe.
DEMO_EPOCHS = 3
DEMO_LR_STEPS = [2]
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


@contextlib.contextmanager
def _environment(**values):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _train_logged(cfg):
    """Trains ``cfg`` with every log line in its run directory's train.log."""
    with run_log(cfg['out']):
        run(cfg)


def _train_quietly(cfg, seconds):
    """A child process's job: train without console output (train.log gets every line) and
    report the time it took in ``seconds``."""
    sys.stdout = open(os.devnull, 'w')
    tic = time.time()
    _train_logged(cfg)
    seconds.value = time.time() - tic


def _start_in_background(cfg):
    """Trains ``cfg`` in a fresh single-threaded process; returns (process, its training time in
    seconds once it has finished). MXNet's CPU training barely uses a second core at the demo's
    sizes, so the baseline trains beside TASN instead of after it."""
    mp = multiprocessing.get_context('spawn')
    seconds = mp.Value('d', float('nan'))
    proc = mp.Process(target=_train_quietly, args=(cfg, seconds))
    # Read by MXNet when the child imports it.
    with _environment(OMP_NUM_THREADS='1', MXNET_CPU_WORKER_NTHREADS='1'):
        proc.start()
    return proc, seconds


def _wait_for(proc, seconds, log_path):
    """Waits for a training started by :func:`_start_in_background`; returns its training time,
    or raises an error naming its log when it failed."""
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError('training the baseline failed (exit code %s); see %s'
                           % (proc.exitcode, log_path))
    return seconds.value


def _badge_zoom(run_dir, data_dir):
    """Mean badge magnification of the trained TASN on the val set (None: not the built-in set,
    which alone records where the badge is)."""
    if not os.path.isfile(os.path.join(data_dir, 'synthetic.json')):
        return None
    return checkpoint_badge_magnification(run_dir, data_dir)


def _clear(out):
    """A rerun starts over: only the demo's own outputs are removed."""
    os.makedirs(out, exist_ok=True)
    for name in DEMO_PARTS:
        p = os.path.join(out, name)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)


def _train_both(cfgs, out):
    """TASN here, the baseline in a background process beside it; returns their seconds."""
    tic = time.time()
    background, baseline_seconds = _start_in_background(dict(cfgs['baseline'], progress=False))
    try:
        _train_logged(cfgs['tasn'])
    except BaseException:
        background.terminate()
        background.join()
        raise
    return {'tasn': time.time() - tic,
            'baseline': _wait_for(background, baseline_seconds,
                                  os.path.join(out, 'baseline', 'train.log'))}


def explain_numbers(summary):
    """What the demo's numbers mean, as lines of text: chance, what colour alone allows (the
    built-in set), the sampling noise of an accuracy on this many images, and what is
    compared."""
    n = summary['runs']['tasn']['num_images']
    k = summary['num_classes']
    lines = ['How to read these numbers (%d val images, %d classes):' % (n, k),
             '- TASN is scored by master_aux, its reported head: the shared fc on the '
             'structure-preserved (zoomed) image; the baseline by its one head, on the image '
             'resized to the same size.',
             '- chance: %.1f%%.' % (100.0 / k)]
    params = summary.get('synthetic')
    if params:
        groups = len({c['colour_group'] for c in params['classes']})
        textures = len({c['texture'] for c in params['classes']})
        lines.append('- colour alone: %.1f%%. A class is a badge colour (of %d) and texture (of '
                     '%d); at the %d-px view of the baseline the texture averages away, so a '
                     'model that does not zoom can tell the colour, not the texture.'
                     % (100.0 * groups / k, groups, textures, summary['sample_size']))
    for m in ('tasn', 'baseline'):
        p = summary['runs'][m]['top1']
        lines.append('- %s %.2f%%: +- %.1f points of sampling noise (one standard deviation of '
                     'a binomial proportion on %d images).'
                     % (m, 100 * p, 100 * (p * (1 - p) / n) ** 0.5, n))
    return lines


def demo_settings(data_dir=None, epochs=None, batch_size=None, seed=0, progress=None,
                  settings=None):
    """The settings both demo runs share, checked (a bad value is an error before anything is
    written); ``epochs`` None: DEMO_EPOCHS."""
    epochs = DEMO_EPOCHS if epochs is None else epochs
    base = dict(dataset='synthetic', data_dir=data_dir, seed=seed, progress=progress,
                epochs=epochs, lr_steps=[e for e in DEMO_LR_STEPS if e < epochs],
                batch_size=batch_size, log_interval=10, **(settings or {}))
    for method in ('tasn', 'baseline'):
        resolve_config(dict(base, method=method))
    return base


def run_demo(out='runs/demo', data_dir=None, epochs=None, batch_size=None, seed=0,
             num_vis=None, progress=None, settings=None):
    """Runs the whole demo into ``out`` (its log in ``out/demo.log``); returns the summary."""
    t0 = time.time()
    base = demo_settings(data_dir, epochs, batch_size, seed, progress, settings)
    if num_vis is not None and int(num_vis) < 1:
        raise ConfigError('num_vis must be >= 1, not %r' % num_vis)
    _clear(out)
    with run_log(out, filename='demo.log'):
        summary = _demo(out, base, num_vis)
    summary['total_seconds'] = time.time() - t0
    atomic_write_text(os.path.join(out, 'summary.json'), json.dumps(summary, indent=1) + '\n')
    print('time: data %.0fs, TASN %.0fs + eval %.0fs, baseline (beside TASN) %.0fs + eval %.0fs, '
          'pictures %.0fs; total %.0fs (%.1f min)' % (
              summary['data_seconds'], summary['runs']['tasn']['train_seconds'],
              summary['runs']['tasn']['eval_seconds'],
              summary['runs']['baseline']['train_seconds'],
              summary['runs']['baseline']['eval_seconds'], summary['vis_seconds'],
              summary['total_seconds'], summary['total_seconds'] / 60))
    print('outputs in %s: comparison.md, curves.png, {tasn,baseline}/ (final parameters, '
          'metrics.csv, curves.png, train.log), vis/*.png (one val image per class), eval_*.json, '
          'summary.json, demo.log' % out)
    return summary


def _demo(out, base, num_vis):
    tic = time.time()
    data_dir = prepare_data_dir(resolve_config(base))
    cfgs = {m: dict(base, method=m, data_dir=data_dir, out=os.path.join(out, m))
            for m in ('tasn', 'baseline')}
    cfg = resolve_config(cfgs['tasn'])
    summary = dict(data_dir=os.path.abspath(data_dir), data_seconds=time.time() - tic, runs={},
                   sample_size=cfg.sample_size,
                   synthetic=read_dataset_info(data_dir).get('synthetic'))
    logger.info('=== training TASN here and the baseline in a background process (%s, input %s, '
                'sampled %s; the baseline logs to %s) ===', cfg.net, cfg.input_size,
                cfg.sample_size, os.path.join(out, 'baseline', 'train.log'))
    seconds = _train_both(cfgs, out)
    results = []
    for method in ('tasn', 'baseline'):
        drop_trainer_states(cfgs[method]['out'])   # the demo keeps the final parameters only
        tic = time.time()
        res = evaluate_checkpoint(cfgs[method]['out'], data_dir, get_contexts(''))
        res['label'] = method                  # written once, with the label the table shows
        write_result_json(os.path.join(out, 'eval_%s.json' % method), res)
        logger.info('evaluation of %s:\n%s', method, format_result(res))
        summary['runs'][method] = dict(train_seconds=seconds[method],
                                       eval_seconds=time.time() - tic, top1=res['top1'],
                                       top5=res['top5'], num_images=res['num_images'])
        results.append(res)
    summary['num_classes'] = results[0]['num_classes']
    table = compare_table(results, read_published())
    atomic_write_text(os.path.join(out, 'comparison.md'), table + '\n')
    _plot_both(os.path.join(out, 'curves.png'),
               {m: read_metrics_csv(os.path.join(out, m, 'metrics.csv')) for m in cfgs})
    tic = time.time()
    try:
        summary['visualisations'] = run_visualize(
            os.path.join(out, 'vis'), checkpoint=cfgs['tasn']['out'], data_dir=data_dir,
            num_images=num_vis or summary['num_classes'], one_per_class=True)
    except InputError as e:  # pictures are a bonus; the numbers are already saved
        logger.warning('visualisation failed: %s', e)
        summary['visualisations'] = []
    summary['vis_seconds'] = time.time() - tic
    summary['badge_magnification'] = _badge_zoom(cfgs['tasn']['out'], data_dir)
    diff = 100 * (summary['runs']['tasn']['top1'] - summary['runs']['baseline']['top1'])
    summary['tasn_minus_baseline_points'] = diff
    print('\n' + table)
    print('TASN (master_aux) %.2f%% vs baseline %.2f%% top-1 on %d val images: %+.2f points'
          % (100 * summary['runs']['tasn']['top1'], 100 * summary['runs']['baseline']['top1'],
             summary['runs']['tasn']['num_images'], diff))
    if summary['badge_magnification'] is not None:
        print("TASN's sampler magnifies the badge %.2fx on average (a plain resize: 1x)"
              % summary['badge_magnification'])
    print('\n'.join(explain_numbers(summary)))
    return summary
