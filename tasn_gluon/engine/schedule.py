"""The learning rate of every training iteration (GluonCV's schedulers): the step rule of the
recipes, cosine, and a linear warm-up."""
from ..errors import ConfigError
from .config import LR_MODES

__all__ = ['LR_MODES', 'lr_at_epoch', 'lr_schedule']


def lr_at_epoch(cfg, epoch):
    """The step rule as the recipes state it: the learning rate during ``epoch`` (0-based) is
    lr x lr_factor per step of ``lr_steps`` already reached. :func:`lr_schedule` in step mode
    gives exactly this value at every iteration of the epoch (after any warm-up)."""
    n = sum(1 for s in cfg.lr_steps if epoch >= s)
    return float(cfg.lr) * float(cfg.lr_factor) ** n


def lr_schedule(cfg, iters_per_epoch):
    r"""The learning rate of every training iteration, as GluonCV's ``LRScheduler`` /
    ``LRSequential`` compute it (the composition of GluonCV's ImageNet training scripts).

    Returns a callable: ``schedule(i)`` is the rate of iteration ``i`` (0-based, counted over the
    whole run: epoch ``e``, batch ``b`` is ``i = e * iters_per_epoch + b``); a function of ``i``
    alone, so a resumed run repeats the uninterrupted one's rates.

    * ``lr_mode='step'``: ``lr x lr_factor ** (steps of lr_steps reached)``, equal to
      :func:`lr_at_epoch` at every iteration (the same float operations);
    * ``lr_mode='cosine'``: ``lr (1 + cos(pi T / (n - 1))) / 2`` over the n iterations after the
      warm-up (T = 0 .. n - 1), from lr down to exactly 0 at the last one;
    * ``warmup_epochs = w > 0``: first, linear from 0 at iteration 0 to lr at iteration
      ``W - 1``, ``W = w * iters_per_epoch`` (GluonCV's ``linear`` mode); step epochs count from
      the start of the run as without warm-up.

    Parameters
    ----------
    cfg : RunConfig
    iters_per_epoch : int
        Training iterations of every epoch (``training.iters_per_epoch``).
    """
    # imported here: gluoncv loads its whole package (model zoo, SciPy...) on import, which the
    # configuration itself does not need
    from gluoncv.utils import LRScheduler, LRSequential
    ipe, warm = int(iters_per_epoch), int(cfg.warmup_epochs)
    if ipe < 1:
        raise ConfigError('iters_per_epoch must be >= 1, not %r' % iters_per_epoch)
    if cfg.lr_mode == 'cosine' and (cfg.epochs - warm) * ipe < 2:
        raise ConfigError('--lr-mode cosine needs at least 2 iterations after the warm-up; '
                         '%d epoch(s) of %d iteration(s) give %d'
                         % (cfg.epochs - warm, ipe, (cfg.epochs - warm) * ipe))
    if warm and warm * ipe < 2:
        raise ConfigError('--warmup-epochs %d gives %d warm-up iteration(s); the linear warm-up '
                         'needs at least 2' % (warm, warm * ipe))
    main = LRScheduler(cfg.lr_mode, base_lr=float(cfg.lr), target_lr=0.0,
                       nepochs=cfg.epochs - warm, iters_per_epoch=ipe,
                       step_epoch=[s - warm for s in cfg.lr_steps],
                       step_factor=float(cfg.lr_factor))
    if not warm:
        return main
    return LRSequential([LRScheduler('linear', base_lr=0.0, target_lr=float(cfg.lr),
                                     nepochs=warm, iters_per_epoch=ipe), main])
