"""Trilinear attention (every variant) against NumPy, in float64.

Tolerance: float64 (u = 1.1e-16) on at most 20 positions and 6 channels of values below 4: every
sum has under 20 terms, and the softmax of 7 X turns an absolute error e of its argument into a
relative error 2e, with |7 X| < 28; so each entry is within ~(20 + 2 * 28 * 20) u < 2e-13 of the
exact value on each side. RTOL = 1e-10 leaves 500x of that.
"""
import numpy as np
import pytest
import mxnet as mx

from maps_reference import trilinear_np
from tasn_gluon.attention import ATTENTION_VARIANTS, TrilinearAttention

RTOL = 1e-10


@pytest.mark.parametrize('variant', sorted(ATTENTION_VARIANTS))
@pytest.mark.parametrize('hybridize', [False, True])
def test_trilinear_matches_numpy(variant, hybridize):
    rng = np.random.RandomState(0)
    x = np.abs(rng.randn(2, 6, 4, 5))  # non-negative, like the ReLU'd features X
    att = TrilinearAttention(variant=variant)
    if hybridize:
        att.hybridize()
    out = att(mx.nd.array(x, dtype='float64')).asnumpy()
    assert out.dtype == np.float64 and out.shape == x.shape
    np.testing.assert_allclose(out, trilinear_np(x, variant), rtol=RTOL, atol=1e-12)


def test_trilinear_scale_and_bad_variant():
    x = np.abs(np.random.RandomState(1).randn(1, 3, 2, 3))
    out = TrilinearAttention(softmax_scale=2.5)(mx.nd.array(x, dtype='float64')).asnumpy()
    np.testing.assert_allclose(out, trilinear_np(x, 'full', 2.5), rtol=RTOL)
    with pytest.raises(ValueError, match='variant'):
        TrilinearAttention(variant='bogus')


def test_trilinear_full_rows_are_convex_combinations():
    # softmax rows sum to 1: every map is a convex combination of the feature channels
    x = np.abs(np.random.RandomState(2).randn(1, 5, 3, 3))
    out = TrilinearAttention()(mx.nd.array(x, dtype='float64')).asnumpy()
    assert out.min() >= x.min() - 1e-12
    assert (out.reshape(5, -1).max(axis=1) <= x.reshape(5, -1).max(axis=0).max() + 1e-12).all()


