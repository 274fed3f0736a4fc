"""From attention maps to the sampler's inputs (TASN spec section 4).

* structure map: the sum of the attention maps, each *distinct* map once (or, in legacy mode,
  weighted by the official code's mask), upsampled to the input size, squared;
* detail map: while training, one map drawn uniformly among the distinct maps of each image;
  at inference the plain sum of all maps; upsampled to the input size, not squared;
* marginals of a map A (H x W): ``row[r] = max_c A[r, c]`` (the row profile, drives y) and
  ``col[c] = max_r A[r, c]`` (the column profile, drives x), each divided by its sum.

Which maps are the same map
---------------------------
Maps coincide whenever channels of the features X are zero (or constant) everywhere -- they
all give the same trilinear map -- or the relation softmax saturates several rows to the same
row; on a trained model most of the 512 maps are copies of a handful. Such maps are identical
in exact arithmetic, but not in float32: the BLAS rounds rows of ``softmax(7 X) @ X^T`` that
are equal in exact arithmetic differently depending on which kernel and which thread's block
computes them (up to a few ulps), and the relation softmax turns an absolute error of its
argument into a relative error of the same size. Their float32 sums then differ by an ulp or
two, and an exact comparison splits a group on one CPU and not on another.

The default mode therefore decides identity on keys computed in float64 and compared at the
resolution of float32 (:func:`distinct_mask`):

* keys: per map M_c, its mass and its first moments along y and x,
  ``K_c = (sum_p M_cp, sum_p (y_p + 1) M_cp, sum_p (x_p + 1) M_cp)``, all formed as
  ``rel @ (X @ W)`` from the relation computed in float64 (:func:`map_keys`). Three keys
  rather than the official sum alone: two different maps rarely share a mass and both moments.
* rule: channels c and c' are the same map when every key agrees to within float32's machine
  epsilon plus twice the float64 rounding bound E,
  ``|K_c - K_c'| <= (eps32 + 2 E) max(K_c, K_c')`` with eps32 = 2^-23. A channel is the first
  of its group when no earlier channel is the same map (the official code keeps the first of
  every group too). The masks and the draw are exact 0/1 values in any precision.

Why this holds on every machine. X >= 0 (the attention net's X is a sum of ReLUs), so every
sum below has non-negative terms and errors are relative. The spatial softmax
``N1 = softmax(7 X)`` is computed in the features' dtype, row by row, by one piece of code that
sees only that row (no BLAS): equal rows of X give equal rows of N1, and from there on X and N1
are exact inputs of a float64 computation. With u = 2^-53, n = HW positions, C channels and
Rmax_c = max_j R_cj (R the relation before its softmax), to first order in u:

1. ``R = N1 X^T``: n non-negative products, relative error n u, hence absolute error at most
   n u Rmax_c.
2. ``rel = softmax(R)``: an absolute error d of the argument is a relative error 2d of the
   result; with the subtraction of the maximum (2u Rmax_c), exp (2u), the sum of C terms and
   the division: eta = 2 Rmax_c (n + 2) u + (C + 3) u.
3. ``K = rel @ (X W)``: C non-negative terms (X W is the same for every row): eta + C u.

So ``E_c = [2 Rmax_c (n + 2) + 2C + 3] u`` bounds the relative float64 error of every key of
channel c, whatever the BLAS does; :func:`key_error_bound` takes E with the image's largest
feature for Rmax (a row of N1 sums to 1, so R_cj <= max X; float32's rounding of that sum is
covered by a factor 1.001). Maps identical in exact arithmetic always form one group. For
TASN's sizes (n = 784, C = 512) and X up to 100, E < 4e-11, far below eps32 = 1.2e-7: maps
whose keys differ by more than float32 resolution never merge. Relation rows saturated to the
same row are maps whose difference is below float32 resolution (the official float32
arithmetic cannot tell them apart either): they merge. The float64 relation is also the one the
maps are combined with (:func:`combine_maps`), so it replaces the float32 one rather than
adding to it.

Legacy mode keeps the official code's arithmetic: the float32 relation, and exact equality of
the float32 map sums ``a_c = sum over positions of map c``:

* :func:`exact_distinct_mask` marks the first channel of every group of equal sums (the
  official training draw's candidates, and legacy mode's count of distinct maps);
* :func:`official_structure_mask` is the official ``Structure_Att`` mask:
  ``idx = argsort(a)``, ``keep_sorted = [1] + (a[idx][1:] != a[idx][:-1])``, applied to the
  channels *in channel order* (a mask meant for the sorted order; the author acknowledged the
  defect). It keeps as many maps as there are groups, but mostly the wrong ones.

Exact equality depends on rounding: on maps that are equal in exact arithmetic it may split a
group differently on another CPU, BLAS kernel or thread count (docs/deviations.md), as the
official code does.

:func:`draw_distinct` draws the training detail map uniformly among the groups, as the
official ``Detail_Att`` does (the members of a group are the same map, so which one stands for
it does not matter). Under mixed precision (``--amp``) the features are cast to float32 first
(``attention.amp_float32``): the sampler that reads the profiles has float32/float64 kernels
only.

Every resize is MXNet's align-corners bilinear ``contrib.BilinearResize2D``, as in the official
graph. The functions take the namespace ``F`` (``mx.nd`` or ``mx.sym``) first, so they work
inside ``hybrid_forward``, on the whole batch at once, on CPUs and GPUs.

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

from .attention import KEY_DTYPE, amp_float32, combine_maps

__all__ = ['FLOAT32_EPS', 'KEY_DTYPE', 'resize_bilinear', 'train_indicator', 'channel_sums',
           'map_keys', 'key_error_bound', 'distinct_mask', 'exact_distinct_mask',
           'official_structure_mask', 'map_groups', 'draw_distinct', 'detail_weights',
           'sampler_inputs', 'structure_profiles', 'MapsToProfiles']

FLOAT32_EPS = 2.0 ** -23    # the resolution at which keys are compared (machine epsilon)
_UNIT64 = 2.0 ** -53        # float64 unit roundoff
_TINY = 1e-300              # keeps log finite for an all-zero map (all of them then agree)
_LOG_SLACK = 1e-13          # the log's own rounding and the t^2 term (distinct_mask)

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
    of X)``). Legacy mode's official sums, in the dtype of ``x``."""
    sums = F.sum(F.reshape(x, (0, 0, -1)), axis=-1, keepdims=True)          # (N, C, 1)
    if rel is not None:
        sums = F.batch_dot(rel, sums)
    return F.reshape(sums, (0, -1))


def _positions(F, x):
    """(H * W, 3) float weights of the flattened positions of ``x`` (N, C, H, W): 1, y + 1 and
    x + 1 (the keys of :func:`map_keys`), in the dtype of ``x``."""
    plane = F.slice_axis(F.slice_axis(x, axis=0, begin=0, end=1), axis=1, begin=0, end=1)
    plane = F.reshape(plane, (-3, -2))                                      # (1, H, W)
    ys = F.broadcast_like(F.reshape(F.contrib.arange_like(plane, axis=1), (1, -1, 1)), plane)
    xs = F.broadcast_like(F.reshape(F.contrib.arange_like(plane, axis=2), (1, 1, -1)), plane)
    ones = F.ones_like(plane)
    return F.transpose(F.reshape(F.concat(ones, ys + 1, xs + 1, dim=0), (3, -1)))


def map_keys(F, x, rel=None):
    """(N, C, 3) keys of the maps ``rel @ X`` (``rel`` None: of the maps ``x`` itself): per map
    its mass and its moments along y and x, ``sum_p M_p``, ``sum_p (y_p + 1) M_p`` and
    ``sum_p (x_p + 1) M_p``, in the dtype of ``x`` (float64 in the default mode)."""
    keys = F.dot(F.reshape(x, (0, 0, -1)), _positions(F, x))              # (N, C, 3)
    return keys if rel is None else F.batch_dot(rel, keys)


def key_error_bound(F, x, attention=None):
    """(N, 1, 1): E, the bound of the relative float64 rounding error of the keys of every
    channel of each image (module docstring), for features ``x`` (N, C, h, w) >= 0 and the
    TrilinearAttention ``attention``; without one (the maps given themselves) the error of
    their sums, (n + 2) u. For the ablation variants without the spatial softmax, R is bounded
    by n Xmax^2 instead."""
    flat = F.reshape(x, (0, 0, -1))                                         # (N, C, n)
    n = F.sum(F.ones_like(F.slice_axis(flat, axis=1, begin=0, end=1)), axis=(1, 2),
              keepdims=True)                                                # (N, 1, 1)
    if attention is None or attention.variant == 'identity':
        return F.cast((n + 2) * _UNIT64, dtype=KEY_DTYPE)
    c = F.sum(F.ones_like(F.slice_axis(flat, axis=2, begin=0, end=1)), axis=(1, 2),
              keepdims=True)
    xmax = F.reshape(F.max(F.reshape(flat, (0, -1)), axis=-1), (-1, 1, 1))
    rmax = 1.001 * xmax if attention.bounded_relation else n * F.square(xmax)
    return F.cast(2 * rmax * (n + 2) + 2 * c + 3, dtype=KEY_DTYPE) * _UNIT64


def _index_pairs(F, t, compare):
    """(C, C) constant ``compare(i, j)`` over the indices of axis 1 of ``t``, e.g.
    F.broadcast_lesser."""
    idx = F.contrib.arange_like(t, axis=1)                                  # (C,)
    return compare(F.reshape(idx, (-1, 1)), F.reshape(idx, (1, -1)))        # [i, j]


def _first_of_groups(F, same):
    """(N, C): 1 where no earlier channel is in ``same`` (N, C, C) with it, else 0."""
    later = _index_pairs(F, same, F.broadcast_greater)                      # [i, j] = i > j
    earlier_twins = F.sum(F.broadcast_mul(same, F.expand_dims(later, axis=0)), axis=-1)
    return earlier_twins == 0


def distinct_mask(F, keys, bound):
    """(N, C): 1 for the first channel of every group of maps whose ``keys`` (N, C, 3) agree
    to within ``FLOAT32_EPS + 2 bound`` relative in every key, ``bound`` (N, 1, 1) being
    :func:`key_error_bound` (the module docstring derives the rule). Compared as differences
    of logarithms: ``|log K - log K'| <= t`` is ``|K - K'| <= t max(K, K')`` to within t^2 / 2
    (1e-14 here), and log adds at most ~1e-14 of its own rounding: both far below eps32."""
    logs = F.log(keys + _TINY)
    gap = None                                  # the largest gap of the three keys, (N, C, C)
    for k in range(3):                          # one key at a time: (N, C, C) arrays are fast
        key = F.slice_axis(logs, axis=2, begin=k, end=k + 1)                # (N, C, 1)
        g = F.abs(F.broadcast_sub(key, F.transpose(key, axes=(0, 2, 1))))
        gap = g if gap is None else F.maximum(gap, g)
    tol = 2 * bound + (FLOAT32_EPS + _LOG_SLACK)
    return _first_of_groups(F, F.broadcast_lesser_equal(gap, tol))


def exact_distinct_mask(F, sums):
    """(N, C): 1 for the first channel of every group of channels with exactly equal ``sums``
    (legacy mode: the official comparison)."""
    return _first_of_groups(F, F.broadcast_equal(F.expand_dims(sums, axis=2),
                                                 F.expand_dims(sums, axis=1)))


def official_structure_mask(F, sums):
    """(N, C): the official ``Structure_Att`` weights (see the module docstring)."""
    ordered = F.sort(sums, axis=-1)
    changed = F.slice_axis(ordered, axis=1, begin=1, end=None) != \
        F.slice_axis(ordered, axis=1, begin=0, end=-1)
    return F.concat(F.ones_like(F.slice_axis(ordered, axis=1, begin=0, end=1)), changed, dim=1)


def map_groups(F, x, attention=None, official_mask=False, dtype='float32'):
    """Which maps are the same map, for features (or maps) ``x`` already in ``dtype``.

    Returns ``(rel, rel_dtype, first, structure)``: the relation the maps are combined with
    (:func:`combine_maps`; None: ``x`` holds the maps), its dtype when it is not ``dtype``,
    the first channel of every group (N, C) and the structure map's channel weights (N, C),
    both 0/1 in ``dtype``. Default mode: float64 keys at float32 resolution; legacy
    (``official_mask``): the float32 relation, exact equality of the sums and the official
    mask (module docstring).
    """
    if official_mask:
        rel = attention.relation(F, x) if attention is not None else None
        sums = channel_sums(F, x, rel)
        return rel, None, exact_distinct_mask(F, sums), official_structure_mask(F, sums)
    wide = F.cast(x, dtype=KEY_DTYPE)
    rel = attention.relation(F, x, wide=wide) if attention is not None else None
    keys = map_keys(F, wide, rel)
    first = F.cast(distinct_mask(F, keys, key_error_bound(F, x, attention)), dtype=dtype)
    return rel, (KEY_DTYPE if rel is not None else None), first, first


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


def sampler_inputs(F, x, input_size, attention=None, official_mask=False, channel=None,
                   dtype='float32'):
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
        Legacy mode: the official structure-map mask and exact equality of the float32 sums,
        instead of each distinct map once (:func:`map_groups`).
    channel : (N,) or None
        The detail map's channels, in either mode, instead of the mode's own choice (pictures).
    dtype : str
        The network's float type ('float32'; 'float64' for a network cast to it), that of the
        outputs.

    Returns
    -------
    ``(detail_y, detail_x, structure_y, structure_x, detail_map, structure_map, first)``:
    row (y) and column (x) profiles (N, input_size), the two upsampled maps (N, input_size,
    input_size), and the first channel of every group of equal maps (N, C), whose row sum is
    the number of distinct maps. No gradient flows back.
    """
    x = amp_float32(F, F.BlockGrad(x))                     # float32 under AMP (docstring)
    rel, rel_dtype, first, structure = map_groups(F, x, attention, official_mask, dtype)
    detail = detail_weights(F, first, channel=channel)
    weights = F.stack(detail, structure, axis=1)                           # (N, 2, C)
    small = combine_maps(F, x, weights, rel, rel_dtype, dtype)             # (N, 2, h, w)
    up = resize_bilinear(F, small, input_size)                             # (N, 2, S, S)
    dmap = F.slice_axis(up, axis=1, begin=0, end=1)
    smap = F.square(F.slice_axis(up, axis=1, begin=1, end=2))
    rows, cols = _profiles(F, F.concat(dmap, smap, dim=1), input_size)
    dy, sy = F.split(rows, num_outputs=2, axis=1, squeeze_axis=True)
    dx, sx = F.split(cols, num_outputs=2, axis=1, squeeze_axis=True)
    return dy, dx, sy, sx, F.reshape(dmap, (0, -3, 0)), F.reshape(smap, (0, -3, 0)), first


def structure_profiles(F, x, input_size, attention=None, official_mask=False, dtype='float32'):
    """Row and column profiles (N, input_size) of the structure map only (inference), as
    :func:`sampler_inputs` computes them."""
    x = amp_float32(F, F.BlockGrad(x))                     # float32 under AMP (docstring)
    rel, rel_dtype, _, structure = map_groups(F, x, attention, official_mask, dtype)
    small = combine_maps(F, x, F.expand_dims(structure, axis=1), rel, rel_dtype, dtype)
    row, col = _profiles(F, F.square(resize_bilinear(F, small, input_size)), input_size)
    return F.reshape(row, (0, -1)), F.reshape(col, (0, -1))


class MapsToProfiles(HybridBlock):
    """:func:`sampler_inputs` as a block (the random detail draw): ``MapsToProfiles(input_size,
    attention, official_mask)(x)``. Its float type follows ``cast`` (float32 by default)."""

    def __init__(self, input_size, attention=None, official_mask=False, **kwargs):
        super().__init__(**kwargs)
        self.input_size = int(input_size)
        self.attention = attention  # parameter-free; TASN's own block is shared here
        self.official_mask = bool(official_mask)
        self.dtype = 'float32'

    def cast(self, dtype):
        self.dtype = str(getattr(dtype, '__name__', dtype))
        super().cast(dtype)

    def hybrid_forward(self, F, x):
        return sampler_inputs(F, x, self.input_size, self.attention, self.official_mask,
                              dtype=self.dtype)

    def structure_profiles(self, F, x):
        """:func:`structure_profiles` with this block's settings (the predictor's path)."""
        return structure_profiles(F, x, self.input_size, self.attention, self.official_mask,
                                  self.dtype)
