"""Trilinear attention (TASN spec section 3) and the paper's normalisation ablations.

Reference: H. Zheng, J. Fu, Z.-J. Zha, J. Luo, "Looking for the Devil in the Details: Learning
Trilinear Attention Sampling Network for Fine-grained Image Recognition", CVPR 2019, Sec. 3.1.

With X the feature map reshaped to (C, HW)::

    N1 = softmax over HW of (s * X)      # spatial normalisation, s = 7 in the official code
    R  = N1 @ X^T                        # (C, C) channel relations; right factor is raw X
    N2 = softmax over the last axis of R # relation normalisation
    M  = N2 @ X                          # (C, HW): C attention maps

Under mixed precision (``--amp``) the block computes in float32 whatever dtype X arrives in
(:func:`amp_float32`): the spatial softmax of 7 X saturates in low precision, and
the maps feed exact comparisons (``tasn_gluon.maps``) and the float32-only sampler.
"""
from mxnet.contrib import amp as _amp
from mxnet.gluon.block import HybridBlock

__all__ = ['TrilinearAttention', 'ATTENTION_VARIANTS', 'KEY_DTYPE', 'amp_float32',
           'combine_maps']

# the wider dtype of the relation that tells maps apart (tasn_gluon.maps)
KEY_DTYPE = 'float64'

# variant -> (spatial softmax, relation softmax); 'identity' uses the feature channels as maps
ATTENTION_VARIANTS = {
    'full': (True, True),        # softmax_rows(softmax_hw(s X) X^T) X   (TASN)
    'none': (False, False),      # X X^T X
    'spatial': (True, False),    # softmax_hw(s X) X^T X
    'relation': (False, True),   # softmax_rows(X X^T) X
    'identity': None,            # M = X
}


def amp_float32(F, x):
    """``x`` cast to float32 while mixed precision is on in this process (``amp.init``: the
    input may then be float16/bfloat16), else ``x`` itself. Without AMP no node is added, so
    float32 and float64 graphs stay exactly as they were (MXNet's CPU ``amp_cast`` has no
    float64 kernel). Decided when the graph is built, which under AMP comes after
    ``amp.init`` (engine/precision.py)."""
    return F.amp_cast(x, dtype='float32') if _amp.amp._amp_initialized else x


def combine_maps(F, x, weights, rel, rel_dtype=None, dtype=None):
    """Weighted sums of the attention maps ``M = rel @ X`` (``rel`` None: of X itself) without
    forming them: ``weights`` (N, K, C) -> (N, K, H, W), out[:, k] = sum_c weights[:, k, c] M[:, c],
    computed as (weights @ rel) @ X: two small products instead of the (C x C) @ (C x HW) one,
    since TASN only needs two combinations (the structure map and the detail map). A batched
    product: MXNet's reductions over a middle axis are slow.

    ``rel_dtype``: the dtype of ``rel`` when it differs from that of ``x`` (a float64 relation,
    ``tasn_gluon.maps``): ``weights @ rel`` is formed in it and cast to ``dtype``, the dtype of
    ``x``, before the product with X."""
    flat = F.reshape(x, (0, 0, -1))
    if rel is not None:
        if rel_dtype is not None:
            weights = F.cast(F.batch_dot(F.cast(weights, dtype=rel_dtype), rel), dtype=dtype)
        else:
            weights = F.batch_dot(weights, rel)                     # (N, K, C)
    out = F.batch_dot(weights, flat)                                # (N, K, HW)
    return F.reshape_like(out, x, lhs_begin=2, rhs_begin=2)


class TrilinearAttention(HybridBlock):
    r"""Trilinear attention: (N, C, H, W) feature maps -> (N, C, H, W) attention maps.

    Parameters
    ----------
    softmax_scale : float
        Scale of the features inside the spatial softmax (7 in the official code, chosen to
        give the softmax a useful sharpness).
    variant : str
        ``'full'`` (TASN), ``'none'`` (no softmax: X X^T X), ``'spatial'`` (only the spatial
        softmax), ``'relation'`` (only the softmax over channel relations) or ``'identity'``
        (the feature channels themselves are the attention maps), the ablations of the paper.

    The block has no parameters; in TASN its output is cut from the graph before sampling.
    """

    def __init__(self, softmax_scale=7.0, variant='full', **kwargs):
        super().__init__(**kwargs)
        if variant not in ATTENTION_VARIANTS:
            raise ValueError('Unknown trilinear attention variant %r; options are %s'
                             % (variant, sorted(ATTENTION_VARIANTS)))
        self.softmax_scale = float(softmax_scale)
        self.variant = variant

    def relation(self, F, x, with_logits=False, wide=None):
        """The (normalised) channel-relation matrix (N, C, C) such that M = relation @ X, or None
        for the ``identity`` variant. ``wide``: ``x`` in a wider dtype (float64,
        ``tasn_gluon.maps``): the spatial softmax is computed from ``x``, row by row, and the
        product and the relation softmax in the wider dtype; None: all in the dtype of ``x``.
        ``with_logits``: also the matrix before the relation softmax (the relation itself for
        the variants without one)."""
        if self.variant == 'identity':
            return (None, None) if with_logits else None
        spatial, relation = ATTENTION_VARIANTS[self.variant]
        flat = F.reshape(x, (0, 0, -1))                             # (N, C, HW)
        left = F.softmax(flat * self.softmax_scale, axis=-1) if spatial else flat
        if wide is not None:
            flat = F.reshape(wide, (0, 0, -1))
            left = F.cast(left, dtype=KEY_DTYPE) if spatial else flat
        logits = F.batch_dot(left, flat, transpose_b=True)          # (N, C, C)
        rel = F.softmax(logits, axis=-1) if relation else logits
        return (rel, logits) if with_logits else rel

    @property
    def bounded_relation(self):
        """Whether every relation entry is at most the largest feature (the spatial softmax's
        rows sum to 1), which ``maps.key_error_bound`` uses."""
        return self.variant != 'identity' and ATTENTION_VARIANTS[self.variant][0]

    def hybrid_forward(self, F, x):
        x = amp_float32(F, x)
        rel = self.relation(F, x)
        if rel is None:
            return F.identity(x)
        return F.reshape_like(F.batch_dot(rel, F.reshape(x, (0, 0, -1))), x)  # (N, C, H, W)

    def __repr__(self):
        return '%s(softmax_scale=%g, variant=%r)' % (self.__class__.__name__,
                                                     self.softmax_scale, self.variant)
