"""The run configuration: one object with every setting and its default, checked in one place,
resolved from a recipe and the user's settings, and the one way a saved configuration is read
back.

:class:`RunConfig` holds every setting of a training run with its default: the defaults are the
official CUB recipe (spec section 7); the other datasets' recipes are ``recipes.RECIPES``
(:func:`resolve_config` applies one, then the user's settings). The resolved configuration is
saved as ``config.json`` in the run directory and in every checkpoint record, and read back by
:func:`read_saved_config` (resume, evaluation, prediction, export).
"""
import copy
import dataclasses
import json
import math
from typing import List, Optional

from ..data import TRAIN_AUGMENT, TRAIN_LAST_BATCH, VERIFY_LEVELS
from ..errors import ConfigError
from ..model_zoo import backbone_names
from .recipes import RECIPES

__all__ = ['RunConfig', 'LR_MODES', 'METHODS', 'KVSTORES', 'STRUCTURAL_KEYS', 'NETWORK_KEYS',
           'recipe_config', 'resolve_config', 'read_saved_config', 'format_config', 'flag']

LR_MODES = ('step', 'cosine')
METHODS = ('tasn', 'baseline')
KVSTORES = ('local', 'device', 'nccl', 'dist_sync', 'dist_device_sync', 'dist_async',
            'horovod')
# Settings that define the network and the data; a resumed run must not change them.
STRUCTURAL_KEYS = ('dataset', 'net', 'method', 'num_classes', 'input_size', 'att_size',
                   'sample_size', 'legacy_sampler', 'uniform_sampler', 'batch_size', 'seed')
# Settings that describe a saved network (the flags of eval, predict, export, visualize).
NETWORK_KEYS = ('method', 'net', 'num_classes', 'input_size', 'att_size', 'sample_size',
                'legacy_sampler')


@dataclasses.dataclass
class RunConfig:
    """Every setting of a run. Field defaults are the official CUB recipe. ``None`` means "not
    given" (a default decided elsewhere, named at the field); a value out of range is an error
    (:meth:`check`), never a silent default."""
    # what to train, on what, where
    dataset: str = 'cub'
    method: str = 'tasn'              # tasn | baseline
    net: str = 'resnet50'             # a backbone of model_zoo (backbone_names())
    data_dir: Optional[str] = None    # packed folder (tools/im2rec.py); synthetic: generated
    out: Optional[str] = None         # the run directory
    resume: Optional[str] = None      # continue the run in this directory
    # the network
    input_size: int = 512
    att_size: int = 224
    sample_size: int = 224
    legacy_sampler: bool = False      # the official arithmetic: sampler grid, structure mask
    uniform_sampler: bool = False     # ablation: uniform profiles (the sampler's contribution)
    pretrained: Optional[str] = None      # backbone ImageNet weights: a local file, or 'zoo'
    att_pretrained: Optional[str] = None  # attention-net (ResNet-18) ImageNet weights, the same
    model_root: Optional[str] = None      # the model-zoo folder of 'zoo' (None: GluonCV's)
    from_scratch: bool = False        # allow a real dataset without ImageNet weights
    # the objective
    temperature: float = 10.0
    kd_weight: float = 1.0            # 0 drops the distillation term (ablation)
    detach_teacher: bool = False
    # optimisation
    batch_size: int = 96              # images per step of one worker, over its devices
    lr: float = 0.1
    lr_steps: List[int] = dataclasses.field(default_factory=lambda: [100, 200])
    lr_factor: float = 0.1
    lr_mode: str = 'step'             # step (lr_steps, lr_factor) | cosine (to 0 at the end)
    warmup_epochs: int = 0            # linear warm-up from 0 to lr over these first epochs
    epochs: int = 300
    momentum: float = 0.0
    wd: float = 0.0
    # data
    aug: dict = dataclasses.field(default_factory=lambda: dict(TRAIN_AUGMENT))
    # the colour steps on each device's batch (the record iterator's arithmetic, a third less
    # CPU work per image): None when every device is a GPU; False: all in the record iterator
    augment_on_device: Optional[bool] = None
    num_data_threads: Optional[int] = None
    # what is checked of the record files before use: 'full' (structure and checksums, once
    # per process), 'headers' (structure only) or 'none' (see docs/datasets.md)
    verify_data: str = 'full'
    # a short last training batch: 'wrap' (completed with the epoch's first images, as the
    # official iterator's round_batch: every image is seen each epoch) or 'discard'
    last_batch: str = 'wrap'
    # devices
    gpus: str = ''
    kvstore: Optional[str] = None     # None: 'device' on several devices, else 'local'
    num_cpu_contexts: int = 1         # > 1: several CPU contexts (data parallelism without GPUs)
    # mixed precision (mxnet.contrib.amp): float16 on GPUs, bfloat16 on CPUs; the parameters,
    # the sampler, the attention and the losses stay float32 (engine/precision.py)
    amp: bool = False
    # bookkeeping
    seed: int = 0
    log_interval: int = 20
    keep_checkpoints: int = 2         # epoch checkpoints kept (0: all)
    progress: Optional[bool] = None   # None: a progress bar when stderr is a terminal
    max_batches_per_epoch: Optional[int] = None   # debugging/tests: cut epochs short (>= 1)
    eval_batch_size: Optional[int] = None         # validation batch (None: batch_size)
    # set from the dataset when the run starts
    num_classes: Optional[int] = None
    class_names: Optional[List[str]] = None
    note: str = ''

    def replace(self, **changes):
        """A checked copy with ``changes`` applied."""
        return dataclasses.replace(copy.deepcopy(self), **changes).checked()

    def to_dict(self):
        return dataclasses.asdict(self)

    def checked(self):
        """A copy in canonical form (``lr_steps`` a list of ints, ``warmup_epochs`` an int),
        after :meth:`check`; the object itself is not changed."""
        cfg = dataclasses.replace(self, lr_steps=_parse_steps(self.lr_steps))
        cfg.check()
        if isinstance(cfg.warmup_epochs, float):
            cfg = dataclasses.replace(cfg, warmup_epochs=int(cfg.warmup_epochs))
        return cfg

    def check(self):
        """Raises ConfigError naming the flag of the first bad setting; changes nothing."""
        _choice('dataset', self.dataset, sorted(RECIPES))
        _choice('method', self.method, METHODS)
        _choice('net', self.net, backbone_names())
        for key in ('batch_size', 'epochs', 'input_size', 'att_size', 'sample_size',
                    'log_interval', 'num_cpu_contexts'):
            _at_least(key, getattr(self, key), 1)
        for key in ('num_data_threads', 'max_batches_per_epoch', 'eval_batch_size'):
            if getattr(self, key) is not None:
                _at_least(key, getattr(self, key), 1)
        _at_least('keep_checkpoints', self.keep_checkpoints, 0, ' (0 keeps all)')
        if self.sample_size > self.input_size or self.att_size > self.input_size:
            raise ConfigError('--att-size (%d) and --sample-size (%d) cannot exceed '
                              '--input-size (%d)' % (self.att_size, self.sample_size,
                                                     self.input_size))
        for key in ('lr', 'momentum', 'wd', 'lr_factor', 'kd_weight', 'temperature'):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (key == 'temperature' and v == 0):
                raise ConfigError('--%s must be a %s finite number, not %r'
                                  % (flag(key), 'positive' if key == 'temperature'
                                     else 'non-negative', v))
        self._check_switches()
        self._check_schedule()

    def _check_switches(self):
        if self.method != 'tasn':
            for key in ('uniform_sampler', 'legacy_sampler'):
                if getattr(self, key):
                    raise ConfigError('--%s applies to --method tasn only' % flag(key))
        _choice('verify_data', self.verify_data, VERIFY_LEVELS)
        _choice('last_batch', self.last_batch, TRAIN_LAST_BATCH)
        if self.kvstore is not None:
            _choice('kvstore', self.kvstore, KVSTORES)
        for key in ('amp', 'legacy_sampler', 'uniform_sampler', 'detach_teacher',
                    'from_scratch'):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError('--%s is a switch (true or false), not %r'
                                  % (flag(key), getattr(self, key)))
        if self.amp and self.kvstore == 'dist_async':
            # the servers apply the updates: a step whose gradients overflowed cannot be skipped
            raise ConfigError('--amp cannot be used with --kvstore dist_async (the servers '
                              'update the weights, so AMP cannot skip a step whose gradients '
                              'overflowed)')

    def _check_schedule(self):
        _choice('lr_mode', self.lr_mode, LR_MODES)
        w = self.warmup_epochs
        if isinstance(w, bool) or not isinstance(w, (int, float)) or int(w) != w or \
                not 0 <= w < self.epochs:
            raise ConfigError('--warmup-epochs must be a whole number from 0 to --epochs - 1 '
                              '(%d), not %r' % (self.epochs - 1, w))
        early = [s for s in _parse_steps(self.lr_steps) if s < w]
        if self.lr_mode == 'step' and early:
            raise ConfigError('--lr-steps %s fall inside the %d warm-up epochs '
                              '(--warmup-epochs); the warm-up ends at --lr' % (early, w))


def flag(key):
    """The command-line flag of setting ``key``, without its dashes."""
    return key.replace('_', '-')


def _choice(key, value, choices):
    if value not in choices:
        raise ConfigError('--%s must be one of %s, not %r' % (flag(key), ', '.join(choices),
                                                               value))


def _at_least(key, value, low, note=''):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError('--%s must be a whole number >= %d%s, not %r'
                          % (flag(key), low, note, value))


def _parse_steps(steps):
    if isinstance(steps, str):
        try:
            steps = [int(s) for s in steps.replace(' ', '').split(',') if s]
        except ValueError:
            raise ConfigError('--lr-steps must be comma-separated epochs like "100,200", not %r'
                              % steps)
    try:
        steps = [int(s) for s in steps]
    except (TypeError, ValueError):
        raise ConfigError('--lr-steps must be a list of epochs, not %r' % (steps,))
    if any(b <= a for a, b in zip(steps, steps[1:])) or any(s < 0 for s in steps):
        raise ConfigError('--lr-steps must be increasing non-negative epochs, not %r' % steps)
    return steps


def recipe_config(dataset):
    """RunConfig's defaults with ``dataset``'s recipe applied (unchecked: for --help)."""
    if dataset not in RECIPES:
        raise ConfigError('--dataset must be one of %s, not %r' % (', '.join(sorted(RECIPES)),
                                                                  dataset))
    recipe = copy.deepcopy(RECIPES[dataset])
    aug = dict(TRAIN_AUGMENT)
    aug.update(recipe.pop('aug', {}))
    return RunConfig(dataset=dataset, aug=aug, **recipe)


def resolve_config(overrides, dataset=None):
    """RunConfig's defaults, the dataset's recipe, then the user's settings (None = unset);
    ``aug`` entries are merged key by key. Returns a checked RunConfig."""
    overrides = {k: v for k, v in dict(overrides).items() if v is not None}
    dataset = dataset or overrides.pop('dataset', None) or 'cub'
    overrides.pop('dataset', None)
    cfg = recipe_config(dataset)
    aug = dict(cfg.aug)
    aug.update(overrides.pop('aug', None) or {})
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(RunConfig)})
    if unknown:
        raise ConfigError('unknown run settings: %s' % ', '.join(unknown))
    return cfg.replace(aug=aug, **overrides)


def read_saved_config(saved, where):
    """The RunConfig that a run directory, checkpoint record or export recorded (``saved``, a
    dict), checked; ``where`` names the file in errors. Settings this version does not know
    are an error naming them (a run of another version of this project)."""
    if not isinstance(saved, dict):
        raise ConfigError('%s: the saved run configuration is not a JSON object' % where)
    names = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(saved) - names)
    if unknown:
        raise ConfigError('%s: the saved run configuration has settings this version does '
                          'not know: %s' % (where, ', '.join(unknown)))
    try:
        return RunConfig(**copy.deepcopy(saved)).checked()
    except ConfigError as e:
        raise ConfigError('%s: %s' % (where, e)) from e


def format_config(cfg):
    d = cfg.to_dict() if isinstance(cfg, RunConfig) else cfg
    return json.dumps(d, indent=1, sort_keys=True, default=str)
