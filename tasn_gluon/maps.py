"""From attention maps to the sampler's inputs (TASN spec section 4).

* structure map: the sum of the attention maps, each *distinct* map once (or, in legacy mode,
  weighted by the official code's mask), upsampled to the input size, squared;
* detail map: while training, one map drawn uniformly among the distinct maps of each image;
  at inference the plain sum of all maps; upsampled to the input size, not squared;
* marginals of a map A (H x W): ``row[r] = max_c A[r, c]`` (the row profile, drives y) and
  ``col[c] = max_r A[r, c]`` (the column profile, drives x), each divided by its sum.

Distinct maps
-------------
Maps tie whenever channels of the features X are zero everywhere (they all give the same
trilinear map) or the relation softmax saturates; on a trained model most of the 512 maps are
copies of a handful. The official code tells maps apart by their spatial sums: per image,
``a_c = sum over positions of map c``. Here, as there, maps with equal sums form one group:

* :func:`distinct_mask` marks the first channel of every group: the structure map of the default
  mode sums each distinct map once;
* :func:`official_structure_mask` is the official ``Structure_Att`` mask, kept for legacy mode:
  ``idx = argsort(a)``, ``keep_sorted = [1] + (a[idx][1:] != a[idx][:-1])``, applied to the
  channels *in channel order* (a mask meant for the sorted order; the author acknowledged the
  defect). It keeps as many maps as there are groups, but mostly the wrong ones;
* :func:`draw_distinct` draws the training detail map uniformly among the groups, as the
  official ``Detail_Att`` does (tied maps are identical, so which member stands for its group
  does not matter).

Ties are exact float equality, as in the official code: tied maps come from identical rows of
the relation matrix and are computed by identical arithmetic. Under mixed precision (``--amp``)
the features are cast to float32 first (``attention.amp_float32``): they arrive in
float16/bfloat16, whose 8- or 11-bit significands would tie distinct maps, and the sampler that
reads the profiles has float32/float64 kernels only.

Every resize is MXNet's align-corners bilinear ``contrib.BilinearResize2D``, as in the official
graph. The functions take the namespace ``F`` (``mx.nd`` or ``mx.sym``) first, so they work
inside ``hybrid_forward``, on the whole batch at once.

Train / predict switch inside a graph
-------------------------------------
A hybridized block runs as a CachedOp that only knows the ``is_train`` flag of the call
(``autograd.is_training()``). :func:`train_indicator` turns that flag into a tensor: ``Dropout``
with p = 0.5 on a tensor of ones returns exactly 1 at inference (identity) and only 0 or 2 while
training, so ``(dropout(ones) != 1)`` is 1.0 in training and 0.0 in inference, in imperative and
hybridized mode alike. The random draw comes from ``random.uniform_like``, so it follows
``mx.random.seed``.
"""
from mxnet.gluon.block import HybridBlock

from .attention import amp_float32, combine_maps

__all__ = ['resize_bilinear', 'train_indicator', 'channel_sums', 'distinct_mask',
           'official_structure_mask', 'structure_weights', 'draw_distinct', 'detail_weights',
           'marginal_profiles', 'sampler_inputs', 'structure_profiles',
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


def channel_sums(F, x, rel=None):
    """(N, C) spatial sums of the attention maps: of ``x`` (N, C, h, w) itself, or, with the
    relation ``rel`` (N, C, C) of a TrilinearAttention given, of the maps ``M = rel @ X`` of the
    features ``x`` without forming them (``sum over positions of M = rel @ (sum over positions
    of X)``)."""
    x = amp_float32(F, x)   # exact comparisons follow (module docstring)
    sums = F.sum(F.reshape(x, (0, 0, -1)), axis=-1, keepdims=True)          # (N, C, 1)
    if rel is not None:
        sums = F.batch_dot(rel, sums)
    return F.reshape(sums, (0, -1))


def _index_pairs(F, sums, compare):
    """(C, C) constant ``compare(i, j)`` over channel indices, e.g. F.broadcast_lesser."""
    idx = F.contrib.arange_like(sums, axis=1)                               # (C,)
    return compare(F.reshape(idx, (-1, 1)), F.reshape(idx, (1, -1)))        # [i, j]


def distinct_mask(F, sums):
    """(N, C): 1 for the first channel of every group of channels with equal sums, else 0."""
    sums = amp_float32(F, sums)
    equal = F.broadcast_equal(F.expand_dims(sums, axis=2), F.expand_dims(sums, axis=1))
    later = _index_pairs(F, sums, F.broadcast_greater)                      # [i, j] = i > j
    earlier_twins = F.sum(F.broadcast_mul(equal, F.expand_dims(later, axis=0)), axis=-1)
    return earlier_twins == 0


def official_structure_mask(F, sums):
    """(N, C): the official ``Structure_Att`` weights (see the module docstring)."""
    ordered = F.sort(amp_float32(F, sums), axis=-1)
    changed = F.slice_axis(ordered, axis=1, begin=1, end=None) != \
        F.slice_axis(ordered, axis=1, begin=0, end=-1)
    return F.concat(F.ones_like(F.slice_axis(ordered, axis=1, begin=0, end=1)), changed, dim=1)


def structure_weights(F, sums, official=False):
    """(N, C) weights of the structure map: each distinct map once, or the official mask."""
    return official_structure_mask(F, sums) if official else distinct_mask(F, sums)


def draw_distinct(F, first, u):
    """One-hot (N, C) of a channel drawn uniformly among the distinct maps.

    ``first`` is :func:`distinct_mask` (K ones per image), ``u`` (N, 1) uniform in [0, 1): the
    k-th first channel is chosen, k = floor(u * K).
    """
    count = F.sum(first, axis=1, keepdims=True)                             # K, (N, 1)
    k = F.broadcast_minimum(F.floor(u * count), count - 1)
    upto = _index_pairs(F, first, F.broadcast_lesser_equal)                 # [j, c] = j <= c
    rank = F.dot(first, upto)                                               # firsts in 0..c
    return first * F.broadcast_equal(rank, k + 1)


def detail_weights(F, first, train=None, channel=None):
    """(N, C) weights of the detail map: in training (``train`` (N, 1) = 1) one distinct map
    drawn per image, at inference (0) all ones; ``train`` None: :func:`train_indicator`. With
    ``channel`` (N,) given, those channels in either mode (pictures)."""
    if channel is not None:
        index = F.broadcast_like(F.reshape(F.contrib.arange_like(first, axis=1), (1, -1)),
                                 first)
        return F.broadcast_equal(index, F.reshape(channel, (-1, 1)))
    # the draw before the train indicator: the order in which a hybridized graph runs the two
    # random operators, so that imperative and hybridized runs draw alike for one seed
    u = F.random.uniform_like(F.slice_axis(first, axis=1, begin=0, end=1))       # (N, 1)
    chosen = draw_distinct(F, first, u)
    if train is None:
        train = train_indicator(F, first)
    return F.broadcast_mul(chosen, train) + F.broadcast_mul(F.ones_like(chosen), 1 - train)


def _profiles(F, amaps, size):
    """Row and column profiles of (N, K, H, W) maps -> ((N, K, H), (N, K, W)); ``size`` is
    H = W or (H, W). Max pooling over a full row / column: exact, and much faster on CPU than
    MXNet's ``max`` over a middle axis."""
    h, w = (int(size), int(size)) if isinstance(size, (int, float)) else map(int, size)
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


def sampler_inputs(F, x, input_size, attention=None, official_mask=False, channel=None):
    """Features (or attention maps) -> the sampler's profiles of the detail and structure images.

    Parameters
    ----------
    x : (N, C, h, w)
        The feature map X when ``attention`` (a TrilinearAttention) is given: only the two
        needed combinations of its attention maps are computed (:func:`combine_maps`), never
        all C maps. Otherwise ``x`` holds the attention maps themselves.
    input_size : int
        Side of the image the sampler reads (512); the maps are upsampled to it.
    official_mask : bool
        The official structure-map mask (legacy mode) instead of each distinct map once.
    channel : (N,) or None
        The detail map's channels, in either mode, instead of the mode's own choice (pictures).

    Returns
    -------
    ``(detail_y, detail_x, structure_y, structure_x, detail_map, structure_map, num_distinct)``:
    row (y) and column (x) profiles (N, input_size), the two upsampled maps (N, input_size,
    input_size), and the number of distinct maps of each image (N,). No gradient flows back.
    """
    x = amp_float32(F, F.BlockGrad(x))                     # float32 under AMP (docstring)
    rel = attention.relation(F, x) if attention is not None else None     # once, for both uses
    sums = channel_sums(F, x, rel)                                         # (N, C)
    first = distinct_mask(F, sums)
    detail = detail_weights(F, first, channel=channel)
    structure = official_structure_mask(F, sums) if official_mask else first
    weights = F.stack(detail, structure, axis=1)                           # (N, 2, C)
    small = combine_maps(F, x, weights, rel)                               # (N, 2, h, w)
    up = resize_bilinear(F, small, input_size)                             # (N, 2, S, S)
    dmap = F.slice_axis(up, axis=1, begin=0, end=1)
    smap = F.square(F.slice_axis(up, axis=1, begin=1, end=2))
    rows, cols = _profiles(F, F.concat(dmap, smap, dim=1), input_size)
    dy, sy = F.split(rows, num_outputs=2, axis=1, squeeze_axis=True)
    dx, sx = F.split(cols, num_outputs=2, axis=1, squeeze_axis=True)
    return (dy, dx, sy, sx, F.reshape(dmap, (0, -3, 0)), F.reshape(smap, (0, -3, 0)),
            F.sum(first, axis=1))


def structure_profiles(F, x, input_size, attention=None, official_mask=False):
    """Row and column profiles (N, input_size) of the structure map only (inference), as
    :func:`sampler_inputs` computes them."""
    x = amp_float32(F, F.BlockGrad(x))                     # float32 under AMP (docstring)
    rel = attention.relation(F, x) if attention is not None else None
    weights = F.expand_dims(structure_weights(F, channel_sums(F, x, rel), official_mask),
                            axis=1)                                        # (N, 1, C)
    small = combine_maps(F, x, weights, rel)
    row, col = _profiles(F, F.square(resize_bilinear(F, small, input_size)), input_size)
    return F.reshape(row, (0, -1)), F.reshape(col, (0, -1))


class MapsToProfiles(HybridBlock):
    """:func:`sampler_inputs` as a block (the random detail draw): ``MapsToProfiles(input_size,
    attention, official_mask)(x)``."""

    def __init__(self, input_size, attention=None, official_mask=False, **kwargs):
        super().__init__(**kwargs)
        self.input_size = int(input_size)
        self.attention = attention  # parameter-free; TASN's own block is shared here
        self.official_mask = bool(official_mask)

    def hybrid_forward(self, F, x):
        return sampler_inputs(F, x, self.input_size, self.attention, self.official_mask)
