"""The sampler's test shapes: every test of the kernels (the MXNet operator, the C ABI, the
emulated CUDA kernels, the GPU check) draws its inputs from these cases."""
import collections

import numpy as np

from tasn_gluon.ops.c_abi import out_size

__all__ = ['Case', 'CASES', 'random_inputs', 'max_abs']


class Case(collections.namedtuple('Case', 'n c h w ly lx scale dense iters what')):
    """One sampler call: data (n, c, h, w), profiles of lengths ly and lx, the attributes, and
    what the case exercises."""

    def attrs(self, legacy):
        """The C ABI's (scale, dense, iters, legacy)."""
        return (self.scale, self.dense, self.iters, int(legacy))

    def out_shape(self):
        return (self.n, self.c, out_size(self.h, self.scale), out_size(self.w, self.scale))

    def inputs(self, rng, dtype):
        """(data, att_y, att_x, grad_out) drawn from rng."""
        data, att_y, att_x = random_inputs(rng, self.n, self.c, self.h, self.w, self.ly,
                                           self.lx, dtype)
        return data, att_y, att_x, rng.uniform(-1, 1, self.out_shape()).astype(dtype)


CASES = [
    Case(1, 1, 16, 16, 16, 16, 0.5, 4.0, 5, 'square, profile length = size'),
    Case(3, 2, 20, 13, 7, 11, 0.75, 2.0, 3, 'non-square, short profiles'),
    Case(2, 3, 12, 18, 24, 5, 1.5, 2.0, 3, 'upsampling, profile longer than the image'),
    Case(4, 1, 9, 31, 9, 31, 0.4375, 4.0, 0, 'no clipping rounds'),
    Case(2, 2, 1, 6, 3, 4, 2.0, 4.0, 5, 'a one-pixel-high image'),
    Case(1, 2, 5, 1, 4, 2, 3.0, 4.0, 5, 'a one-pixel-wide image'),
    Case(5, 3, 64, 96, 64, 96, 0.4375, 4.0, 5, 'batch 5, 64x96 -> 28x42'),
    Case(2, 9, 10, 14, 10, 14, 0.75, 4.0, 5, 'channels in several groups'),
    Case(2, 3, 512, 512, 512, 512, 0.4375, 4.0, 5, 'the benchmark shape, batch 2'),
    Case(2, 1, 40, 1400, 40, 2600, 0.5, 3.0, 5, 'profiles too long for shared memory'),
    Case(1, 1, 3, 11000, 3, 50, 0.5, 4.0, 5, 'an axis too long for shared counters'),
]


def random_inputs(rng, n, c, h, w, ly, lx, dtype):
    """Data in [-1, 1] and peaked profiles (so that clipping and give-back really act); the
    last image of a batch has uniform profiles."""
    data = rng.uniform(-1, 1, (n, c, h, w)).astype(dtype)
    att_y = (rng.uniform(0, 1, (n, ly)) ** 4).astype(dtype)
    att_x = (rng.uniform(0, 1, (n, lx)) ** 4).astype(dtype)
    if n > 1:
        att_y[-1] = 1.0
        att_x[-1] = 1.0
    return data, att_y, att_x


def max_abs(a, b):
    """Largest absolute difference (inf for different shapes or NaN against a number)."""
    if a.shape != b.shape:
        return float('inf')
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.abs(a.astype(np.float64) - b.astype(np.float64)))
    return float(np.nan_to_num(diff, nan=np.inf).max())


# ---- the comparison ------------------------------------------------------------------------

