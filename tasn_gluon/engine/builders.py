"""What a run is made of, built from its RunConfig: the network, the objective and the data.

Training, evaluation and the pictures build these the same way, here. The model, loss and
iterator factories are this module's own names (``get_tasn``, ``TASNLoss``, ``get_train_iter``
...): the engine's tests replace them with small stand-ins of the same signature through
``monkeypatch``.
"""
import logging

from mxnet import gluon

from ..data import get_train_iter, get_val_iter, is_packed
from ..data.synthetic import cached_synthetic_set
from ..errors import ConfigError, DatasetError
from ..files import require_folder
from ..losses import TASNLoss
from ..model_zoo import get_baseline, get_tasn

__all__ = ['build_net', 'build_loss', 'prepare_data_dir', 'train_loader', 'val_loader']

logger = logging.getLogger(__name__)


def build_net(cfg, ctx):
    """TASN or the baseline for ``cfg``, initialised on ``ctx`` (Xavier(gaussian, in, 2) for new
    layers, spec section 7; the ``pretrained`` / ``att_pretrained`` files on top), hybridized.
    """
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if cfg.method == 'tasn':
        net = get_tasn(cfg.net, int(cfg.num_classes), cfg.input_size, cfg.att_size,
                       cfg.sample_size, legacy_sampler=cfg.legacy_sampler,
                       uniform_sampler=cfg.uniform_sampler, pretrained=cfg.pretrained,
                       att_pretrained=cfg.att_pretrained, ctx=ctx)
    else:
        net = get_baseline(cfg.net, int(cfg.num_classes), cfg.sample_size,
                           pretrained=cfg.pretrained, ctx=ctx)
    net.hybridize(static_alloc=True)
    if net.validation_net() is not net:   # TASN's view that also counts the distinct maps
        net.validation_net().hybridize(static_alloc=True)
    return net


def build_loss(cfg):
    """The TASN objective (spec section 6) or softmax cross-entropy for the baseline; both
    return one loss per sample."""
    if cfg.method != 'tasn':
        return gluon.loss.SoftmaxCrossEntropyLoss()
    return TASNLoss(weights={'kd': cfg.kd_weight}, temperature=cfg.temperature,
                    detach_teacher=cfg.detach_teacher)


def prepare_data_dir(cfg, may_generate=True):
    """The data folder: ``cfg.data_dir``, or for ``--dataset synthetic`` without one the built-in
    set, generated (seeded) into its cache folder on first use
    (``data.synthetic.cached_synthetic_set``). ``may_generate=False`` (a resumed run, which
    writes nothing outside its directory) only accepts an existing folder."""
    if cfg.data_dir:
        d = require_folder(cfg.data_dir, '--data-dir')
        if not is_packed(d):
            raise DatasetError('--data-dir %s has no dataset.json: it must be a folder with '
                               'train.rec, val.rec and dataset.json (see tools/im2rec.py)'
                               % d)
        return d
    if cfg.dataset != 'synthetic':
        raise ConfigError('--data-dir is required for --dataset %s (a folder with train.rec, '
                          'val.rec and dataset.json)' % cfg.dataset)
    return cached_synthetic_set(may_generate)


def train_loader(cfg, data_dir, seed, num_parts=1, part_index=0, color_on_device=False):
    """The training iterator of one epoch, shuffled and augmented with ``seed``."""
    return get_train_iter(data_dir, cfg.batch_size, cfg.input_size, num_parts=num_parts,
                          part_index=part_index, seed=seed, num_threads=cfg.num_data_threads,
                          verify=cfg.verify_data, last_batch=cfg.last_batch,
                          color_on_device=color_on_device, **cfg.aug)


def val_loader(cfg, data_dir, batch_size=None, num_parts=1, part_index=0, input_size=None):
    """The validation iterator: every image of the shard once (see ``validate``)."""
    return get_val_iter(data_dir, int(batch_size or cfg.eval_batch_size or cfg.batch_size),
                        int(input_size or cfg.input_size), num_parts=num_parts,
                        part_index=part_index, num_threads=cfg.num_data_threads,
                        verify=cfg.verify_data)

