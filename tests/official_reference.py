"""An independent reference of the official TASN graph at inference (``researchmm/tasn``).

Written from the official graph's description (TASN_SPEC.md sections 2-6) and from facts read
in the official ``example/tasn/model.py`` (``attention_net``, ``trilinear_att``, ``att_sample``,
``part_master_net``, the ``Structure_Att`` / ``Detail_Att`` custom ops) and
``src/operator/contrib/att_sampler-inl.h`` / ``att_sampler.cu`` (the AttSampler kernel). It uses
no tasn_gluon code path (no model, maps, attention or ops module), so that comparing the two is a
real check of the project's network against the official arithmetic:

* the attention net (ResNet-18, stage strides (1, 1, 2, 1), shared-weight multi-dilation head,
  its own classifier ``att_fc1``) and the ResNet-50 part/master backbone are MXNet Symbols built
  here with the official parameter names (``att_stage1_unit1_conv1_weight``, ``bn1_moving_var``,
  ``fullyconnected0_weight`` ...), bound to a Module checkpoint's ``arg:`` / ``aux:`` arrays and
  run in inference mode (BatchNorm on the moving statistics);
* the trilinear attention, the ``Structure_Att`` / ``Detail_Att`` operators, the marginals and
  the AttSampler kernel are NumPy, the sampler in the official float32 arithmetic;
* the heads: one backbone pass over concat(detail, structure), global average pooling,
  ``fullyconnected0`` on the detail half (part), ``fullyconnected1`` on the structure half
  (master), the shared ``fullyconnected2`` on both (part_aux, master_aux).

Two switches select the arithmetic of the two points where the official code has a defect:

``structure_mask``
    ``'official'``: the official ``Structure_Att``: per image, ``a_c`` = spatial sum of map c,
    ``idx = argsort(a)``, ``keep_sorted = [1] + (a[idx][1:] != a[idx][:-1])``, and map c is
    weighted by ``keep_sorted[c]`` (a mask meant for the sorted order, applied in channel order).
    ``'none'``: the plain sum of all maps. ``'distinct'``: the intent, every tie group once.
``c_minus_one``
    ``'batch'``: the official kernel's C[-1]: its cumulative tables of one call lie in one
    buffer, so image b >= 1 reads image b-1's last entry of the same axis, image 0 reads 0.
    ``'zero'``: C[-1] = 0 for every image.

``dtype`` (float32, the official arithmetic; or float64) is the float type of every step:
networks, attention, masks and sampler. The attention maps are computed once per distinct
channel of X (``trilinear_attention``): channels that are equal (zero everywhere) share one map,
so their sums are equal by construction and the official mask of the reference does not hang
on how a BLAS rounds rows that are equal in exact arithmetic.
"""
import numpy as np
import mxnet as mx

__all__ = ['BN_EPS', 'INPUT_SIZE', 'ATT_SIZE', 'NUM_MAPS', 'SCALE', 'DENSE', 'ITERS',
           'HEADS', 'STRUCTURE_MASKS', 'C_MINUS_ONE', 'attention_symbol', 'part_master_symbol',
           'trilinear_attention', 'map_sums', 'keep_sorted', 'structure_weights',
           'detail_candidates', 'draw_detail_channel', 'structure_map', 'detail_map',
           'detail_map_train', 'resize_align_corners', 'marginals', 'sampler_grid',
           'sample_bilinear_zero_pad', 'att_sampler', 'OfficialTASNReference']

BN_EPS = 2e-5
BN_MOMENTUM = 0.9
INPUT_SIZE = 512          # the image the sampler reads
ATT_SIZE = 224            # the attention net's input
NUM_MAPS = 512            # channels of X = attention maps
SOFTMAX_SCALE = 7.0       # official: softmax(X * 7) over HW
SCALE = 224.0 / 512       # official: AttSampler(scale=224.0/512, dense=4), iters default 5
DENSE = 4.0
ITERS = 5
HEADS = ('att', 'part', 'master', 'part_aux', 'master_aux')
STRUCTURE_MASKS = ('official', 'none', 'distinct')
C_MINUS_ONE = ('batch', 'zero')

_F32 = np.float32


# ------------------------------------------------------------------------- Symbol networks

def _bn(x, name, fix_gamma=False):
    # inference mode: the moving statistics (what Module.predict uses)
    return mx.sym.BatchNorm(x, fix_gamma=fix_gamma, eps=BN_EPS, momentum=BN_MOMENTUM,
                            use_global_stats=True, name=name)


def _relu(x):
    return mx.sym.Activation(x, act_type='relu')


def _conv(x, name, channels, kernel, stride, pad):
    return mx.sym.Convolution(x, num_filter=channels, kernel=(kernel, kernel),
                              stride=(stride, stride), pad=(pad, pad), no_bias=True, name=name)


def _preact_unit(x, name, channels, stride, dim_match, bottleneck):
    """Pre-activation residual unit: BN-ReLU-conv; the projection shortcut (dim_match False)
    reads the unit's first activation; a bottleneck has its stride on the 3x3 conv."""
    act1 = _relu(_bn(x, name + '_bn1'))
    if bottleneck:
        mid = channels // 4
        h = _conv(act1, name + '_conv1', mid, 1, 1, 0)
        h = _conv(_relu(_bn(h, name + '_bn2')), name + '_conv2', mid, 3, stride, 1)
        h = _conv(_relu(_bn(h, name + '_bn3')), name + '_conv3', channels, 1, 1, 0)
    else:
        h = _conv(act1, name + '_conv1', channels, 3, stride, 1)
        h = _conv(_relu(_bn(h, name + '_bn2')), name + '_conv2', channels, 3, 1, 1)
    shortcut = x if dim_match else _conv(act1, name + '_sc', channels, 1, stride, 0)
    return h + shortcut


def _preact_resnet_body(x, prefix, units, channels, strides, bottleneck):
    """bn_data (fixed gamma) - conv0 7x7/2 - bn0 - ReLU - max pool 3x3/2 - stages; the first
    unit of every stage projects."""
    x = _bn(x, prefix + 'bn_data', fix_gamma=True)
    x = _conv(x, prefix + 'conv0', channels[0], 7, 2, 3)
    x = _relu(_bn(x, prefix + 'bn0'))
    x = mx.sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='max')
    for s, (num, stride) in enumerate(zip(units, strides)):
        for u in range(num):
            x = _preact_unit(x, '%sstage%d_unit%d' % (prefix, s + 1, u + 1), channels[s + 1],
                             stride if u == 0 else 1, u > 0, bottleneck)
    return x


def _global_avg_pool(x):
    return mx.sym.flatten(mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg'))


def attention_symbol(num_classes):
    """The attention net on the 512 input: outputs (att_fc1 logits (N, K), X (N, 512, 28, 28)).

    Input resized to 224 (BilinearResize2D, align corners: the fork's only behaviour, MXNet
    1.9.1's default); ResNet-18 v2 body with stage strides (1, 1, 2, 1) and no final BN; X =
    a2 with a1 = relu(conv_d1(x)) + relu(conv_d2(x)) (weight att_conv1 shared) and a2 = the
    same with dilations 1, 2, 3 (weight att_conv2 shared); head att_bn1 - ReLU - GAP - att_fc1.
    """
    data = mx.sym.Variable('data')
    x = mx.sym.contrib.BilinearResize2D(data, height=ATT_SIZE, width=ATT_SIZE,
                                        align_corners=True)
    body = _preact_resnet_body(x, 'att_', (2, 2, 2, 2), (64, 64, 128, 256, 512), (1, 1, 2, 1),
                               bottleneck=False)

    def multi_dilation(inp, name, dilations):
        w, b = mx.sym.Variable(name + '_weight'), mx.sym.Variable(name + '_bias')
        return mx.sym.add_n(*[_relu(mx.sym.Convolution(inp, w, b, num_filter=NUM_MAPS,
                                                       kernel=(3, 3), pad=(d, d),
                                                       dilate=(d, d)))
                              for d in dilations])

    a1 = multi_dilation(body, 'att_conv1', (1, 2))
    a2 = multi_dilation(a1, 'att_conv2', (1, 2, 3))
    pooled = _global_avg_pool(_relu(_bn(a2, 'att_bn1')))
    logits = mx.sym.FullyConnected(pooled, num_hidden=num_classes, name='att_fc1')
    return mx.sym.Group([logits, a2])


def part_master_symbol(num_classes, n):
    """The ResNet-50 v2 backbone on concat(detail, structure) (2n, 3, S, S) and its heads:
    outputs (part, master, part_aux, master_aux), each (n, K)."""
    data = mx.sym.Variable('data')
    body = _preact_resnet_body(data, '', (3, 4, 6, 3), (64, 256, 512, 1024, 2048),
                               (1, 2, 2, 2), bottleneck=True)
    pooled = _global_avg_pool(_relu(_bn(body, 'bn1')))
    pool_d = mx.sym.slice_axis(pooled, axis=0, begin=0, end=n)
    pool_s = mx.sym.slice_axis(pooled, axis=0, begin=n, end=2 * n)
    part = mx.sym.FullyConnected(pool_d, num_hidden=num_classes, name='fullyconnected0')
    master = mx.sym.FullyConnected(pool_s, num_hidden=num_classes, name='fullyconnected1')
    shared = mx.sym.FullyConnected(pooled, num_hidden=num_classes, name='fullyconnected2')
    return mx.sym.Group([part, master, mx.sym.slice_axis(shared, axis=0, begin=0, end=n),
                         mx.sym.slice_axis(shared, axis=0, begin=n, end=2 * n)])


# ------------------------------------------------------------- trilinear attention, NumPy

def _softmax_last(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def trilinear_attention(x, dtype=_F32):
    """X (N, C, H, W) -> the C attention maps (N, C, H, W) in ``dtype``:
    N1 = softmax_HW(7 X); R = N1 X^T; N2 = row softmax of R; M = N2 X. Each distinct channel
    of X is computed once (equal channels give the same map); einsum, no BLAS."""
    x = np.asarray(x, dtype=dtype)
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        f = x[i].reshape(c, h * w)
        rows, inverse = np.unique(f, axis=0, return_inverse=True)
        n1 = _softmax_last(rows * dtype(SOFTMAX_SCALE))
        n2 = _softmax_last(np.einsum('ap,bp->ab', n1, f))
        out[i] = np.einsum('ab,bp->ap', n2, f)[inverse.reshape(-1)].reshape(c, h, w)
    return out


def map_sums(maps, dtype=_F32):
    """(N, C) spatial sums of the maps (the official ``mx.nd.sum`` over HW), in ``dtype``;
    equal maps have equal sums (each distinct map is summed once)."""
    maps = np.asarray(maps, dtype=dtype)
    out = np.empty(maps.shape[:2], dtype)
    for i, m in enumerate(maps.reshape(maps.shape[0], maps.shape[1], -1)):
        rows, inverse = np.unique(m, axis=0, return_inverse=True)
        out[i] = rows.sum(axis=-1, dtype=dtype)[inverse.reshape(-1)]
    return out


def keep_sorted(a):
    """The official ``[1] + (a[idx][1:] != a[idx][:-1])`` for one image's sums ``a`` (C,):
    True at the sorted positions that start a tie group. Depends on the sorted values only,
    not on how argsort orders ties."""
    s = np.sort(np.asarray(a))
    return np.concatenate(([True], s[1:] != s[:-1]))


def structure_weights(a, mode='official', dtype=_F32):
    """(C,) weights of the maps in the structure map, for one image's sums ``a``.

    ``'official'``: keep_sorted(a) applied in channel order (map c weighted by keep_sorted[c],
    the official defect); ``'none'``: all ones; ``'distinct'``: one map of each tie group."""
    a = np.asarray(a)
    if mode == 'official':
        return keep_sorted(a).astype(dtype)
    if mode == 'none':
        return np.ones(a.shape, dtype)
    if mode == 'distinct':
        w = np.zeros(a.shape, dtype)
        w[detail_candidates(a)] = 1.0
        return w
    raise ValueError('structure_mask must be one of %s, got %r' % (STRUCTURE_MASKS, mode))


def detail_candidates(a):
    """The channels the official training-mode ``Detail_Att`` draws from, for one image's
    sums ``a`` (C,): ``idx[keep_sorted]`` with ``idx = argsort(a)``, the first member (in
    argsort order) of every tie group. Members of a tie group have equal sums; in TASN they are
    the channels whose X is zero everywhere, whose maps are identical, so which member is
    drawn does not change the detail map."""
    a = np.asarray(a)
    return np.argsort(a)[keep_sorted(a)]


def draw_detail_channel(a, rng):
    """One channel drawn uniformly among ``detail_candidates(a)`` (the official shuffle and
    take-first), with ``rng`` a ``np.random.RandomState`` / ``Generator``."""
    cands = detail_candidates(a)
    return int(cands[rng.randint(len(cands)) if hasattr(rng, 'randint')
                     else rng.integers(len(cands))])


def resize_align_corners(small, size, dtype=_F32):
    """(N, h, w) -> (N, size, size) in ``dtype`` with MXNet's BilinearResize2D (align
    corners)."""
    nd = mx.nd.array(np.asarray(small, dtype=dtype)[:, None], dtype=dtype)
    return mx.nd.contrib.BilinearResize2D(nd, height=size, width=size,
                                          align_corners=True).asnumpy()[:, 0]


def _weighted_sum(maps, weights, dtype=_F32):
    """(N, C, h, w), (N, C) -> (N, h, w): sum_c weights[:, c] maps[:, c] (the official
    batch_dot of the weights with the maps), in ``dtype``."""
    n, c, h, w = maps.shape
    out = np.einsum('nc,ncp->np', weights.astype(dtype), maps.reshape(n, c, h * w))
    return out.reshape(n, h, w)


def structure_map(maps, sums=None, mode='official', size=INPUT_SIZE, dtype=_F32):
    """The official structure map (N, size, size): the maps weighted by structure_weights
    (per image), summed, resized to ``size``, squared."""
    maps = np.asarray(maps, dtype=dtype)
    sums = map_sums(maps, dtype) if sums is None else sums
    weights = np.stack([structure_weights(a, mode, dtype) for a in sums])
    up = resize_align_corners(_weighted_sum(maps, weights, dtype), size, dtype)
    return up * up


def detail_map(maps, size=INPUT_SIZE, dtype=_F32):
    """The official inference-mode detail map (N, size, size): the plain channel sum, resized,
    not squared."""
    maps = np.asarray(maps, dtype=dtype)
    return resize_align_corners(maps.sum(axis=1, dtype=dtype), size, dtype)


def detail_map_train(maps, channels, size=INPUT_SIZE, dtype=_F32):
    """The training-mode detail map for given channels (one per image, e.g. from
    ``draw_detail_channel``): that map, resized, not squared."""
    maps = np.asarray(maps, dtype=dtype)
    return resize_align_corners(maps[np.arange(len(maps)), np.asarray(channels)], size, dtype)


def marginals(amap):
    """(N, H, W) -> (row profile (N, H), column profile (N, W)) in the dtype of ``amap``:
    row = max over the columns, col = max over the rows, each divided by its sum. The row
    profile drives y (the official code calls it ``attx``)."""
    amap = np.asarray(amap)
    row, col = amap.max(axis=2), amap.max(axis=1)
    return (row / row.sum(axis=1, keepdims=True, dtype=amap.dtype),
            col / col.sum(axis=1, keepdims=True, dtype=amap.dtype))


# --------------------------------------------------- the official AttSampler kernel, NumPy

def _budget(m_a, m_b, out, threshold, iters, dtype=_F32):
    """Clip and give back, both axes together, in ``dtype`` (float32 as the kernel): the cap
    of round j is min(max m_a, max m_b) (each max starting from 0), round 0 also capped at
    ``threshold``; after capping each axis gets (out - sum) / L added to every bin."""
    m_a, m_b = m_a.copy(), m_b.copy()
    out_f = dtype(out)
    for j in range(iters):
        cap = min(max(dtype(0), m_a.max()), max(dtype(0), m_b.max()))
        if j == 0:
            cap = min(threshold, cap)
        # the kernel's sum is a BLAS gemm with a ones vector: float32, order unspecified
        m_a = np.where(m_a > cap, cap, m_a).astype(dtype)
        m_b = np.where(m_b > cap, cap, m_b).astype(dtype)
        m_a = (m_a + (out_f - m_a.sum(dtype=dtype)) / dtype(m_a.size)).astype(dtype)
        m_b = (m_b + (out_f - m_b.sum(dtype=dtype)) / dtype(m_b.size)).astype(dtype)
    return m_a, m_b


def _legacy_table(m, dtype=_F32):
    """C[0] = 1, C[i] = C[i-1] + m[i] (sequential, in ``dtype``)."""
    return np.cumsum(np.concatenate(([dtype(1)], m[1:])).astype(dtype), dtype=dtype)


def _inverse_cdf(table, c_prev, out, dtype=_F32):
    """The kernel's loop: for output pixel i, the smallest j (scanning on from the previous
    one) with C[j] >= i * step, then p = j + (i*step - C[j]) / (C[j] - C[j-1]) with C[-1] =
    ``c_prev``; returns g = p * 2 / (L - 1) - 1 (in ``dtype``)."""
    length = table.size
    step = table[length - 1] / dtype(out)
    myscale = dtype(2.0 / (length - 1))
    g = np.empty(out, dtype)
    i = j = 0
    while i < out:
        t = dtype(i) * step
        if table[j] >= t:
            prev = table[j - 1] if j > 0 else c_prev
            p = dtype(j) + (t - table[j]) / (table[j] - prev)
            g[i] = p * myscale - dtype(1)
            i += 1
        else:
            j += 1
            if j >= length:
                raise AssertionError('inverse CDF ran past the table')
    return g


def sampler_grid(row_profile, col_profile, in_h, in_w, scale=SCALE, dense=DENSE, iters=ITERS,
                 c_minus_one='batch', dtype=_F32):
    """The official AttSampler's grid for one operator call, in ``dtype`` (float32: the
    kernel's arithmetic).

    Parameters
    ----------
    row_profile, col_profile : (N, L)
        The row profile (drives y; the official ``attx``) and the column profile (drives x).
    in_h, in_w : int
        The image's size (the kernel takes ``in_size`` = H for the cap of both axes).
    c_minus_one : 'batch' or 'zero'
        C[-1] of image b: 'batch': image b-1's last table entry of the same axis, 0 for image 0
        (the kernel's one buffer); 'zero': 0 for every image.

    Returns
    -------
    (ys, xs): image coordinates (N, out_h), (N, out_w), as the CUDA forward kernel computes
    them: ``(g + 1) * (size - 1) / 2``.
    """
    if c_minus_one not in C_MINUS_ONE:
        raise ValueError('c_minus_one must be one of %s, got %r' % (C_MINUS_ONE, c_minus_one))
    row_profile = np.asarray(row_profile, dtype=dtype).reshape(len(row_profile), -1)
    col_profile = np.asarray(col_profile, dtype=dtype).reshape(len(col_profile), -1)
    n, length = row_profile.shape
    if col_profile.shape != (n, length):
        raise ValueError('the kernel takes both profiles of one length')
    scale_f = np.float32(scale)      # the operator's attribute is a float32
    out = int(np.float32(in_h) * scale_f)  # int out_size = in_size * param_.scale
    threshold = dtype(scale_f) * dtype(dense) * dtype(in_h) / dtype(length)
    ys, xs = np.empty((n, out), dtype), np.empty((n, out), dtype)
    prev_tables = None
    for b in range(n):
        m_row, m_col = _budget(row_profile[b] * dtype(out), col_profile[b] * dtype(out), out,
                               threshold, iters, dtype)
        tables = (_legacy_table(m_row, dtype), _legacy_table(m_col, dtype))
        if c_minus_one == 'batch' and prev_tables is not None:
            c_prev = (prev_tables[0][-1], prev_tables[1][-1])
        else:
            c_prev = (dtype(0), dtype(0))
        g_y = _inverse_cdf(tables[0], c_prev[0], out, dtype)
        g_x = _inverse_cdf(tables[1], c_prev[1], out, dtype)
        ys[b] = (g_y + dtype(1)) * dtype(in_h - 1) / dtype(2)
        xs[b] = (g_x + dtype(1)) * dtype(in_w - 1) / dtype(2)
        prev_tables = tables
    return ys, xs


def _tap_matrix(coords, size):
    """(out,) coordinates -> (out, size) bilinear weights with zero padding: taps floor(c)
    (weight 1 - frac) and floor(c) + 1 (weight frac), a tap outside [0, size - 1] reads 0.
    The fraction in the dtype of ``coords`` (float32: the kernel's)."""
    coords = np.asarray(coords)
    one = coords.dtype.type(1)
    base = np.floor(coords).astype(np.int64)
    w0 = (one - (coords - base.astype(coords.dtype))).astype(np.float64)
    mat = np.zeros((coords.size, size))
    rows = np.arange(coords.size)
    for idx, wt in ((base, w0), (base + 1, 1.0 - w0)):
        inside = (idx >= 0) & (idx <= size - 1)
        np.add.at(mat, (rows[inside], idx[inside]), wt[inside])
    return mat


def sample_bilinear_zero_pad(data, ys, xs, dtype=_F32):
    """The CUDA forward kernel's sampling: out[n, c, h, w] = bilinear at (ys[n, h], xs[n, w])
    with zero padding; separable (per-row and per-column weights). float64 inside (einsum, no
    BLAS), ``dtype`` out."""
    data = np.asarray(data, dtype=np.float64)
    n, c, h, w = data.shape
    out = np.empty((n, c, ys.shape[1], xs.shape[1]), dtype)
    for b in range(n):
        wy, wx = _tap_matrix(ys[b], h), _tap_matrix(xs[b], w)
        out[b] = np.einsum('kw,cjw->cjk', wx, np.einsum('jh,chw->cjw', wy, data[b]))
    return out


def att_sampler(data, row_profile, col_profile, scale=SCALE, dense=DENSE, iters=ITERS,
                c_minus_one='batch', dtype=_F32):
    """One official AttSampler call: (sampled (N, C, out, out), (ys, xs)), in ``dtype``."""
    data = np.asarray(data, dtype=dtype)
    ys, xs = sampler_grid(row_profile, col_profile, data.shape[2], data.shape[3], scale, dense,
                          iters, c_minus_one, dtype)
    return sample_bilinear_zero_pad(data, ys, xs, dtype), (ys, xs)


# ------------------------------------------------------------------------------ the graph

class OfficialTASNReference:
    """The official TASN graph at inference on an official-format Module checkpoint.

    Parameters
    ----------
    params_path : str
        ``mx.nd.save`` file of ``arg:NAME`` / ``aux:NAME`` arrays (official names).
    num_classes : int or None
        None: from ``fullyconnected2_weight``.
    """

    def __init__(self, params_path, num_classes=None):
        loaded = mx.nd.load(str(params_path))
        self.arg = {k[4:]: v for k, v in loaded.items() if k.startswith('arg:')}
        self.aux = {k[4:]: v for k, v in loaded.items() if k.startswith('aux:')}
        if len(self.arg) + len(self.aux) != len(loaded):
            raise ValueError('%s holds names without arg:/aux:' % params_path)
        self.num_classes = int(num_classes or self.arg['fullyconnected2_weight'].shape[0])
        self.att_symbol = attention_symbol(self.num_classes)

    def symbols(self, n):
        """The two Symbols of the graph for a batch of n images."""
        return self.att_symbol, part_master_symbol(self.num_classes, n)

    def used_names(self, n=1):
        """{'arg:NAME', 'aux:NAME'} of every parameter and state the two Symbols read."""
        names = set()
        for sym in self.symbols(n):
            names |= {'arg:' + a for a in sym.list_arguments() if a != 'data'}
            names |= {'aux:' + a for a in sym.list_auxiliary_states()}
        return names

    def _run(self, sym, data, dtype=_F32):
        args = {a: self.arg[a].astype(dtype) for a in sym.list_arguments() if a != 'data'}
        args['data'] = mx.nd.array(data, dtype=dtype)
        aux = {a: self.aux[a].astype(dtype) for a in sym.list_auxiliary_states()}
        exe = sym.bind(mx.cpu(), args=args, aux_states=aux, grad_req='null')
        return [o.asnumpy() for o in exe.forward(is_train=False)]

    def attention(self, images, dtype=_F32):
        """The attention net and maps of (N, 3, 512, 512) images, in ``dtype``: dict ``att``
        (N, K), ``features`` X, ``maps`` M (N, 512, 28, 28), ``sums`` (N, 512)."""
        att, feats = self._run(self.att_symbol, images, dtype)
        maps = trilinear_attention(feats, dtype)
        return dict(att=att, features=feats, maps=maps, sums=map_sums(maps, dtype))

    def heads(self, images, attention, structure_mask='official', c_minus_one='batch'):
        """The five logits (and the intermediate results) from ``attention(images)``, in its
        dtype."""
        dtype = attention['maps'].dtype.type
        images = np.asarray(images, dtype=dtype)
        n = images.shape[0]
        smap = structure_map(attention['maps'], attention['sums'], structure_mask, dtype=dtype)
        dmap = detail_map(attention['maps'], dtype=dtype)
        s_row, s_col = marginals(smap)
        d_row, d_col = marginals(dmap)
        structure, s_grid = att_sampler(images, s_row, s_col, c_minus_one=c_minus_one,
                                        dtype=dtype)
        detail, d_grid = att_sampler(images, d_row, d_col, c_minus_one=c_minus_one,
                                     dtype=dtype)
        _, pm_symbol = self.symbols(n)
        part, master, part_aux, master_aux = self._run(
            pm_symbol, np.concatenate([detail, structure], axis=0), dtype)
        return dict(att=attention['att'], part=part, master=master, part_aux=part_aux,
                    master_aux=master_aux, structure_map=smap, detail_map=dmap,
                    structure_profiles=(s_row, s_col), detail_profiles=(d_row, d_col),
                    structure_image=structure, detail_image=detail,
                    structure_grid=s_grid, detail_grid=d_grid)

    def forward(self, images, structure_mask='official', c_minus_one='batch', dtype=_F32):
        """The five logits ``{head: (N, K)}`` of the official graph (default switches)."""
        out = self.heads(images, self.attention(images, dtype), structure_mask, c_minus_one)
        return {h: out[h] for h in HEADS}
