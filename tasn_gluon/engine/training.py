"""The training loop: data-parallel TASN (or baseline) training with per-epoch checkpoints.

Layout follows GluonCV's training scripts: :func:`prepare` checks everything and builds the run
without writing anything (a failed start leaves nothing behind), :func:`train` runs the epochs;
``tools/train.py`` only parses flags, sets up the logs and calls the two.

Determinism and resume
----------------------
MXNet cannot read back its generators' states, so every generator (MXNet on every device, NumPy,
Python) is reseeded at the start of each epoch from ``(seed, epoch, rank)``, and the training
iterator of each epoch is created with a seed derived the same way. An epoch's randomness (data
order, augmentation, the detail map drawn per image) is therefore a function of the seed and the
epoch number alone, and resuming after epoch E repeats exactly what an uninterrupted run would
have done in epoch E+1. The learning rate is set before every step from the run's iteration
count alone (``config.lr_schedule``: GluonCV's schedulers), so it resumes exactly too.
"""
import dataclasses
import logging
import math
import os
import random
import sys
import time
from typing import Optional

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from ..data import DatasetError, check_split, count_shard, read_dataset_info
from ..losses import HEADS
from ..model_zoo import ATTENTION_NET, find_pretrained
from . import builders, precision
from .checkpoint import (CheckpointError, atomic_write_text, find_checkpoint, load_checkpoint,
                         remove_stale_temporaries, restore_rng, rng_record, save_checkpoint)
from .config import (STRUCTURAL_KEYS, RunConfig, format_config, lr_at_epoch, lr_schedule,
                     resolve_config)
from .devices import get_contexts, per_device_batch_size
from .evaluation import EvaluationError, validate
from .logs import progress_bar
from .metrics import TopKCounter, plot_curves, write_metrics_csv

__all__ = ['TrainingDiverged', 'TrainingRun', 'prepare', 'train', 'run', 'train_step',
           'seed_everything', 'epoch_seed', 'make_kvstore', 'make_trainer', 'resolve_run_config',
           'iters_per_epoch']

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """A non-finite loss (or parameter): the run stops; the last good checkpoint is intact."""


@dataclasses.dataclass
class TrainingRun:
    """Everything :func:`train` needs, made by :func:`prepare`."""
    cfg: RunConfig
    ctx: list
    kv: object
    rank: int
    num_workers: int
    dataset: dict
    net: object
    loss_fn: object
    trainer: object
    val_iter: object
    history: list
    start_epoch: int
    resumed_from: Optional[str] = None
    iters_per_epoch: int = 1           # training iterations of every epoch (all workers)
    lr_schedule: object = None         # iteration -> learning rate (config.lr_schedule)

    @property
    def out(self):
        return self.cfg.out

    @property
    def step_size(self):
        # Gradients are summed over the workers' batches, except under Horovod, whose
        # DistributedTrainer already averages them over the workers.
        return self.cfg.batch_size * (1 if self.kv == 'horovod' else self.num_workers)


# ------------------------------------------------------------------------------ randomness

def epoch_seed(seed, epoch, rank=0):
    """The seed of epoch ``epoch`` (-1: initialisation) on worker ``rank``."""
    return (int(seed) * 1000003 + (int(epoch) + 1) * 7919 + int(rank) * 104729) % (2 ** 31 - 1)


def seed_everything(seed):
    mx.random.seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))
    random.seed(int(seed))


# ------------------------------------------------------------------------------ preparing

def resolve_run_config(overrides):
    """``overrides`` (flag name -> value, None = unset) -> ``(RunConfig, resume record or
    None)``. A resumed run takes its saved configuration, with the settings given now on top
    (never a structural one that differs); it always trains into the ``--resume`` directory,
    wherever the run was made (the saved ``out`` is only where it was made)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given.get('resume'):
        return resolve_config(given), None
    run_dir = os.path.abspath(given.pop('resume'))
    if given.get('out') and os.path.abspath(given['out']) != run_dir:
        raise ValueError('--resume %s trains into that run directory; --out %s differs (copy '
                         'the run there first to continue it elsewhere)' % (run_dir, given['out']))
    record = load_checkpoint(run_dir)
    saved = RunConfig.from_dict(record['config'])
    for k in STRUCTURAL_KEYS:
        if k in given and given[k] != getattr(saved, k):
            raise ValueError('--resume %s: the run was trained with %s=%r; it cannot continue '
                             'with %r' % (run_dir, k, getattr(saved, k), given[k]))
    aug = dict(saved.aug, **given.pop('aug', {}))
    return saved.replace(aug=aug, **dict(given, out=run_dir, resume=run_dir)), record


def make_kvstore(name, num_devices):
    """Returns ``(kvstore_for_trainer, rank, num_workers)``. ``None`` picks 'device' on several
    devices and 'local' on one; ``dist_*`` creates the store here so that the rank is known
    before the data is sharded."""
    if name in (None, ''):
        name = 'device' if num_devices > 1 else 'local'
    if name.startswith('dist'):
        kv = mx.kv.create(name)
        return kv, kv.rank, kv.num_workers
    if name == 'horovod':
        try:
            import horovod.mxnet as hvd
        except ImportError:
            raise ValueError('--kvstore horovod needs Horovod (make setup HOROVOD=1)')
        hvd.init()
        return 'horovod', hvd.rank(), hvd.size()
    if name not in ('local', 'device', 'nccl'):
        raise ValueError('--kvstore must be local, device, nccl, dist_sync, dist_device_sync, '
                         'dist_async or horovod, not %r' % name)
    return name, 0, 1


def make_trainer(net, cfg, kv):
    """SGD over ``net``'s parameters with the kvstore ``kv`` (see ``make_kvstore``).

    The learning rate is set before every step on the workers (``set_learning_rate``), so on
    ``dist_sync``/``dist_device_sync`` the update runs on the workers
    (``update_on_kvstore=False``: the servers only sum gradients); ``dist_async`` updates on
    the servers, which do not see later learning-rate changes (a warning says so).

    With ``cfg.amp`` (after ``precision.enable_amp``) the trainer gets AMP's dynamic loss
    scaler, and the update always runs on the workers: the scaler skips a step whose gradients
    overflowed, which it can only do before the update (with ``update_on_kvstore`` the store
    would already have applied it). SGD is multi-precision there: MXNet 1.9.1's SGD keeps a
    float32 master copy of each float16 parameter and updates that. Under AMP every parameter
    stays float32 (AMP casts the weights inside the graph, and their gradients come back
    float32), so the update is the plain float32 one and the states hold no extra copies; the
    flag only acts on a network whose parameters were cast to float16.
    """
    opt_params = dict(learning_rate=lr_at_epoch(cfg, 0), momentum=cfg.momentum, wd=cfg.wd)
    if cfg.amp:
        opt_params['multi_precision'] = True
    if kv == 'horovod':
        import horovod.mxnet as hvd
        params = net.collect_params()
        if len(next(iter(params.values())).list_ctx()) > 1:
            # DistributedTrainer all-reduces only the first device's gradients.
            raise ValueError('--kvstore horovod runs one process per GPU: give each process '
                             'one --gpus id, e.g. --gpus $HOROVOD_LOCAL_RANK')
        hvd.broadcast_parameters(params, root_rank=0)
        trainer = hvd.DistributedTrainer(params, 'sgd', opt_params)
        # after the constructor, which divides the gradient scale by the number of workers
        return precision.init_trainer(trainer) if cfg.amp else trainer
    update_on_kvstore = None
    kv_type = kv if isinstance(kv, str) else kv.type
    if kv_type in ('dist_sync', 'dist_device_sync') or cfg.amp:
        update_on_kvstore = False
    elif kv_type == 'dist_async':
        logger.warning('dist_async updates on the servers: the learning-rate schedule (steps, '
                       'warm-up, cosine) does not reach them; the initial learning rate stays '
                       'in force')
    trainer = gluon.Trainer(net.collect_params(), 'sgd', opt_params, kvstore=kv,
                            update_on_kvstore=update_on_kvstore)
    return precision.init_trainer(trainer) if cfg.amp else trainer


def _find_weights(cfg):
    """``cfg`` with ``--pretrained zoo`` / ``--att-pretrained zoo`` replaced by the files found in
    the model-zoo folder (``model_zoo.find_pretrained``), so that config.json names them."""
    found = {}
    for key, net in (('pretrained', cfg.net), ('att_pretrained', ATTENTION_NET)):
        try:
            found[key] = find_pretrained(getattr(cfg, key), net, cfg.model_root)
        except FileNotFoundError as e:
            raise FileNotFoundError('--%s %s: %s' % (key.replace('_', '-'), getattr(cfg, key),
                                                     e)) from e
    return cfg.replace(**found)


def _check_weights(cfg):
    """The official recipe starts from ImageNet weights: refuse a real dataset without them
    (unless ``from_scratch``), and name a missing weights file before anything is built."""
    for flag, path in (('--pretrained', cfg.pretrained), ('--att-pretrained',
                                                          cfg.att_pretrained)):
        if path and not os.path.isfile(path):
            raise FileNotFoundError('%s %s: no such file' % (flag, path))
    needed = ['--pretrained'] + (['--att-pretrained'] if cfg.method == 'tasn' else [])
    missing = [f for f in needed if not getattr(cfg, f[2:].replace('-', '_'))]
    if missing and not cfg.from_scratch:
        raise ValueError(
            '--dataset %s trains from ImageNet weights in the official recipe, but %s %s not '
            'given: --pretrained takes the backbone\'s ImageNet .params (e.g. MXNet\'s '
            'resnet-50-0000.params or Gluon\'s resnet50_v2-*.params, or zoo: the file in '
            '~/.mxnet/models)%s; or give --from-scratch to train from random initialisation' % (
                cfg.dataset, ' and '.join(missing), 'is' if len(missing) == 1 else 'are',
                ', --att-pretrained the attention net\'s ResNet-18 (resnet-18-0000.params or '
                'resnet18_v2-*.params)' if cfg.method == 'tasn' else ''))


def _restore(net, trainer, record, ctx):
    """Loads a resumed run's parameters, trainer states, AMP loss-scaler state and generator
    states; returns ``(history, epochs done)``."""
    if record.get('trainer_states_dropped'):
        raise CheckpointError('%s cannot be resumed: its trainer states were deleted (a run '
                              'kept for evaluation only, as make demo keeps them)'
                              % record['record_path'])
    net.load_parameters(record['params_path'], ctx=ctx)
    if record.get('states_path'):
        trainer.load_states(record['states_path'])
    saved_scaler = record.get('amp_loss_scaler')
    if precision.loss_scaler(trainer) is not None:
        if saved_scaler:
            precision.restore_scaler(trainer, saved_scaler, record['record_path'])
        else:
            logger.info('the resumed run trained in float32 so far; AMP starts with a new loss '
                        'scale')
    elif saved_scaler:
        logger.info('the resumed run trained with AMP (%s); it continues in float32',
                    saved_scaler.get('dtype'))
    restore_rng(record.get('rng'))
    logger.info('resuming from %s (epoch %d complete)', record['record_path'], record['epoch'])
    return list(record.get('history', [])), int(record['epoch'])


def prepare(overrides, ctx=None):
    """Resolves the run's configuration, checks it, the data and the devices, and builds the
    network, the objective, the trainer and the validation data, restoring a resumed run's
    state. Writes nothing (a failed start leaves no run folder). Returns a TrainingRun."""
    cfg, record = resolve_run_config(overrides)
    if not cfg.out:
        raise ValueError('--out (the run directory) is required')
    if record is None and find_checkpoint(cfg.out, verify=False) is not None:
        raise ValueError('%s already holds a checkpoint; continue it with --resume %s or choose '
                         'another --out' % (cfg.out, cfg.out))
    ctx = ctx or get_contexts(cfg.gpus, cfg.num_cpu_contexts)
    per_device_batch_size(cfg.batch_size, len(ctx))
    if record is None:  # a resumed run's weights come from its checkpoint
        cfg = _find_weights(cfg)
        _check_weights(cfg)
    data_dir = os.path.abspath(builders.prepare_data_dir(cfg, may_generate=record is None))
    ds = read_dataset_info(data_dir)
    if record is not None and (ds['num_classes'] != cfg.num_classes or
                               (cfg.class_names and ds['class_names'] != cfg.class_names)):
        raise DatasetError('%s has %d classes %s; the resumed run was trained on %s classes %s'
                           % (data_dir, ds['num_classes'], ds['class_names'][:5],
                              cfg.num_classes, (cfg.class_names or [])[:5]))
    cfg = cfg.replace(data_dir=data_dir, num_classes=int(ds['num_classes']),
                      class_names=list(ds['class_names']))
    kv, rank, num_workers = make_kvstore(cfg.kvstore, len(ctx))
    # this worker's training records, checked now (once per process), before anything is written
    check_split(data_dir, 'train', ds, cfg.verify_data, num_workers, rank)
    ipe = iters_per_epoch(cfg, ds['num_train'], num_workers)
    if ipe < 1:
        raise DatasetError('an epoch would have no training step: %d training images over %d '
                           'worker(s), --batch-size %d, --last-batch %s'
                           % (ds['num_train'], num_workers, cfg.batch_size, cfg.last_batch))
    schedule = lr_schedule(cfg, ipe)
    if cfg.amp:  # before any network is built (process-wide and final: engine/precision.py)
        precision.enable_amp(ctx)
    seed_everything(epoch_seed(cfg.seed, -1, 0))
    net = builders.build_net(cfg if record is None else
                             cfg.replace(pretrained=None, att_pretrained=None), ctx)
    trainer = make_trainer(net, cfg, kv)
    history, start = _restore(net, trainer, record, ctx) if record else ([], 0)
    val_iter = builders.val_loader(cfg, data_dir) if rank == 0 else None
    return TrainingRun(cfg, ctx, kv, rank, num_workers, ds, net, builders.build_loss(cfg),
                       trainer, val_iter, history, start,
                       record['record_path'] if record else None, ipe, schedule)


# ------------------------------------------------------------------------------ training

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


def reported_logits(out):
    """The logits of the reported accuracy: TASN's master_aux, the baseline's only head."""
    return out[HEADS.index('master_aux')] if isinstance(out, (list, tuple)) else out


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
    logits = np.concatenate([reported_logits(o).asnumpy() for o in outputs], axis=0)
    return values, logits


def iters_per_epoch(cfg, num_train, num_workers):
    """Training iterations of every epoch, the same on every worker (a synchronous step needs
    all of them): the batches of the smallest shard (the last one), ceil(shard / batch) when
    the last batch is wrapped, the full batches when it is discarded, or
    ``max_batches_per_epoch`` if fewer. The learning-rate schedule counts iterations with it."""
    shard = count_shard(int(num_train), int(num_workers), int(num_workers) - 1)
    b = int(cfg.batch_size)
    n = -(-shard // b) if cfg.last_batch == 'wrap' else shard // b
    return min(n, cfg.max_batches_per_epoch) if cfg.max_batches_per_epoch else n


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
        res = validate(tr.net, tr.val_iter, tr.ctx, method=cfg.method, loss_fn=tr.loss_fn,
                       temperature=cfg.temperature)
    except EvaluationError as e:
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
    except Exception as e:  # a plotting problem must not stop training
        logger.warning('could not draw curves.png: %s', e)
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
    """:func:`prepare` then :func:`train` (no log file: see ``engine.logs.run_log``)."""
    return train(prepare(overrides, ctx))
