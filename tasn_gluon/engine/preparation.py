"""Preparing a training run: its configuration (a new run or a resumed one), the checks of the
data, the weights and the devices, the run folder's lock, and the network, objective, trainer
and validation data, restored for a resumed run. In the run folder :func:`prepare` writes
only the lock (a failed start leaves no folder it created); outside it, a new run on the
built-in synthetic set generates that set's cache on first use. ``training.train`` then runs
the epochs.
"""
import dataclasses
import logging
import os
from typing import Optional

import mxnet as mx
from mxnet import gluon

from ..data import check_split, count_shard, read_dataset_info
from ..errors import CheckpointError, ConfigError, DatasetError, InputError, SetupError
from ..files import require_file
from ..model_zoo import ATTENTION_NET, find_pretrained
from . import builders, precision
from .checkpoint import find_checkpoint, load_checkpoint, restore_rng
from .config import KVSTORES, STRUCTURAL_KEYS, RunConfig, read_saved_config, resolve_config
from .devices import get_contexts, per_device_batch_size
from .runs import RunLock
from .schedule import lr_at_epoch, lr_schedule
from .seeds import epoch_seed, seed_everything

__all__ = ['TrainingRun', 'prepare', 'resolve_run_config', 'make_kvstore', 'make_trainer',
           'iters_per_epoch']

logger = logging.getLogger(__name__)


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
    lr_schedule: object = None         # iteration -> learning rate (schedule.lr_schedule)
    lock: Optional[RunLock] = None     # this process owns the run folder (rank 0)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.close()
        return False

    def close(self):
        """Gives up the run folder (the lock)."""
        if self.lock is not None:
            self.lock.release()

    @property
    def out(self):
        return self.cfg.out

    @property
    def step_size(self):
        # Gradients are summed over the workers' batches, except under Horovod, whose
        # DistributedTrainer already averages them over the workers.
        return self.cfg.batch_size * (1 if self.kv == 'horovod' else self.num_workers)


def resolve_run_config(overrides):
    """``overrides`` (flag name -> value, None = unset) -> ``(RunConfig, resume record or
    None)``. A resumed run takes its saved configuration, with the settings given now on top
    (never a structural one that differs); it always trains into the ``--resume`` directory,
    wherever the run was made (the saved ``out`` is only where it was made). A damaged newest
    checkpoint falls back to the newest intact one, saying so."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given.get('resume'):
        return resolve_config(given), None
    run_dir = os.path.abspath(given.pop('resume'))
    if given.get('out') and os.path.abspath(given['out']) != run_dir:
        raise ConfigError('--resume %s trains into that run directory; --out %s differs (copy '
                          'the run there first to continue it elsewhere)'
                          % (run_dir, given['out']))
    record = load_checkpoint(run_dir, fallback=True)
    saved = read_saved_config(record['config'], record['record_path'])
    for k in STRUCTURAL_KEYS:
        if k in given and given[k] != getattr(saved, k):
            raise ConfigError('--resume %s: the run was trained with %s=%r; it cannot continue '
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
        missing = [v for v in ('DMLC_ROLE', 'DMLC_PS_ROOT_URI', 'DMLC_PS_ROOT_PORT',
                               'DMLC_NUM_WORKER', 'DMLC_NUM_SERVER') if not os.environ.get(v)]
        if missing:
            raise ConfigError('--kvstore %s runs under the distributed launcher (tools/launch.py '
                              '-n WORKERS -s SERVERS -- python tools/train.py ...), which sets '
                              '%s; they are not set' % (name, ', '.join(missing)))
        kv = mx.kv.create(name)
        return kv, kv.rank, kv.num_workers
    if name == 'horovod':
        try:
            import horovod.mxnet as hvd
        except ImportError:
            raise SetupError('--kvstore horovod needs Horovod (make setup HOROVOD=1)')
        hvd.init()
        return 'horovod', hvd.rank(), hvd.size()
    if name not in ('local', 'device', 'nccl'):
        raise ConfigError('--kvstore must be one of %s, not %r' % (', '.join(KVSTORES), name))
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
            raise ConfigError('--kvstore horovod runs one process per GPU: give each process '
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
        except InputError as e:
            raise InputError('--%s %s: %s' % (key.replace('_', '-'), getattr(cfg, key), e)) \
                from e
    return cfg.replace(**found)


def _check_weights(cfg):
    """The official recipe starts from ImageNet weights: refuse a real dataset without them
    (unless ``from_scratch``), and name a missing weights file before anything is built."""
    for flag, path in (('--pretrained', cfg.pretrained), ('--att-pretrained',
                                                          cfg.att_pretrained)):
        if path:
            require_file(path, flag)
    needed = ['--pretrained'] + (['--att-pretrained'] if cfg.method == 'tasn' else [])
    missing = [f for f in needed if not getattr(cfg, f[2:].replace('-', '_'))]
    if missing and not cfg.from_scratch:
        raise ConfigError(
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


def iters_per_epoch(cfg, num_train, num_workers):
    """Training iterations of every epoch, the same on every worker (a synchronous step needs
    all of them): the batches of the smallest shard (the last one), ceil(shard / batch) when
    the last batch is wrapped, the full batches when it is discarded, or
    ``max_batches_per_epoch`` if fewer. The learning-rate schedule counts iterations with it."""
    shard = count_shard(int(num_train), int(num_workers), int(num_workers) - 1)
    b = int(cfg.batch_size)
    n = -(-shard // b) if cfg.last_batch == 'wrap' else shard // b
    return min(n, cfg.max_batches_per_epoch) if cfg.max_batches_per_epoch else n


def _holds_checkpoint(run_dir):
    """Whether ``run_dir`` holds a checkpoint (a pointer or an epoch record), intact or not."""
    return os.path.isdir(run_dir) and any(
        name == 'checkpoint.json' or (name.startswith('epoch-') and name.endswith('.json'))
        for name in os.listdir(run_dir))


def _check_fresh(cfg, record):
    """A new run may not go into a folder that holds a checkpoint; a resumed one only from the
    checkpoint it was read from (checked again under the lock: another process may have
    written since)."""
    if record is None and _holds_checkpoint(cfg.out):
        raise ConfigError('%s already holds a checkpoint; continue it with --resume %s or '
                          'choose another --out' % (cfg.out, cfg.out))
    if record is not None:
        now = find_checkpoint(cfg.out, fallback=True)
        if now is None or now['record_path'] != record['record_path']:
            raise CheckpointError('%s changed while this run started (its newest checkpoint '
                                  'is no longer %s); start again' % (cfg.out,
                                                                     record['record_path']))


def _check_data(cfg, record):
    """The data folder and dataset.json of the run: (cfg with data_dir and classes, info)."""
    data_dir = os.path.abspath(builders.prepare_data_dir(cfg, may_generate=record is None))
    ds = read_dataset_info(data_dir)
    if record is not None and (ds['num_classes'] != cfg.num_classes or
                               (cfg.class_names and ds['class_names'] != cfg.class_names)):
        raise DatasetError('%s has %d classes %s; the resumed run was trained on %s classes %s'
                           % (data_dir, ds['num_classes'], ds['class_names'][:5],
                              cfg.num_classes, (cfg.class_names or [])[:5]))
    return cfg.replace(data_dir=data_dir, num_classes=int(ds['num_classes']),
                       class_names=list(ds['class_names'])), ds


def prepare(overrides, ctx=None):
    """Resolves the run's configuration, checks it, the data and the devices, takes the run
    folder (rank 0: ``runs.RunLock``) and builds the network, the objective, the trainer and
    the validation data, restoring a resumed run's state. Returns a TrainingRun (a context
    manager that gives the folder up)."""
    cfg, record = resolve_run_config(overrides)
    if not cfg.out:
        raise ConfigError('--out (the run directory) is required')
    if record is None:
        _check_fresh(cfg, None)          # early, before the data checks; again under the lock
    ctx = ctx or get_contexts(cfg.gpus, cfg.num_cpu_contexts)
    per_device_batch_size(cfg.batch_size, len(ctx))
    if record is None:  # a resumed run's weights come from its checkpoint
        cfg = _find_weights(cfg)
        _check_weights(cfg)
    cfg, ds = _check_data(cfg, record)
    kv, rank, num_workers = make_kvstore(cfg.kvstore, len(ctx))
    # this worker's training records, checked now (once per process), before anything is written
    check_split(cfg.data_dir, 'train', ds, cfg.verify_data, num_workers, rank)
    ipe = iters_per_epoch(cfg, ds['num_train'], num_workers)
    if ipe < 1:
        raise DatasetError('an epoch would have no training step: %d training images over %d '
                           'worker(s), --batch-size %d, --last-batch %s'
                           % (ds['num_train'], num_workers, cfg.batch_size, cfg.last_batch))
    schedule = lr_schedule(cfg, ipe)
    lock = RunLock(cfg.out).acquire() if rank == 0 else None
    try:
        if lock is not None:
            _check_fresh(cfg, record)
        return _build(cfg, ctx, kv, rank, num_workers, ds, record, ipe, schedule, lock)
    except BaseException:
        if lock is not None:
            lock.release(remove_if_empty=True)
        raise


def _build(cfg, ctx, kv, rank, num_workers, ds, record, ipe, schedule, lock):
    """The network, trainer and validation data of a checked run."""
    if cfg.amp:  # before any network is built (process-wide and final: engine/precision.py)
        precision.enable_amp(ctx)
    seed_everything(epoch_seed(cfg.seed, -1, 0))
    net = builders.build_net(cfg if record is None else
                             cfg.replace(pretrained=None, att_pretrained=None), ctx)
    trainer = make_trainer(net, cfg, kv)
    history, start = _restore(net, trainer, record, ctx) if record else ([], 0)
    val_iter = builders.val_loader(cfg, cfg.data_dir) if rank == 0 else None
    return TrainingRun(cfg, ctx, kv, rank, num_workers, ds, net, builders.build_loss(cfg),
                       trainer, val_iter, history, start,
                       record['record_path'] if record else None, ipe, schedule, lock)
