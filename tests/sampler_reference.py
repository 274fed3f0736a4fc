"""A NumPy reference of the attention sampler, written from the spec (TASN_SPEC.md, section 5)
and kept deliberately different in form from the C++ kernels: the inverse CDF by np.interp /
np.searchsorted, the legacy tables of a batch as one flat buffer read at C[j - 1] (the official
kernel's layout), the sampling as dense interpolation matrices."""
import numpy as np


def budget(profile, out):
    p = np.asarray(profile, dtype=np.float64).reshape(-1)
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = p.sum()
    if total > 0:
        return p / total * out
    return np.full(p.shape, out / p.size)


def clip_and_give_back(m_y, m_x, out_h, out_w, t0_y, t0_x, iters):
    m_y, m_x = m_y.copy(), m_x.copy()
    for j in range(iters):
        t = min(m_y.max(), m_x.max())
        t_y = min(t0_y, t) if j == 0 else t
        t_x = min(t0_x, t) if j == 0 else t
        m_y = np.minimum(m_y, t_y)
        m_y += (out_h - m_y.sum()) / m_y.size
        m_x = np.minimum(m_x, t_x)
        m_x += (out_w - m_x.sum()) / m_x.size
    return m_y, m_x


def clean_coordinates(m, out, size):
    """Bin i spreads its mass evenly over [i - 0.5, i + 0.5]: F is piecewise linear through
    (i - 0.5, cum[i])."""
    length = m.size
    cum = np.concatenate([[0.0], np.cumsum(m)])
    targets = (np.arange(out) + 0.5) * cum[-1] / out
    p = np.interp(targets, cum, np.arange(length + 1) - 0.5)
    return (p + 0.5) * size / length - 0.5


def legacy_tables(budgets):
    """The official kernel's table buffer of one axis for a whole batch: image b's table
    C_b[0..L-1] (C[0] = 1, C[i] = C[i-1] + m[i]) at [1 + b*L, 1 + (b+1)*L), after one leading 0:
    what image 0 reads before the buffer, taken as 0."""
    return np.concatenate([[0.0]] + [np.concatenate([[1.0], 1.0 + np.cumsum(m[1:])])
                                     for m in budgets])


def legacy_coordinates(buffer, b, length, out, size):
    """Image b's coordinates from the batch's table buffer (legacy_tables). C[j - 1] is read
    from the buffer for every j, so at j = 0 image b >= 1 reads image b-1's last entry, as the
    official kernel does; when that equals C[0] (the official division by zero), 0."""
    start = 1 + b * length
    c = buffer[start:start + length]
    step = c[-1] / out
    coords = np.empty(out)
    for k in range(out):
        target = k * step
        j = min(int(np.searchsorted(c, target, side='left')), length - 1)
        prev = buffer[start + j - 1]
        if j == 0 and prev == c[0]:
            prev = 0.0
        p = j + (target - c[j]) / (c[j] - prev)
        g = p * 2 / (length - 1) - 1
        coords[k] = (g + 1) * (size - 1) / 2
    return coords


def budgets(att_y, att_x, in_h, in_w, scale, dense=4.0, iters=5):
    """[(m_y, m_x)] per image: the budgets after clip and give back."""
    att_y = np.asarray(att_y, dtype=np.float64).reshape(len(att_y), -1)
    att_x = np.asarray(att_x, dtype=np.float64).reshape(len(att_x), -1)
    out_h, out_w = int(in_h * scale), int(in_w * scale)
    return [clip_and_give_back(budget(py, out_h), budget(px, out_w), out_h, out_w,
                               scale * dense * in_h / py.size, scale * dense * in_w / px.size,
                               iters) for py, px in zip(att_y, att_x)]


def grid(att_y, att_x, in_h, in_w, scale, dense=4.0, iters=5, legacy=False):
    """(ys, xs): (N, out_h) and (N, out_w) input-pixel coordinates; the N images are one
    operator call (legacy mode reads across its images)."""
    att_y = np.asarray(att_y, dtype=np.float64).reshape(len(att_y), -1)
    att_x = np.asarray(att_x, dtype=np.float64).reshape(len(att_x), -1)
    out_h, out_w = int(in_h * scale), int(in_w * scale)
    per_image = budgets(att_y, att_x, in_h, in_w, scale, dense, iters)
    if not legacy:
        return (np.array([clean_coordinates(m_y, out_h, in_h) for m_y, _ in per_image]),
                np.array([clean_coordinates(m_x, out_w, in_w) for _, m_x in per_image]))
    ty = legacy_tables([m_y for m_y, _ in per_image])
    tx = legacy_tables([m_x for _, m_x in per_image])
    n = len(per_image)
    return (np.array([legacy_coordinates(ty, b, att_y.shape[1], out_h, in_h) for b in range(n)]),
            np.array([legacy_coordinates(tx, b, att_x.shape[1], out_w, in_w) for b in range(n)]))


def interpolation_matrix(coords, size, legacy):
    """W (len(coords), size): row k holds the bilinear weights of coordinate k."""
    w = np.zeros((len(coords), size))
    for k, c in enumerate(coords):
        if not legacy:
            c = min(max(c, 0.0), size - 1.0)
        f = int(np.floor(c))
        frac = c - f
        for idx, weight in ((f, 1 - frac), (f + 1, frac)):
            if 0 <= idx < size:
                w[k, idx] += weight
            elif not legacy:  # only reachable with weight 0 at the last pixel
                assert weight == 0
    return w


def sample(data, att_y, att_x, scale, dense=4.0, iters=5, legacy=False):
    data = np.asarray(data, dtype=np.float64)
    n, c, h, w = data.shape
    ys, xs = grid(att_y, att_x, h, w, scale, dense, iters, legacy)
    out = []
    for i in range(n):
        wy = interpolation_matrix(ys[i], h, legacy)
        wx = interpolation_matrix(xs[i], w, legacy)
        out.append(np.einsum('ih,chw,jw->cij', wy, data[i], wx))
    return np.array(out)


def sample_backward(grad_out, shape, att_y, att_x, scale, dense=4.0, iters=5, legacy=False):
    n, c, h, w = shape
    ys, xs = grid(att_y, att_x, h, w, scale, dense, iters, legacy)
    grads = []
    for i in range(n):
        wy = interpolation_matrix(ys[i], h, legacy)
        wx = interpolation_matrix(xs[i], w, legacy)
        grads.append(np.einsum('ih,cij,jw->chw', wy, np.asarray(grad_out[i], np.float64), wx))
    return np.array(grads)
