"""Randomness of a run: MXNet cannot read back its generators' states, so every generator (MXNet
on every device, NumPy, Python) is reseeded at the start of each epoch from ``(seed, epoch,
rank)``: an epoch's randomness is a function of the seed and the epoch number alone, and a
resumed run repeats exactly what an uninterrupted one would have done."""
import random

import mxnet as mx
import numpy as np

__all__ = ['epoch_seed', 'seed_everything']


def epoch_seed(seed, epoch, rank=0):
    """The seed of epoch ``epoch`` (-1: initialisation) on worker ``rank``."""
    return (int(seed) * 1000003 + (int(epoch) + 1) * 7919 + int(rank) * 104729) % (2 ** 31 - 1)


def seed_everything(seed):
    mx.random.seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))
    random.seed(int(seed))
