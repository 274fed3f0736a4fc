"""Colour augmentation on the device against MXNet 1.9.1's ImageRecordIter.

Three links, each tested bit for bit on 8-bit values:

1. an independent NumPy transcription of the colour steps of ``DefaultImageAugmenter::Process``
   (src/io/image_aug_default.cc, tag 1.9.1), whose OpenCV primitives are checked against
   opencv-python;
2. that transcription against ImageRecordIter itself: with ``seed_aug`` the iterator reseeds
   its std::mt19937 for each record with ``idx + seed_aug + 111`` (idx = the record's place in
   its batch, src/io/iter_image_recordio_2.cc), so a transcription of the draws (the
   libstdc++ 4.8 distributions the 1.9.1 wheel was built with) gives every factor, the shuffled
   order and the lighting alphas of every image;
3. ``BatchColorJitter.apply`` against the transcription on random images, factors and orders
   (per image), and end to end: the iterator without colour steps, then the device path with
   the iterator's own draws, gives the iterator's float32 output exactly.
"""
import ctypes
import ctypes.util
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.data import MEAN_RGB, get_train_iter, prepare_dataset
from tasn_gluon.data.color import BatchColorJitter, ColorDraws

F32 = np.float32
MEAN = np.array(MEAN_RGB, F32).reshape(1, 3, 1, 1)
NO_GEOMETRY = dict(rand_crop=False, rand_mirror=False, max_rotate_angle=0, shuffle=False)
NO_COLOUR = dict(brightness=0, contrast=0, saturation=0, pca_noise=0)


# ---- 1. NumPy transcription of the colour steps (one H x W x 3 BGR uint8 image) -------------

def ref_grey(bgr):
    """cvtColor(res, temp_, CV_RGB2GRAY) on BGR data: OpenCV's 8-bit fixed point (yuv_shift 14,
    R2Y 4899, G2Y 9617, B2Y 1868) on the channels in memory order, rounded by adding 2^13."""
    c = bgr.astype(np.int64)
    return ((c[..., 0] * 4899 + c[..., 1] * 9617 + c[..., 2] * 1868 + 8192) >> 14).astype(np.uint8)


def ref_saturate(v):
    """saturate_cast<uchar>(float): cvRound (round half to even), then clamp to 0..255."""
    return np.clip(np.rint(np.asarray(v, F32)), 0, 255).astype(np.uint8)


def ref_step(res, step, a):
    """One colour step on uint8 BGR ``res`` with float32 factor ``a``."""
    a = F32(a)
    p = res.astype(F32)
    if step == 0:                                  # res.convertTo(res, -1, alpha_b, 0)
        return ref_saturate(p * a + F32(0))
    grey = ref_grey(res)
    if step == 1:                                  # convertTo(res, -1, alpha_c, (1 - alpha_c) * m)
        mean = F32(np.float64(grey.sum(dtype=np.int64)) * (1.0 / grey.size))   # cv::mean
        beta = F32(F32(1) - a) * mean
        return ref_saturate(p * a + beta)
    # addWeighted(res, alpha_s, grey3, 1 - alpha_s, 0.0, res): t = s1 * a + s2 * b + gamma
    g3 = np.repeat(grey[..., None], 3, axis=2).astype(F32)
    return ref_saturate((p * a + g3 * F32(F32(1) - a)) + F32(0))


def ref_lighting(res, alphas_rgb):
    """PCA noise: pca_r/g/b from the float32 products eigval * eigvec, summed left to right;
    pca[3] = {pca_b, pca_g, pca_r} on BGR; ``int vp = pixel; vp += pca[k];`` truncates."""
    eig = [[F32(55.46) * F32(-0.5675), F32(4.794) * F32(0.7192), F32(1.148) * F32(0.4009)],
           [F32(55.46) * F32(-0.5808), F32(4.794) * F32(-0.0045), F32(1.148) * F32(-0.8140)],
           [F32(55.46) * F32(-0.5836), F32(4.794) * F32(-0.6948), F32(1.148) * F32(0.4203)]]
    ar, ag, ab = (F32(v) for v in alphas_rgb)
    pca_r, pca_g, pca_b = ((e[0] * ar + e[1] * ag) + e[2] * ab for e in eig)
    out = res.copy()
    for k, off in enumerate((pca_b, pca_g, pca_r)):
        v = np.trunc(res[..., k].astype(F32) + F32(off))
        out[..., k] = np.clip(v, 0, 255).astype(np.uint8)
    return out


def ref_color(bgr, factors, order, alphas_rgb=None):
    """The whole colour part of Process(): the three steps in ``order`` (0 brightness,
    1 contrast, 2 saturation), then lighting when ``alphas_rgb`` is given."""
    res = bgr
    for step in order:
        res = ref_step(res, step, factors[step])
    if alphas_rgb is not None:
        res = ref_lighting(res, alphas_rgb)
    return res


# ---- transcription of the iterator's random draws ----------------------------------------------

class MT19937(object):
    """std::mt19937 (32-bit Mersenne twister, seed() by init_genrand)."""

    def __init__(self, seed):
        mt = [seed & 0xffffffff]
        for i in range(1, 624):
            mt.append((1812433253 * (mt[-1] ^ (mt[-1] >> 30)) + i) & 0xffffffff)
        self.mt, self.i = mt, 624

    def __call__(self):
        if self.i == 624:
            mt = self.mt
            for k in range(624):
                y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff)
                mt[k] = mt[(k + 397) % 624] ^ (y >> 1) ^ (0x9908b0df if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9d2c5680
        y ^= (y << 15) & 0xefc60000
        return y ^ (y >> 18)


def canonical_float(g):
    """generate_canonical<float, 24>: one 32-bit draw, float(u) / 2^32 in float."""
    return F32(g()) / F32(4294967296.0)


def uniform_float(g, a, b):
    """uniform_real_distribution<float>(a, b): canonical * (b - a) + a in float."""
    a, b = F32(a), F32(b)
    return canonical_float(g) * (b - a) + a


def uniform_int(g, hi):
    """uniform_int_distribution<unsigned long>(0, hi), libstdc++ 4.8 (downscaling with
    rejection)."""
    scaling = 0xffffffff // (hi + 1)
    while True:
        u = g()
        if u < (hi + 1) * scaling:
            return u // scaling


def shuffle3(g):
    """std::shuffle of {0, 1, 2} (libstdc++ 4.8: swap a[i] with a[U(0, i)] for i = 1, 2)."""
    order = [0, 1, 2]
    for i in (1, 2):
        j = uniform_int(g, i)
        order[i], order[j] = order[j], order[i]
    return order


_LIBM = ctypes.CDLL(ctypes.util.find_library('m') or 'libm.so.6')
_LIBM.logf.restype, _LIBM.logf.argtypes = ctypes.c_float, [ctypes.c_float]


class NormalFloat(object):
    """normal_distribution<float>: Marsaglia's polar method, the second value kept for the next
    call; logf is the C library's (the one libmxnet.so calls)."""

    def __init__(self, std):
        self.std, self.saved = F32(std), None

    def __call__(self, g):
        if self.saved is not None:
            value, self.saved = self.saved, None
        else:
            while True:
                x = F32(np.float64(F32(2) * canonical_float(g)) - 1.0)
                y = F32(np.float64(F32(2) * canonical_float(g)) - 1.0)
                r2 = x * x + y * y
                if not (r2 > 1.0 or r2 == 0.0):
                    break
            mult = np.sqrt(F32(-2) * F32(_LIBM.logf(float(r2))) / r2)
            self.saved, value = x * mult, y * mult
        return value * self.std + F32(0)


def iterator_draws(seed, brightness, contrast, saturation, pca_noise):
    """(factors (b, c, s), order, lighting alphas (r, g, b) or None) that the iterator draws
    for a record whose generator was seeded with ``seed``, no geometric augmentation."""
    g = MT19937(seed)
    factors, order = np.ones(3, F32), [0, 1, 2]
    if brightness > 0 or contrast > 0 or saturation > 0:
        # float alpha = 1.0 + uniform_real_distribution<float>(-v, v)(*prnd): in double
        factors = np.array([F32(1.0 + np.float64(uniform_float(g, -v, v)))
                            for v in (brightness, contrast, saturation)], F32)
        order = shuffle3(g)
    alphas = None
    if pca_noise > 0:
        normal = NormalFloat(pca_noise)
        alphas = [normal(g) for _ in range(3)]
    return factors, order, alphas


# ---- helpers ----------------------------------------------------------------------------------

def random_images(rng, n, h, w):
    """Smooth colour fields with noise, saturated bands and flat images: every code path
    (clamping at 0 and 255, grey pixels, strong colours)."""
    out = []
    for i in range(n):
        smooth = cv2.resize(rng.randint(0, 256, (3, 3, 3)).astype(F32), (w, h))
        img = smooth * rng.uniform(0.2, 1.6) + rng.normal(0, rng.uniform(0, 50), (h, w, 3))
        if i % 5 == 1:
            img[: h // 3] = 255
        if i % 7 == 2:
            img[-h // 3:] = 0
        if i % 11 == 3:
            img[:] = rng.randint(0, 256)
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


# The device path runs on every context there is (a GPU where MXNet was built with CUDA).
CONTEXTS = [mx.cpu()] + [mx.gpu(i) for i in range(mx.context.num_gpus())]


def to_batch(bgr_images, ctx=None):
    """uint8 BGR images -> the iterator's float32 RGB (B, 3, H, W) minus the mean."""
    x = np.stack([im[..., ::-1].transpose(2, 0, 1) for im in bgr_images]).astype(F32)
    return mx.nd.array(x - MEAN, ctx=ctx or mx.cpu(), dtype=F32)


def to_bgr(batch):
    """The inverse of to_batch (exact: the values are 8-bit integers minus the mean)."""
    u = batch + MEAN
    assert np.abs(u - np.rint(u)).max() < 1e-3
    return [im.transpose(1, 2, 0)[..., ::-1] for im in np.rint(u).astype(np.uint8)]


def jitter(**amounts):
    opts = dict(NO_COLOUR)
    opts.update(amounts)
    return BatchColorJitter(MEAN_RGB, seed=0, **opts)


# ---- 1. the transcription's OpenCV primitives ----------------------------------------------

def test_reference_grey_is_opencv_3_4_fixed_point():
    """The wheel's OpenCV is 3.4.2 (its build information is in libmxnet.so): 14-bit
    coefficients. OpenCV 4 (opencv-python) uses 15-bit ones (9798, 19235, 3735) and differs by
    one grey level on some pixels, so it cannot stand in for the iterator here; the iterator
    tests below are the check."""
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (64, 64, 3)).astype(np.uint8)
    c = img.astype(np.float64)
    exact = c[..., 0] * 0.299 + c[..., 1] * 0.587 + c[..., 2] * 0.114
    assert np.abs(ref_grey(img) - exact).max() <= 0.5 + 255 * 2 ** -14
    # It is not the grey of the picture: B, not R, gets the weight 0.299.
    blue = np.zeros((1, 1, 3), np.uint8)
    blue[..., 0] = 255
    red = blue[..., ::-1].copy()
    assert (ref_grey(blue)[0, 0], ref_grey(red)[0, 0]) == (76, 29)
    assert ref_grey(np.full((1, 1, 3), 255, np.uint8))[0, 0] == 255


def test_reference_rounding_is_opencvs():
    """saturate_cast's rounding and clamping, checked with opencv-python where its arithmetic
    is the 3.4.2 one: exact ties, and brightness (a single rounded product). Its addWeighted is
    not: OpenCV 4 computes fma(s1, a, s2 * b), 3.4.2 rounds s1 * a first (the iterator tests
    below tell them apart)."""
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cv = cv2.addWeighted(x, 0.5, np.zeros_like(x), 0.5, 0.0)
    np.testing.assert_array_equal(ref_saturate(x.astype(F32) * F32(0.5)), cv)
    assert cv[0, 5] == 2 and cv[0, 7] == 4                       # 2.5 -> 2, 3.5 -> 4
    rng = np.random.RandomState(1)
    for bgr in random_images(rng, 12, 15, 19):
        for a in (F32(0.37), F32(1.0), F32(1.42), F32(1.9)):
            np.testing.assert_array_equal(ref_step(bgr, 0, a),
                                          cv2.convertScaleAbs(bgr, alpha=float(a), beta=0))


def test_mt19937_transcription_is_the_mersenne_twister():
    for seed in (0, 111, 118, 2 ** 32 - 1):
        g = MT19937(seed)
        np.testing.assert_array_equal(np.array(g.mt, np.uint32),
                                      np.random.RandomState(seed).get_state()[1])
        ours = [g() for _ in range(700)]                          # across a twist
        theirs = np.random.RandomState(seed).randint(0, 2 ** 32, 700, dtype=np.uint32)
        assert ours == theirs.tolist()


# ---- 2. the transcription against ImageRecordIter ---------------------------------------------

@pytest.fixture(scope='module')
def record_set(tmp_path_factory):
    """40 random 32 x 32 images (PNG sources, packed without resizing) in two classes."""
    base = tmp_path_factory.mktemp('colour')
    rng = np.random.RandomState(5)
    for i, img in enumerate(random_images(rng, 40, 32, 32)):
        path = str(base / 'train' / ('c%d' % (i % 2)) / ('%02d.png' % i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img)
    for c in range(2):
        path = str(base / 'val' / ('c%d' % c) / '0.png')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img)
    out = str(base / 'packed')
    prepare_dataset('folders', str(base / 'train'), out, resize=0, quality=100, num_threads=1,
                    val_root=str(base / 'val'))
    return out


BATCH = 8


def read_epoch(data_dir, seed, **opts):
    """float32 batches of one epoch, records in file order."""
    options = dict(NO_GEOMETRY)
    options.update(opts)
    it = get_train_iter(data_dir, batch_size=BATCH, input_size=32, seed=seed, num_threads=2,
                        **options)
    return [b.data[0].copy() for b in it]


@pytest.mark.parametrize('amounts', [
    dict(brightness=0.4), dict(contrast=0.4), dict(saturation=0.4), dict(pca_noise=0.1),
    dict(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1),          # the recipe
    dict(brightness=0.9, contrast=0.9, saturation=0.9, pca_noise=1.0),          # far clamping
])
def test_transcription_matches_image_record_iter(record_set, amounts):
    colour = dict(NO_COLOUR)
    colour.update(amounts)
    plain = [im for b in read_epoch(record_set, 3, **NO_COLOUR) for im in to_bgr(b.asnumpy())]
    done = [im for b in read_epoch(record_set, 3, **colour) for im in to_bgr(b.asnumpy())]
    orders = set()
    for i, (src, got) in enumerate(zip(plain, done)):
        factors, order, alphas = iterator_draws(i % BATCH + 3 + 111, **colour)
        orders.add(tuple(order))
        np.testing.assert_array_equal(ref_color(src, factors, order, alphas), got,
                                      err_msg='image %d' % i)
    if len(amounts) > 2:
        assert len(orders) >= 4                  # the shuffle really varied the order


def test_colour_comes_after_rotation_and_crop(record_set):
    """The colour steps see the rotated, cropped image (white corners count in the grey mean);
    the geometric draws come first, so the run without colour has the same geometry."""
    geometry = dict(rand_crop=True, max_rotate_angle=30, fill_value=255, resize=40)
    colour = dict(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0)
    plain = [im for b in read_epoch(record_set, 1, **dict(geometry, **NO_COLOUR))
             for im in to_bgr(b.asnumpy())]
    done = [im for b in read_epoch(record_set, 1, **dict(geometry, **colour))
            for im in to_bgr(b.asnumpy())]
    corners = 0
    for i, (src, got) in enumerate(zip(plain, done)):
        corners += (src == 255).all(axis=2).any()
        g = MT19937(i % BATCH + 1 + 111)
        # affine: shear U(0,1), angle int, scale U(0,1), ratio U(0,1); crop: y then x
        canonical_float(g), uniform_int(g, 60), canonical_float(g), canonical_float(g)
        uniform_int(g, 8), uniform_int(g, 8)
        factors = np.array([F32(1.0 + np.float64(uniform_float(g, -0.4, 0.4)))
                            for _ in range(3)], F32)
        np.testing.assert_array_equal(ref_color(src, factors, shuffle3(g)), got,
                                      err_msg='image %d' % i)
    assert corners > 10


# ---- 3. the device path ------------------------------------------------------------------------

def random_draws(rng, n, spread=0.9, lighting=1.0):
    factors = (1 + rng.uniform(-spread, spread, (n, 3))).astype(F32)
    order = np.array([rng.permutation(3) for _ in range(n)])
    return ColorDraws(factors, order, (rng.standard_normal((n, 3)) * lighting).astype(F32))


@pytest.mark.parametrize('ctx', CONTEXTS, ids=str)
def test_device_path_matches_transcription(ctx):
    rng = np.random.RandomState(2)
    aug = jitter(brightness=0.9, contrast=0.9, saturation=0.9, pca_noise=1.0)
    for h, w in ((9, 13), (32, 24)):
        images = random_images(rng, 60, h, w)
        draws = random_draws(rng, len(images))
        assert len({tuple(o) for o in draws.order}) == 6             # per-image orders
        out = aug.apply(to_batch(images, ctx), draws)
        assert out.context == ctx
        got = to_bgr(out.asnumpy())
        for i, src in enumerate(images):
            want = ref_color(src, draws.factors[i], draws.order[i], draws.lighting[i])
            np.testing.assert_array_equal(got[i], want, err_msg='image %d' % i)
    # The jitter's own draws: the recipe's ranges, a new order per image.
    aug = jitter(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1)
    images = random_images(rng, 48, 16, 16)
    draws = aug.draw(len(images))
    assert len({tuple(o) for o in draws.order}) == 6
    assert np.abs(draws.factors - 1).max() <= 0.4 and draws.factors.std() > 0.1
    got = to_bgr(aug.apply(to_batch(images, ctx), draws).asnumpy())
    for i, src in enumerate(images):
        want = ref_color(src, draws.factors[i], draws.order[i], draws.lighting[i])
        np.testing.assert_array_equal(got[i], want, err_msg='image %d' % i)


def test_device_path_rounds_ties_to_even_and_clamps():
    ramp = np.arange(256, dtype=np.uint8)
    img = np.stack([np.tile(ramp, (4, 1))] * 3, axis=2)            # 4 x 256, every value
    for a, step in ((0.5, 0), (1.5, 0), (0.5, 2), (2.5, 1), (0.25, 1)):
        factors = np.ones((1, 3), F32)
        factors[0, step] = a
        draws = ColorDraws(factors, np.array([[step, (step + 1) % 3, (step + 2) % 3]]),
                           np.zeros((1, 3), F32))
        got = to_bgr(jitter(brightness=1, contrast=1, saturation=1).apply(
            to_batch([img]), draws).asnumpy())[0]
        np.testing.assert_array_equal(got, ref_step(img, step, a), err_msg=str((a, step)))
    got = to_bgr(jitter(brightness=1).apply(to_batch([img]), ColorDraws(
        np.array([[0.5, 1, 1]], F32), np.array([[0, 1, 2]]), np.zeros((1, 3), F32))).asnumpy())
    assert got[0][0, 5, 0] == 2 and got[0][0, 7, 0] == 4            # 2.5 -> 2, 3.5 -> 4


def test_device_path_equals_the_iterator(record_set):
    """The iterator without colour, then BatchColorJitter.apply with the iterator's own draws,
    is the iterator with colour: the same float32 values (what the trainer feeds the net)."""
    colour = dict(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1)
    aug = BatchColorJitter(MEAN_RGB, seed=0, **colour)
    for plain, done in zip(read_epoch(record_set, 9, **NO_COLOUR),
                           read_epoch(record_set, 9, **colour)):
        per_image = [iterator_draws(k + 9 + 111, **colour) for k in range(BATCH)]
        draws = ColorDraws(np.stack([f for f, _, _ in per_image]),
                           np.array([o for _, o, _ in per_image]),
                           np.array([a for _, _, a in per_image], F32))
        np.testing.assert_array_equal(aug.apply(plain, draws).asnumpy(), done.asnumpy())


def test_jitter_is_seeded_and_checks_its_input():
    rng = np.random.RandomState(3)
    batch = to_batch(random_images(rng, 6, 8, 8))
    a = jitter(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1)
    b = jitter(brightness=0.4, contrast=0.4, saturation=0.4, pca_noise=0.1)
    first = a(batch).asnumpy()
    assert np.array_equal(first, b(batch).asnumpy())
    assert not np.array_equal(first, a(batch).asnumpy())          # the generator moves on
    # A zero amount is exactly the identity; the output stays 8-bit minus the mean.
    np.testing.assert_array_equal(jitter()(batch).asnumpy(), batch.asnumpy())
    u = first + MEAN
    assert np.abs(u - np.rint(u)).max() < 1e-3 and u.min() >= 0 and u.max() <= 255
    with pytest.raises(ValueError, match='brightness must be >= 0'):
        jitter(brightness=-1)
    with pytest.raises(ValueError, match='mean_rgb needs 3 values'):
        BatchColorJitter((1, 2), 0, 0, 0, 0)
    with pytest.raises(ValueError, match=r'\(B, 3, H, W\)'):
        a(mx.nd.zeros((2, 1, 4, 4)))
    with pytest.raises(ValueError, match='float32'):
        a(mx.nd.zeros((2, 3, 4, 4), dtype='float16'))
