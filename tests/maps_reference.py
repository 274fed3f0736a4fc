"""NumPy references of the trilinear attention and of the maps -> profiles stage, written from
TASN_SPEC.md sections 3-4 (no tasn_gluon code)."""
import numpy as np

__all__ = ['softmax', 'trilinear_np', 'resize_np', 'keys_np', 'unit_roundoff']


def unit_roundoff(dtype):
    """u = eps / 2 of a float type (2^-24 for float32, 2^-53 for float64)."""
    return float(np.finfo(dtype).eps) / 2


def softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def trilinear_np(x, variant='full', scale=7.0):
    """M = softmax_rows(softmax_hw(s X) X^T) X per image, and the ablations, in the dtype of
    ``x`` (np.longdouble too: einsum, no BLAS)."""
    if variant == 'identity':
        return x.copy()
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        X = x[i].reshape(c, h * w)
        left = softmax(scale * X, axis=1) if variant in ('full', 'spatial') else X
        R = np.einsum('ap,bp->ab', left, X)
        if variant in ('full', 'relation'):
            R = softmax(R, axis=1)
        out[i] = np.einsum('ab,bp->ap', R, X).reshape(c, h, w)
    return out


def keys_np(maps):
    """(N, C, 3) keys of maps (N, C, H, W): mass, sum (y + 1) M, sum (x + 1) M."""
    h, w = maps.shape[-2:]
    ys = np.arange(1, h + 1, dtype=maps.dtype)[:, None]
    xs = np.arange(1, w + 1, dtype=maps.dtype)[None, :]
    return np.stack([maps.sum(axis=(2, 3)), (maps * ys).sum(axis=(2, 3)),
                     (maps * xs).sum(axis=(2, 3))], axis=-1)


def resize_np(a, size):
    """Align-corners bilinear resize of (..., H, W) to (..., size, size)."""
    h, w = a.shape[-2:]

    def table(n_in):
        pos = np.arange(size) * ((n_in - 1) / (size - 1) if size > 1 else 0.0)
        lo = np.clip(np.floor(pos).astype(int), 0, n_in - 1)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, pos - lo

    ylo, yhi, fy = table(h)
    xlo, xhi, fx = table(w)
    rows = a[..., ylo, :] * (1 - fy)[:, None] + a[..., yhi, :] * fy[:, None]
    return rows[..., xlo] * (1 - fx) + rows[..., xhi] * fx
