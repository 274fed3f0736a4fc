"""From attention maps to the sampler's inputs (TASN spec section 4).

* structure map: the sum of all attention maps, upsampled to the input size, squared;
* detail map: one uniformly random attention map per image while training, the sum of all maps
  at inference; upsampled to the input size, not squared;
* marginals of a map A (H x W): ``row[r] = max_c A[r, c]`` (the row profile, drives y) and
  ``col[c] = max_r A[r, c]`` (the column profile, drives x), each divided by its sum.

Every resize is MXNet's align-corners bilinear ``contrib.BilinearResize2D``, as in the official
graph. The functions take the namespace ``F`` (``mx.nd`` or ``mx.sym``) first, so they work
inside ``hybrid_forward``.

Train / predict switch inside a graph
-------------------------------------
A hybridized block runs as a CachedOp that only knows the ``is_train`` flag of the call
(``autograd.is_training()``). :func:`train_indicator` turns that flag into a tensor: ``Dropout``
with p = 0.5 on a tensor of ones returns exactly 1 at inference (identity) and only 0 or 2 while
training, so ``(dropout(ones) != 1)`` is 1.0 in training and 0.0 in inference, in imperative and
hybridized mode alike. The random channel comes from ``random.uniform_like``, so it follows
``mx.random.seed``.
"""
from mxnet.gluon.block import HybridBlock

__all__ = ['resize_bilinear', 'train_indicator', 'channel_weights', 'weighted_maps',
           'structure_map', 'detail_map', 'marginal_profiles', 'structure_profiles',
           'MapsToProfiles']

# A profile is divided by (sum + _EPS): an all-zero map gives an all-zero profile, which the
# sampler treats as uniform, instead of 0/0 = NaN. For float32 sums above ~1e-4 it is a no-op.
_EPS = 1e-12


def resize_bilinear(F, x, size):
    """Align-corners bilinear resize of (N, C, H, W) to (N, C, size, size)."""
    return F.contrib.BilinearResize2D(x, height=int(size), width=int(size), align_corners=True)


def train_indicator(F, ref):
    """(N, 1) tensor: 1.0 in training mode, 0.0 in inference mode (see the module docstring).

    ``ref`` is any (N, ...) tensor; only its batch size is used.
    """
    ones = F.ones_like(F.BlockGrad(F.slice_axis(F.reshape(ref, (0, -1)), axis=1,
                                                begin=0, end=1)))
    # cudnn_off: MXNet's own kernel, whose kept values are exactly 1 / (1 - p) = 2
    return F.BlockGrad(F.Dropout(ones, p=0.5, cudnn_off=True) != 1)


def _first_pixel(F, maps):
    """(N, C) slice of (N, C, h, w), used for its shape and dtype only."""
    return F.reshape(F.slice(maps, begin=(None, None, 0, 0), end=(None, None, 1, 1)), (0, -1))


def channel_weights(F, maps, channels, train=None, channel=None):
    """(N, C) weights that turn C maps into the detail map.

    Parameters
    ----------
    maps : (N, C, H, W)
    channels : int
        C.
    train : (N, 1) tensor or None
        1.0: one uniformly random channel per image (one-hot weights); 0.0: all ones (sum).
        None: computed with :func:`train_indicator`.
    channel : (N,) tensor of channel indices or None
        Use these channels instead of random ones when ``train`` is 1 (for visualisation).
    """
    first = F.BlockGrad(_first_pixel(F, maps))                            # (N, C)
    if channel is None:
        u = F.random.uniform_like(F.slice_axis(first, axis=1, begin=0, end=1))  # (N, 1)
        channel = F.clip(F.floor(u * channels), 0, channels - 1)
    # one-hot built from comparisons so that it keeps the dtype of the maps
    index = F.broadcast_add(F.zeros_like(first),
                            F.reshape(F.contrib.arange_like(first, axis=1), (1, -1)))
    onehot = F.broadcast_equal(index, F.reshape(channel, (-1, 1)))        # (N, C)
    if train is None:
        train = train_indicator(F, maps)
    return F.broadcast_mul(onehot, train) + F.broadcast_mul(F.ones_like(onehot), 1 - train)


def weighted_maps(F, maps, weights):
    """(N, K, h, w) weighted channel sums: out[:, k] = sum_c weights[:, k, c] maps[:, c], for
    ``weights`` (N, K, C). A batched product: MXNet's reductions over a middle axis are slow."""
    out = F.batch_dot(weights, F.reshape(maps, (0, 0, -1)))              # (N, K, HW)
    return F.reshape_like(out, maps, lhs_begin=2, rhs_begin=2)


def structure_map(F, maps, size):
    """Structure map (N, size, size): channel sum, upsampled, squared."""
    ones = F.expand_dims(F.ones_like(_first_pixel(F, maps)), axis=1)        # (N, 1, C)
    up = resize_bilinear(F, weighted_maps(F, maps, ones), size)
    return F.square(F.reshape(up, (0, -3, 0)))


def detail_map(F, maps, size, weights):
    """Detail map (N, size, size): ``weights`` (N, C) (from :func:`channel_weights`) applied to
    the channels, upsampled, not squared."""
    up = resize_bilinear(F, weighted_maps(F, maps, F.expand_dims(weights, axis=1)), size)
    return F.reshape(up, (0, -3, 0))


def _hw(size):
    return (int(size), int(size)) if isinstance(size, (int, float)) else tuple(map(int, size))


def _profiles(F, amaps, size):
    """Row and column profiles of (N, K, H, W) maps -> ((N, K, H), (N, K, W)); ``size`` is
    H = W or (H, W). Max pooling over a full row / column: exact, and much faster on CPU than
    MXNet's ``max`` over a middle axis."""
    h, w = _hw(size)
    row = F.reshape(F.Pooling(amaps, kernel=(1, w), pool_type='max'), (0, 0, -1))
    col = F.reshape(F.Pooling(amaps, kernel=(h, 1), pool_type='max'), (0, 0, -1))
    row = F.broadcast_div(row, F.sum(row, axis=-1, keepdims=True) + _EPS)
    col = F.broadcast_div(col, F.sum(col, axis=-1, keepdims=True) + _EPS)
    return row, col


def marginal_profiles(F, amap, size):
    """Row and column profiles of (N, H, W) maps (``size`` = H = W, or (H, W)):
    ``row[r] = max_c A[r, c]`` (drives y) and ``col[c] = max_r A[r, c]`` (drives x), each
    divided by its sum; (N, H) and (N, W)."""
    row, col = _profiles(F, F.expand_dims(amap, axis=1), size)
    return F.reshape(row, (0, -1)), F.reshape(col, (0, -1))


def structure_profiles(F, maps, size, attention=None):
    """Row and column profiles (N, size) of the structure map of ``maps`` (N, C, h, w), or, with
    ``attention`` given, of the attention maps of the features ``maps`` (without forming them).
    """
    ones = F.expand_dims(F.ones_like(_first_pixel(F, maps)), axis=1)        # (N, 1, C)
    small = weighted_maps(F, maps, ones) if attention is None \
        else attention.combine(F, maps, ones)
    row, col = _profiles(F, F.square(resize_bilinear(F, small, size)), size)
    return F.reshape(row, (0, -1)), F.reshape(col, (0, -1))


class MapsToProfiles(HybridBlock):
    r"""Attention maps -> sampler profiles for the detail and structure images.

    Parameters
    ----------
    channels : int
        Number of attention maps C (512 in TASN).
    input_size : int
        Side of the image the sampler reads (512); the maps are upsampled to it.
    attention : TrilinearAttention or None
        If given, the input is the feature map X and only the two needed combinations of the
        attention maps are computed (``attention.combine``), never all C maps; otherwise the
        input is the attention maps themselves.

    Inputs: ``maps`` (N, C, h, w) (or X, see ``attention``); cut from the graph here.
    Outputs: ``(detail_y, detail_x, structure_y, structure_x, detail_map, structure_map)``:
    row (y) and column (x) profiles of shapes (N, input_size), and the two upsampled maps
    (N, input_size, input_size). The detail map is one random channel per image in training mode
    and the channel sum in inference mode (see the module docstring).
    """

    def __init__(self, channels, input_size, attention=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = int(channels)
        self.input_size = int(input_size)
        self.attention = attention  # parameter-free; TASN's own block is shared here

    def hybrid_forward(self, F, maps):
        maps = F.BlockGrad(maps)
        detail = channel_weights(F, maps, self.channels)                  # (N, C)
        weights = F.stack(detail, F.ones_like(detail), axis=1)             # (N, 2, C)
        if self.attention is None:
            small = weighted_maps(F, maps, weights)
        else:
            small = self.attention.combine(F, maps, weights)              # (N, 2, h, w)
        up = resize_bilinear(F, small, self.input_size)                    # (N, 2, S, S)
        dmap = F.slice_axis(up, axis=1, begin=0, end=1)
        smap = F.square(F.slice_axis(up, axis=1, begin=1, end=2))
        rows, cols = _profiles(F, F.concat(dmap, smap, dim=1), self.input_size)
        dy, sy = F.split(rows, num_outputs=2, axis=1, squeeze_axis=True)
        dx, sx = F.split(cols, num_outputs=2, axis=1, squeeze_axis=True)
        return dy, dx, sy, sx, F.reshape(dmap, (0, -3, 0)), F.reshape(smap, (0, -3, 0))
