"""The training loop: data-parallel TASN (or baseline) training with per-epoch checkpoints.

Layout follows GluonCV's training scripts: ``get_dataloader``, ``validate`` (in
``evaluation``), ``train``; ``tools/train.py`` only parses flags and calls ``run``.

Determinism and resume
----------------------
MXNet cannot read back its generators' states, so every generator (MXNet on every device, NumPy,
Python) is reseeded at the start of each epoch from ``(seed, epoch, rank)``, and the training
iterator of each epoch is created with a seed derived the same way. An epoch's randomness (data
order, augmentation, the detail map drawn per image) is therefore a function of the seed and the
epoch number alone, and resuming after epoch E repeats exactly what an uninterrupted run would
have done in epoch E+1.
"""
import inspect
import logging
import math
import os
import random
import sys
import time
import warnings

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from .checkpoint import (atomic_write_text, find_checkpoint, load_checkpoint,
                         rng_record, restore_rng, save_checkpoint)
from .devices import get_contexts, per_device_batch_size
from .evaluation import EvaluationError, output_list, validate
from .metrics import HEADS, TopKCounter, plot_curves, write_metrics_csv
from .recipes import default_synthetic_dir, format_config, lr_at_epoch, resolve_config

__all__ = ['Components', 'TrainingDiverged', 'build_net', 'build_loss', 'get_dataloader',
           'get_val_dataloader', 'train_step', 'train', 'run', 'setup_logging', 'seed_everything',
           'epoch_seed', 'prepare_data_dir', 'make_kvstore', 'make_trainer']

logger = logging.getLogger('tasn_gluon')

# Settings that define the network and the data; a resumed run must not change them.
STRUCTURAL_KEYS = ('net', 'method', 'num_classes', 'input_size', 'att_size', 'sample_size',
                   'legacy_sampler', 'uniform_sampler', 'batch_size', 'seed')


class Components:
    """Where the engine gets its models, loss and data: the library's own by default
    (``model_zoo.get_tasn``/``get_baseline``, ``losses.TASNLoss``, ``data.read_dataset_info``/
    ``get_train_iter``/``get_val_iter``, ``data.synthetic.make_synthetic_dataset``). Keyword
    arguments replace single pieces (tests use small stand-ins this way)."""

    _WHERE = dict(get_tasn='model_zoo', get_baseline='model_zoo', TASNLoss='losses',
                  read_dataset_info='data', get_train_iter='data', get_val_iter='data',
                  make_synthetic_dataset='data.synthetic')

    def __init__(self, **overrides):
        unknown = set(overrides) - set(self._WHERE)
        if unknown:
            raise TypeError('unknown components %s' % sorted(unknown))
        self._overrides = overrides

    def __getattr__(self, name):
        if name.startswith('_') or name not in self._WHERE:
            raise AttributeError(name)
        if name in self._overrides:
            return self._overrides[name]
        import importlib
        module = importlib.import_module('tasn_gluon.' + self._WHERE[name])
        return getattr(module, name)


def _components(components):
    return components if components is not None else Components()


class TrainingDiverged(RuntimeError):
    """A non-finite loss (or parameter): the run stops; the last good checkpoint is intact."""


# ----------------------------------------------------------------------------------- set-up

def setup_logging(out_dir=None, rank=0, console_level=logging.INFO, filename='train.log',
                  console=True, tag='run'):
    """Logs to ``out_dir/filename`` (appending, rank 0 only) and to the console. Handlers set up
    earlier with the same ``tag`` are replaced; others (e.g. the demo's own log) stay."""
    logger.setLevel(logging.DEBUG)
    for h in list(logger.handlers):
        if getattr(h, '_tasn_handler', None) == tag:
            logger.removeHandler(h)
            h.close()
    fmt = logging.Formatter('%(asctime)s %(levelname)s ' +
                            ('' if rank == 0 else '[rank %d] ' % rank) + '%(message)s')
    has_console = any(getattr(h, '_tasn_console', False) for h in logger.handlers)
    if console and not has_console:
        ch = logging.StreamHandler(sys.stdout)
        ch.setLevel(console_level)
        ch.setFormatter(fmt)
        ch._tasn_handler, ch._tasn_console = tag, True
        logger.addHandler(ch)
    if out_dir is not None and rank == 0:
        os.makedirs(out_dir, exist_ok=True)
        fh = logging.FileHandler(os.path.join(out_dir, filename))
        fh.setLevel(logging.DEBUG)
        fh.setFormatter(fmt)
        fh._tasn_handler = tag
        logger.addHandler(fh)
    logger.propagate = False
    return logger


def epoch_seed(seed, epoch, rank=0):
    """The seed of epoch ``epoch`` (-1: initialisation) on worker ``rank``."""
    return (int(seed) * 1000003 + (int(epoch) + 1) * 7919 + int(rank) * 104729) % (2 ** 31 - 1)


def seed_everything(seed):
    mx.random.seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))
    random.seed(int(seed))


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
            import horovod.mxnet as hvd  # noqa
        except ImportError:
            raise RuntimeError('--kvstore horovod needs Horovod (make setup HOROVOD=1)')
        hvd.init()
        return 'horovod', hvd.rank(), hvd.size()
    if name not in ('local', 'device', 'nccl'):
        raise ValueError('--kvstore must be local, device, nccl, dist_sync, dist_device_sync, '
                         'dist_async or horovod, not %r' % name)
    return name, 0, 1


# ------------------------------------------------------------------------------- model/loss

def build_net(cfg, num_classes, ctx, initialize=True, components=None):
    """TASN (``model_zoo.get_tasn``) or the baseline (``model_zoo.get_baseline``) for ``cfg``,
    initialised on ``ctx`` (the model's own initialisers: Xavier(gaussian, in, 2) for new
    layers, spec section 7; ``--pretrained`` files on top) and hybridized."""
    zoo = _components(components)
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if cfg['method'] == 'tasn':
        kwargs = dict(net=cfg['net'], num_classes=int(num_classes),
                      input_size=int(cfg['input_size']), att_size=int(cfg['att_size']),
                      sample_size=int(cfg['sample_size']),
                      legacy_sampler=bool(cfg.get('legacy_sampler', False)),
                      pretrained=cfg.get('pretrained'))
        if cfg.get('att_pretrained'):
            kwargs['att_pretrained'] = cfg['att_pretrained']
        fn = zoo.get_tasn
    else:
        kwargs = dict(net=cfg['net'], num_classes=int(num_classes),
                      sample_size=int(cfg['sample_size']), pretrained=cfg.get('pretrained'))
        fn = zoo.get_baseline
    params = inspect.signature(fn).parameters
    takes_ctx = 'ctx' in params
    if takes_ctx:
        kwargs['ctx'] = ctx
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        bad = {k: v for k, v in kwargs.items() if k not in params and v not in (None, False)}
        if bad:
            raise ValueError('%s does not support %s' % (
                fn.__name__, ', '.join('%s=%r' % kv for kv in bad.items())))
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    net = fn(**kwargs)
    if not takes_ctx:
        with warnings.catch_warnings():  # parameters the factory initialised already stay
            warnings.simplefilter('ignore')
            net.initialize(mx.init.Xavier(rnd_type='gaussian', factor_type='in', magnitude=2),
                           ctx=ctx)
        net.collect_params().reset_ctx(ctx)
    if cfg.get('uniform_sampler'):
        if cfg['method'] != 'tasn':
            raise ValueError('--uniform-sampler applies to --method tasn only')
        _use_uniform_profiles(net)
    net.hybridize(static_alloc=True)
    return net


def _use_uniform_profiles(net):
    """Ablation (the sampler's contribution): both sampled images are taken with uniform
    profiles, i.e. plain resizes of the input. Wraps the model's sampling step."""
    if not hasattr(net, '_sample'):
        raise ValueError('this TASN model has no sampling step to make uniform')
    sample = net._sample

    def uniform_sample(F, x, att_y, att_x):
        return sample(F, x, F.ones_like(att_y), F.ones_like(att_x))
    net._sample = uniform_sample


def build_loss(cfg, components=None):
    """The TASN objective (spec section 6) or softmax cross-entropy for the baseline; both return
    one loss per sample."""
    if cfg.get('method', 'tasn') != 'tasn':
        return gluon.loss.SoftmaxCrossEntropyLoss()
    TASNLoss = _components(components).TASNLoss
    kw = dict(temperature=float(cfg.get('temperature', 10.0)),
              detach_teacher=bool(cfg.get('detach_teacher', False)))
    kd_weight = float(cfg.get('kd_weight', 1.0))
    if kd_weight != 1.0:
        if 'weights' not in inspect.signature(TASNLoss).parameters:
            raise ValueError('--kd-weight %g needs a TASNLoss with term weights' % kd_weight)
        kw['weights'] = {'kd': kd_weight}
    return TASNLoss(**kw)


# ------------------------------------------------------------------------------------ data

def prepare_data_dir(cfg, components=None):
    """The data folder: ``--data-dir``, or for ``--dataset synthetic`` the built-in set, generated
    (seeded) into a cache folder on first use and reused after."""
    if cfg.get('data_dir'):
        d = cfg['data_dir']
        if not os.path.isfile(os.path.join(d, 'dataset.json')):
            raise FileNotFoundError('%s has no dataset.json: --data-dir must be a folder with '
                                    'train.rec, val.rec and dataset.json (see tools/im2rec.py)'
                                    % os.path.abspath(d))
        return d
    if cfg.get('dataset') != 'synthetic':
        raise ValueError('--data-dir is required for --dataset %s (a folder with train.rec, '
                         'val.rec and dataset.json)' % cfg.get('dataset'))
    # Imported here: the data package is needed only when the built-in set is prepared.
    from ..data.synthetic import SYNTHETIC_VERSION, cached_version
    d = cfg.get('synthetic_dir') or default_synthetic_dir()
    version = cached_version(d)
    if version != SYNTHETIC_VERSION:
        # A cache written by an older design of the set would silently change the task.
        logger.info('generating the built-in synthetic set into %s (%s)', d,
                    'first use' if version is None else 'the cached one is version %s, not %s'
                    % (version, SYNTHETIC_VERSION))
        _components(components).make_synthetic_dataset(d, seed=int(cfg.get('data_seed', 0)),
                                                       **cfg.get('synthetic_options', {}))
    else:
        logger.info('using the cached synthetic set in %s', d)
    return d


def _filter_kwargs(fn, kwargs):
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return kwargs, {}
    return ({k: v for k, v in kwargs.items() if k in params},
            {k: v for k, v in kwargs.items() if k not in params})


def get_dataloader(data_dir, batch_size, input_size, num_parts=1, part_index=0, seed=0,
                   num_threads=None, aug=None, components=None):
    """The training iterator of one epoch (shuffled and augmented with ``seed``)."""
    tdata = _components(components)
    kwargs = dict(batch_size=batch_size, input_size=input_size, num_parts=num_parts,
                  part_index=part_index, seed=seed, num_threads=num_threads)
    kwargs.update(aug or {})
    kwargs, dropped = _filter_kwargs(tdata.get_train_iter, kwargs)
    if dropped:
        logger.warning('the training iterator does not take %s; ignored', sorted(dropped))
    return tdata.get_train_iter(data_dir, **kwargs)


def get_val_dataloader(data_dir, batch_size, input_size, num_parts=1, part_index=0,
                       num_threads=None, components=None):
    tdata = _components(components)
    return tdata.get_val_iter(data_dir, batch_size=batch_size, input_size=input_size,
                              num_parts=num_parts, part_index=part_index, num_threads=num_threads)


# ------------------------------------------------------------------------------------ steps

def forward_losses(net, loss_fn, datas, labels):
    """Forward in training mode on every device; returns (losses, outputs) per device."""
    losses, outputs = [], []
    with autograd.record():
        for x, y in zip(datas, labels):
            out = net(x)
            losses.append(loss_fn(out, y))
            outputs.append(output_list(out))
    return losses, outputs


def train_step(net, trainer, loss_fn, data, label, ctx, step_size, where='', augment=None):
    """One data-parallel step on a batch; returns (loss values (N,), reported logits (N, K)).

    ``augment`` (the iterator's ``device_augment``, if any) is applied to each device's share
    of the batch. The loss is checked before the update: a non-finite value raises
    ``TrainingDiverged`` and leaves the parameters untouched.
    """
    datas = gluon.utils.split_and_load(data, ctx, even_split=True)
    if augment is not None:
        datas = [augment(d) for d in datas]
    labels = gluon.utils.split_and_load(label, ctx, even_split=True)
    losses, outputs = forward_losses(net, loss_fn, datas, labels)
    values = np.concatenate([l.asnumpy().reshape(-1) for l in losses])
    if not np.all(np.isfinite(values)):
        raise TrainingDiverged('the training loss became %s %s; training stopped before this '
                               'update, the last checkpoint is intact'
                               % ('NaN' if np.isnan(values).any() else 'infinite', where))
    autograd.backward(losses)
    trainer.step(step_size)
    logits = np.concatenate([o[-1].asnumpy() for o in outputs], axis=0)
    return values, logits


def _params_finite(net):
    for name, p in net.collect_params().items():
        if not np.isfinite(p.list_data()[0].abs().sum().asscalar()):
            return name
    return None


# ------------------------------------------------------------------------------------ train

def _resolve_resume(cfg):
    """Merges a resumed run's saved configuration with the new settings."""
    record = load_checkpoint(cfg['resume'])
    saved = dict(record['config'])
    given = cfg.get('_given', set())
    for k in STRUCTURAL_KEYS:
        if k in given and k in saved and cfg.get(k) != saved.get(k):
            raise ValueError('--resume %s: the run was trained with %s=%r; it cannot continue '
                             'with %r' % (cfg['resume'], k, saved[k], cfg[k]))
    merged = dict(saved)
    for k in given:
        merged[k] = cfg[k]
    merged['resume'] = cfg['resume']
    if not merged.get('out'):
        merged['out'] = cfg['resume']
    return merged, record


def make_trainer(net, opt_params, kv):
    """SGD over ``net``'s parameters with the kvstore ``kv`` (see ``make_kvstore``).

    The learning rate is set per epoch on the workers (``set_learning_rate``), so on
    ``dist_sync``/``dist_device_sync`` the update runs on the workers
    (``update_on_kvstore=False``: the servers only sum gradients); ``dist_async`` updates on
    the servers, which do not see later learning-rate changes (a warning says so)."""
    if kv == 'horovod':
        import horovod.mxnet as hvd
        params = net.collect_params()
        if len(next(iter(params.values())).list_ctx()) > 1:
            # DistributedTrainer all-reduces only the first device's gradients.
            raise ValueError('--kvstore horovod runs one process per GPU: give each process '
                             'one --gpus id, e.g. --gpus $HOROVOD_LOCAL_RANK')
        hvd.broadcast_parameters(params, root_rank=0)
        return hvd.DistributedTrainer(params, 'sgd', opt_params)
    update_on_kvstore = None
    kv_type = kv if isinstance(kv, str) else kv.type
    if kv_type in ('dist_sync', 'dist_device_sync'):
        update_on_kvstore = False
    elif kv_type == 'dist_async':
        logger.warning('dist_async updates on the servers: the learning-rate steps of the '
                       'recipe do not reach them; the initial learning rate stays in force')
    return gluon.Trainer(net.collect_params(), 'sgd', opt_params, kvstore=kv,
                         update_on_kvstore=update_on_kvstore)


def train(cfg, ctx=None, components=None):
    """Trains according to ``cfg`` (see ``recipes.resolve_config``); returns the metrics history
    (one dict per epoch). Writes into ``cfg['out']``: config.json, train.log, metrics.csv,
    curves.png and the epoch checkpoints."""
    record = None
    if cfg.get('resume'):
        cfg, record = _resolve_resume(cfg)
    out = cfg.get('out')
    if not out:
        raise ValueError('--out (the run directory) is required')
    cfg = {k: v for k, v in cfg.items() if not k.startswith('_')}
    if ctx is None:
        ctx = get_contexts(cfg.get('gpus', ''), int(cfg.get('num_cpu_contexts', 1)))
    kv, rank, num_workers = make_kvstore(cfg.get('kvstore'), len(ctx))
    setup_logging(out, rank)
    if record is None and find_checkpoint(out, verify=False) is not None:
        raise ValueError('%s already holds a checkpoint; continue it with --resume %s or choose '
                         'another --out' % (out, out))
    per_device_batch_size(cfg['batch_size'], len(ctx))
    data_dir = prepare_data_dir(cfg, components)
    ds = _components(components).read_dataset_info(data_dir)
    cfg['data_dir'] = os.path.abspath(data_dir)
    cfg['num_classes'] = int(ds['num_classes'])
    if record is not None and int(record['config'].get('num_classes', cfg['num_classes'])) \
            != cfg['num_classes']:
        raise ValueError('the resumed run has %s classes but %s has %d' % (
            record['config'].get('num_classes'), data_dir, cfg['num_classes']))
    if rank == 0:
        atomic_write_text(os.path.join(out, 'config.json'), format_config(cfg) + '\n')
    logger.info('tasn_gluon training: %s', ' '.join(sys.argv))
    logger.info('configuration (recipe %r: %s):\n%s', cfg['dataset'],
                cfg.get('note', ''), format_config(cfg))
    logger.info('devices: %s; kvstore %s; worker %d of %d; dataset %s (%d classes, %s train, '
                '%s val)', ctx, kv if isinstance(kv, str) else kv.type, rank, num_workers,
                ds.get('name'), cfg['num_classes'], ds.get('num_train'), ds.get('num_val'))

    seed_everything(epoch_seed(cfg['seed'], -1, 0))
    net = build_net(cfg, cfg['num_classes'], ctx, components=components)
    loss_fn = build_loss(cfg, components)
    opt_params = dict(learning_rate=lr_at_epoch(cfg, 0), momentum=float(cfg['momentum']),
                      wd=float(cfg['wd']))
    trainer = make_trainer(net, opt_params, kv)

    history, start_epoch = [], 0
    if record is not None:
        net.load_parameters(record['params_path'], ctx=ctx)
        if record.get('states_path'):
            trainer.load_states(record['states_path'])
        history = list(record.get('history', []))
        start_epoch = int(record['epoch'])
        restore_rng(record.get('rng'))
        logger.info('resumed from %s (epoch %d complete)', record['record_path'], start_epoch)
    if start_epoch >= int(cfg['epochs']):
        logger.info('nothing to do: %d of %d epochs already complete', start_epoch, cfg['epochs'])
        return history

    val_bs = int(cfg.get('eval_batch_size') or cfg['batch_size'])
    val_iter = get_val_dataloader(data_dir, val_bs, int(cfg['input_size']),
                                  num_threads=cfg.get('num_data_threads'),
                                  components=components) if rank == 0 else None
    num_train = ds.get('num_train')
    # for the progress bar: the iterator itself ends the epoch (ceil(shard / batch) batches)
    batches_per_epoch = (-(-int(num_train) // num_workers // int(cfg['batch_size']))
                         if num_train else None)
    limit = int(cfg['max_batches_per_epoch']) if cfg.get('max_batches_per_epoch') else None
    if limit:
        batches_per_epoch = min(batches_per_epoch or limit, limit)
    # Gradients are summed over the workers' batches, except under Horovod, whose
    # DistributedTrainer already averages them over the workers.
    step_size = int(cfg['batch_size']) * (1 if kv == 'horovod' else num_workers)
    csv_path = os.path.join(out, 'metrics.csv')
    aug = dict(cfg.get('aug') or {})
    if all(c.device_type == 'gpu' for c in ctx):
        # Colour jitter and lighting are a third of the record iterator's CPU time per image
        # and nearly free on the GPU: there they run on each device's batch.
        aug.setdefault('color_on_device', True)

    for epoch in range(start_epoch, int(cfg['epochs'])):
        seed = epoch_seed(cfg['seed'], epoch, rank)
        seed_everything(seed)
        lr = lr_at_epoch(cfg, epoch)
        trainer.set_learning_rate(lr)
        train_iter = get_dataloader(data_dir, int(cfg['batch_size']), int(cfg['input_size']),
                                    num_parts=num_workers, part_index=rank, seed=seed,
                                    num_threads=cfg.get('num_data_threads'), aug=aug,
                                    components=components)
        row = _train_epoch(net, trainer, loss_fn, train_iter, ctx, cfg, epoch, lr, step_size,
                           batches_per_epoch, limit)
        if rank == 0:
            tic = time.time()
            try:
                res = validate(net, val_iter, ctx, method=cfg['method'], loss_fn=loss_fn,
                               temperature=float(cfg.get('temperature', 10.0)))
            except EvaluationError as e:
                raise TrainingDiverged('epoch %d: %s; not saved, the last checkpoint is intact'
                                       % (epoch + 1, e))
            row.update(_val_row(res))
            bad = _params_finite(net)
            if bad is not None or not math.isfinite(row['val_loss'] or 0.0):
                raise TrainingDiverged('epoch %d ended with non-finite %s; not saved, the last '
                                       'checkpoint is intact' % (epoch + 1, bad or 'val loss'))
            history.append(row)
            save_checkpoint(out, epoch + 1, net, trainer, history=history, config=cfg,
                            rng=rng_record(cfg['seed'], epoch + 1),
                            keep=int(cfg.get('keep_checkpoints', 0) or 0))
            write_metrics_csv(csv_path, history)
            try:
                plot_curves(os.path.join(out, 'curves.png'), history,
                            title='%s %s on %s' % (cfg['method'], cfg['net'], cfg['dataset']))
            except Exception as e:  # a plotting problem must not stop training
                logger.warning('could not draw curves.png: %s', e)
            logger.info('epoch %d/%d: lr %.4g train loss %.4f train top-1 %.2f%% | val %s '
                        '(%d images, %.1fs) | %.1f img/s', epoch + 1, cfg['epochs'], lr,
                        row['train_loss'], 100 * row['train_top1'], _val_summary(row),
                        row['num_val_images'], time.time() - tic, row['train_images_per_s'])
        else:
            history.append(row)
    return history


def _val_row(res):
    row = dict(val_loss=res.get('loss'), val_top1=res['top1'], val_top5=res['top5'],
               val_kd_loss=res.get('kd_loss'), num_val_images=res['num_images'])
    for h in HEADS:
        if h in res:
            row['val_' + h] = res[h]
            row['val_%s_top5' % h] = res[h + '_top5']
    return row


def _val_summary(row):
    if row.get('val_master_aux') is not None:
        s = ' '.join('%s %.2f%%' % (h, 100 * row['val_' + h]) for h in HEADS)
        return s + ' kd %.4f' % row['val_kd_loss']
    return 'top-1 %.2f%% top-5 %.2f%%' % (100 * row['val_top1'], 100 * row['val_top5'])


def _train_epoch(net, trainer, loss_fn, train_iter, ctx, cfg, epoch, lr, step_size, total,
                 limit=None):
    counter = TopKCounter()
    loss_sum, n_img = 0.0, 0
    augment = getattr(train_iter, 'device_augment', None)
    tic = time.time()
    bar = None
    if cfg.get('progress', True):
        try:
            from tqdm import tqdm
            bar = tqdm(total=total, desc='epoch %d/%d' % (epoch + 1, cfg['epochs']),
                       unit='batch', leave=False, dynamic_ncols=True, mininterval=1.0,
                       file=sys.stderr)
        except ImportError:
            bar = None
    try:
        for i, batch in enumerate(train_iter):
            if limit is not None and i >= limit:
                break
            data, label = batch.data[0], batch.label[0]
            values, logits = train_step(net, trainer, loss_fn, data, label, ctx, step_size,
                                        where='at epoch %d, batch %d' % (epoch + 1, i + 1),
                                        augment=augment)
            loss_sum += float(values.sum())
            n_img += values.size
            counter.update(logits, label.asnumpy())
            speed = n_img / max(time.time() - tic, 1e-9)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss='%.4f' % (loss_sum / n_img), img_s='%.1f' % speed,
                                refresh=False)
            if (i + 1) % int(cfg['log_interval']) == 0:
                msg = 'epoch %d batch %d: loss %.4f, top-1 %.2f%%, %.1f img/s' % (
                    epoch + 1, i + 1, loss_sum / n_img, 100 * counter.get()[0], speed)
                logger.log(logging.DEBUG if bar is not None else logging.INFO, msg)
    finally:
        if bar is not None:
            bar.close()
    if n_img == 0:
        raise RuntimeError('the training iterator gave no batch in epoch %d (is --batch-size '
                           'larger than the training set?)' % (epoch + 1))
    elapsed = time.time() - tic
    return dict(epoch=epoch + 1, lr=lr, train_loss=loss_sum / n_img, train_top1=counter.get()[0],
                epoch_time_s=elapsed, train_images_per_s=n_img / elapsed)


def run(overrides, given=None, ctx=None, components=None):
    """Resolves the configuration from user settings (``None`` = unset) and trains."""
    if overrides.get('resume') and not overrides.get('dataset'):
        rec = load_checkpoint(overrides['resume'])
        dataset = rec['config'].get('dataset')
    else:
        dataset = overrides.get('dataset')
    cfg = resolve_config(overrides, dataset)
    cfg['_given'] = set(given if given is not None else
                        (k for k, v in overrides.items() if v is not None))
    return train(cfg, ctx=ctx, components=components)
