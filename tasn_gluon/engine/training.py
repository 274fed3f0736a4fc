"""The training loop: data-parallel TASN (or baseline) training with per-epoch checkpoints.

The layout follows GluonCV's training scripts: ``preparation.prepare`` checks everything and
builds the run (a failed start leaves nothing behind), :func:`train` runs the epochs;
``tools/train.py`` only parses flags, sets up the logs and calls the two.

Determinism and resume: every generator is reseeded at the start of each epoch from
``(seed, epoch, rank)`` (``seeds``), and the training iterator of each epoch is created with a
seed derived the same way. An epoch's randomness (data order, augmentation, the detail map drawn
per image) is therefore a function of the seed and the epoch number alone, and resuming after
epoch E repeats exactly what an uninterrupted run would have done in epoch E+1. The learning
rate is set before every step from the run's iteration count alone (``schedule.lr_schedule``:
GluonCV's schedulers), so it resumes exactly too.
"""
import logging
import math
import os
import sys
import time

import numpy as np
from mxnet import autograd, gluon

from ..errors import DatasetError, TrainingDiverged
from ..files import atomic_write_text, remove_stale_temporaries
from ..losses import HEADS
from ..logs import progress_bar
from . import builders, precision
from .checkpoint import rng_record, save_checkpoint
from .config import format_config
from .metrics import TopKCounter, plot_curves, write_metrics_csv
from .preparation import TrainingRun, prepare
from .seeds import epoch_seed, seed_everything
from .validation import validate

__all__ = ['TrainingDiverged', 'TrainingRun', 'prepare', 'train', 'run', 'train_step',
           'forward_losses']

logger = logging.getLogger(__name__)


def forward_losses(net, loss_fn, datas, labels, trainer=None):
    """Forward in training mode on every device; returns ``(losses, outputs, heads)`` per
    device: ``heads`` are what to differentiate, the losses times the AMP loss scale when
    ``trainer`` has an AMP loss scaler (the product recorded), else the losses themselves."""
    losses, outputs = [], []
    with autograd.record():
        for x, y in zip(datas, labels):
            out = net(x)
            losses.append(loss_fn(out, y))
            outputs.append(out)
        heads = precision.scale_losses(losses, trainer)
    return losses, outputs, heads


def train_step(net, trainer, loss_fn, data, label, ctx, step_size, where='', augment=None):
    """One data-parallel step on a batch; returns (loss values (N,), reported logits (N, K)).

    ``augment`` (the iterator's ``device_augment``, if any) is applied to each device's share
    of the batch. The loss is checked before the update: a non-finite value raises
    ``TrainingDiverged`` and leaves the parameters untouched. Under AMP (a trainer with a loss
    scaler) the scaled losses are differentiated, and a step whose gradients overflowed is
    skipped by the trainer (logged; the loss scale halves).
    """
    datas = gluon.utils.split_and_load(data, ctx, even_split=True)
    if augment is not None:
        datas = [augment(d) for d in datas]
    labels = gluon.utils.split_and_load(label, ctx, even_split=True)
    losses, outputs, heads = forward_losses(net, loss_fn, datas, labels, trainer)
    values = np.concatenate([l.asnumpy().reshape(-1) for l in losses])
    if not np.all(np.isfinite(values)):
        raise TrainingDiverged('the training loss became %s %s; training stopped before this '
                               'update, the last checkpoint is intact'
                               % ('NaN' if np.isnan(values).any() else 'infinite', where))
    autograd.backward(heads)
    trainer.step(step_size)
    if precision.step_skipped(trainer):
        logger.info('AMP: a gradient overflowed %s; the update was skipped, the loss scale is '
                    'now %g', where, precision.scaler_state(trainer)['next_loss_scale'])
    logits = np.concatenate([net.reported(o).asnumpy() for o in outputs], axis=0)
    return values, logits


def train_epoch(tr, epoch):
    """One epoch of training; returns its metrics row."""
    cfg = tr.cfg
    seed = epoch_seed(cfg.seed, epoch, tr.rank)
    seed_everything(seed)
    first = epoch * tr.iters_per_epoch           # the run's iteration count at this epoch
    lr = tr.lr_schedule(first)                   # reported: the rate of the epoch's first step
    on_device = cfg.augment_on_device if cfg.augment_on_device is not None else \
        all(c.device_type == 'gpu' for c in tr.ctx)
    train_iter = builders.train_loader(cfg, cfg.data_dir, seed, tr.num_workers, tr.rank,
                                       color_on_device=on_device)
    counter, loss_sum, n_img = TopKCounter(), 0.0, 0
    total = tr.iters_per_epoch
    bar = progress_bar(cfg.progress, total, 'epoch %d/%d' % (epoch + 1, cfg.epochs), 'batch',
                       mininterval=1.0)
    tic = time.time()
    try:
        for i, batch in enumerate(train_iter):
            if i >= total:
                break
            tr.trainer.set_learning_rate(tr.lr_schedule(first + i))
            values, logits = train_step(tr.net, tr.trainer, tr.loss_fn, batch.data[0],
                                        batch.label[0], tr.ctx, tr.step_size,
                                        where='at epoch %d, batch %d' % (epoch + 1, i + 1),
                                        augment=getattr(train_iter, 'device_augment', None))
            loss_sum, n_img = loss_sum + float(values.sum()), n_img + values.size
            counter.update(logits, batch.label[0].asnumpy())
            speed = n_img / max(time.time() - tic, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss='%.4f' % (loss_sum / n_img), img_s='%.1f' % speed,
                                refresh=False)
            if (i + 1) % cfg.log_interval == 0:
                logger.info('epoch %d batch %d: loss %.4f, top-1 %.2f%%, %.1f img/s', epoch + 1,
                            i + 1, loss_sum / n_img, 100 * counter.get()[0], speed)
    finally:
        if bar is not None:
            bar.close()
    if n_img == 0:
        raise DatasetError('the training iterator gave no batch in epoch %d (is --batch-size '
                           'larger than the training set?)' % (epoch + 1))
    elapsed = time.time() - tic
    return dict(epoch=epoch + 1, lr=lr, train_loss=loss_sum / n_img, train_top1=counter.get()[0],
                epoch_time_s=elapsed, train_images_per_s=n_img / elapsed)


def _val_row(res):
    row = dict(val_loss=res.get('loss'), val_top1=res['top1'], val_top5=res['top5'],
               val_kd_loss=res.get('kd_loss'), val_distinct_maps=res.get('distinct_maps'),
               num_val_images=res['num_images'])
    for h in HEADS:
        if h in res:
            row['val_' + h] = res[h]
            row['val_%s_top5' % h] = res[h + '_top5']
    return row


def _val_summary(row):
    if row.get('val_master_aux') is None:
        return 'top-1 %.2f%% top-5 %.2f%%' % (100 * row['val_top1'], 100 * row['val_top5'])
    return ' '.join('%s %.2f%%' % (h, 100 * row['val_' + h]) for h in HEADS) + \
        ' kd %.4f, %.1f distinct maps' % (row['val_kd_loss'], row['val_distinct_maps'])


def finish_epoch(tr, epoch, row):
    """Rank 0's end of an epoch: validation, the divergence checks, the checkpoint (the only
    way a finished epoch is recorded), metrics.csv and the curves."""
    cfg, tic = tr.cfg, time.time()
    try:
        res = validate(tr.net, tr.val_iter, tr.ctx, loss_fn=tr.loss_fn,
                       temperature=cfg.temperature)
    except TrainingDiverged as e:
        raise TrainingDiverged('epoch %d: %s; not saved, the last checkpoint is intact'
                               % (epoch + 1, e))
    row.update(_val_row(res))
    bad = next((n for n, p in tr.net.collect_params().items()
                if not np.isfinite(p.list_data()[0].abs().sum().asscalar())), None)
    if bad is not None or not math.isfinite(row['val_loss'] or 0.0):
        raise TrainingDiverged('epoch %d ended with non-finite %s; not saved, the last '
                               'checkpoint is intact' % (epoch + 1, bad or 'val loss'))
    tr.history.append(row)
    scaler = precision.scaler_state(tr.trainer)
    save_checkpoint(cfg.out, epoch + 1, tr.net, tr.trainer, history=tr.history,
                    config=cfg.to_dict(), rng=rng_record(cfg.seed, epoch + 1),
                    keep=cfg.keep_checkpoints,
                    extra=dict(amp_loss_scaler=scaler) if scaler else None)
    write_metrics_csv(os.path.join(cfg.out, 'metrics.csv'), tr.history)
    try:
        plot_curves(os.path.join(cfg.out, 'curves.png'), tr.history,
                    title='%s %s on %s' % (cfg.method, cfg.net, cfg.dataset))
    except Exception as e:  # a plotting problem must not stop training; its traceback shows
        logger.warning('could not draw curves.png: %s', e, exc_info=True)
    logger.info('epoch %d/%d: lr %.4g train loss %.4f train top-1 %.2f%% | val %s (%d images, '
                '%.1fs) | %.1f img/s', epoch + 1, cfg.epochs, row['lr'], row['train_loss'],
                100 * row['train_top1'], _val_summary(row), row['num_val_images'],
                time.time() - tic, row['train_images_per_s'])


def train(tr):
    """Trains the prepared run ``tr`` (see :func:`prepare`) to ``cfg.epochs``; returns the
    metrics history (one dict per epoch). Writes into ``cfg.out`` only: config.json,
    metrics.csv, curves.png and the epoch checkpoints."""
    cfg = tr.cfg
    logger.info('tasn_gluon training: %s', ' '.join(sys.argv))
    logger.info('configuration (recipe %r: %s):\n%s', cfg.dataset, cfg.note, format_config(cfg))
    logger.info('devices: %s; kvstore %s; worker %d of %d; dataset %s (%d classes, %s train, '
                '%s val)', tr.ctx, tr.kv if isinstance(tr.kv, str) else tr.kv.type, tr.rank,
                tr.num_workers, tr.dataset.get('name'), cfg.num_classes,
                tr.dataset.get('num_train'), tr.dataset.get('num_val'))
    scaler = precision.scaler_state(tr.trainer)
    logger.info('precision: %s', 'float32' if scaler is None else
                '%s mixed precision (AMP), float32 parameters, multi-precision SGD, dynamic '
                'loss scale %g (%d clean steps since the last change)'
                % (scaler['dtype'], scaler['loss_scale'], scaler['unskipped']))
    if tr.rank == 0:
        if tr.resumed_from:
            for path in remove_stale_temporaries(cfg.out):
                logger.info('removed %s, left by a process that no longer runs', path)
        atomic_write_text(os.path.join(cfg.out, 'config.json'), format_config(cfg) + '\n')
    if tr.start_epoch >= cfg.epochs:
        logger.info('nothing to do: %d of %d epochs already complete', tr.start_epoch,
                    cfg.epochs)
    for epoch in range(tr.start_epoch, cfg.epochs):
        row = train_epoch(tr, epoch)
        if tr.rank == 0:
            finish_epoch(tr, epoch, row)
        else:
            tr.history.append(row)
    return tr.history


def run(overrides, ctx=None):
    """:func:`prepare` then :func:`train`, the run folder held for the whole run (no log file:
    see ``tasn_gluon.logs.run_log``)."""
    with prepare(overrides, ctx) as tr:
        return train(tr)
