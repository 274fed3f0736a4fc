"""data.preprocess: the val preprocessing of single images equals what get_val_iter yields, bit for
bit, for the JPEG bytes stored in val.rec: square images (the tiny synthetic set, shrunk and
enlarged) and images of every aspect whose resized long side is truncated, not rounded."""
import os

import cv2
import mxnet as mx
import numpy as np
import pytest

from conftest import val_records
from tasn_gluon.data import MEAN_RGB, get_val_iter, prepare_dataset
from tasn_gluon.data.pipeline import RESIZE_INTER_METHOD
from tasn_gluon.data.preprocess import (BadImage, decode_rgb, load_val_image, val_preprocess,
                                        val_resized_size)

# (height, width) of the odd-shaped set: landscape, portrait, square, extreme aspects; for the
# sizes tested, resize * long / short has a fractional part, so rounding would differ.
SHAPES = [(45, 67), (67, 45), (50, 50), (31, 47), (47, 31), (33, 100), (100, 33), (29, 29)]


def iterator_images(data_dir, input_size, resize=None, batch_size=5):
    """(images, labels) of the val iterator, one epoch, pad rows dropped."""
    it = get_val_iter(data_dir, batch_size, input_size, resize=resize, num_threads=1)
    data, labels = [], []
    for b in it:
        n = b.data[0].shape[0] - b.pad
        data.append(b.data[0].asnumpy()[:n])
        labels.append(b.label[0].asnumpy()[:n].astype(int))
    return np.concatenate(data), np.concatenate(labels)


@pytest.fixture(scope='module')
def odd_shapes(tmp_path_factory):
    """A packed folders set whose images keep their odd sizes (resize=0), one per class."""
    base = tmp_path_factory.mktemp('odd_shapes')
    rng = np.random.RandomState(0)
    for split in ('train', 'val'):
        for c, (h, w) in enumerate(SHAPES):
            path = str(base / split / ('c%d' % c) / '0.jpg')
            os.makedirs(os.path.dirname(path), exist_ok=True)
            coarse = cv2.resize(rng.randint(0, 255, (4, 5, 3)).astype(np.float32), (w, h))
            img = np.clip(coarse + rng.randint(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)
            assert cv2.imwrite(path, img)
    out = str(base / 'packed')
    prepare_dataset('folders', str(base / 'train'), out, resize=0, num_threads=1,
                    val_root=str(base / 'val'))
    return out


def test_resized_size_truncates_like_the_iterator():
    assert val_resized_size(45, 67, 32) == (32, 47)      # 47.64: truncated, not 48
    assert val_resized_size(67, 45, 32) == (47, 32)
    assert val_resized_size(50, 50, 32) == (32, 32)
    assert val_resized_size(33, 100, 16) == (16, 48)     # 48.48
    assert val_resized_size(20, 30, 64) == (64, 96)      # enlarging
    with pytest.raises(ValueError):
        val_resized_size(0, 10, 8)


@pytest.mark.parametrize('input_size,resize', [(64, None), (512, None), (48, 80)])
def test_synthetic_val_images_bit_identical(tiny_synthetic, input_size, resize):
    """96 px records shrunk to 64 (and 48 after 80), enlarged to 512 (the official size)."""
    expected, labels = iterator_images(tiny_synthetic, input_size, resize)
    records = val_records(tiny_synthetic)
    assert [lab for _, lab in records] == labels.tolist()
    ours = np.stack([val_preprocess(decode_rgb(data), input_size, resize)
                     for data, _ in records])
    assert ours.dtype == np.float32 and ours.shape == expected.shape
    np.testing.assert_array_equal(ours, expected)


@pytest.mark.parametrize('input_size,resize', [(16, None), (29, None), (32, None), (64, None),
                                               (24, 37)])
def test_odd_shapes_bit_identical(odd_shapes, input_size, resize):
    expected, _ = iterator_images(odd_shapes, input_size, resize)
    records = val_records(odd_shapes)
    ours = np.stack([val_preprocess(decode_rgb(data), input_size, resize)
                     for data, _ in records])
    np.testing.assert_array_equal(ours, expected)


def _variant(img, size, new_h, new_w, interp):
    """The val steps with a chosen resized size and interpolation."""
    resized = mx.image.imresize(img, new_w, new_h, interp=interp)
    crop = mx.image.fixed_crop(resized, (new_w - size) // 2, (new_h - size) // 2, size, size)
    return (crop.astype(np.float32) - mx.nd.array(MEAN_RGB)).transpose((2, 0, 1)).asnumpy()


def test_the_comparison_sees_rounding_and_interpolation(odd_shapes):
    """What the bit-identity rules out: a rounded long side, or another interpolation (the
    area resize that a hand-written copy used when shrinking), changes the images."""
    size = 32
    expected, _ = iterator_images(odd_shapes, size)
    changed_by_rounding = changed_by_area = 0
    for i, (data, _) in enumerate(val_records(odd_shapes)):
        img = decode_rgb(data)
        h, w = img.shape[:2]
        new_h, new_w = val_resized_size(h, w, size)
        np.testing.assert_array_equal(_variant(img, size, new_h, new_w, RESIZE_INTER_METHOD),
                                      expected[i])
        long_side = int(round(float(size) * max(h, w) / min(h, w)))
        rounded = (long_side, size) if h > w else (size, long_side)
        if rounded != (new_h, new_w):
            assert not np.array_equal(_variant(img, size, *rounded, RESIZE_INTER_METHOD),
                                      expected[i])
            changed_by_rounding += 1
        if min(h, w) > size:
            assert not np.array_equal(_variant(img, size, new_h, new_w, 3), expected[i])
            changed_by_area += 1
    assert changed_by_rounding >= 4
    assert changed_by_area == sum(min(shape) > size for shape in SHAPES) == 5


def test_bad_images_name_the_reason(tmp_path, tiny_synthetic):
    jpeg = val_records(tiny_synthetic)[0][0]
    with pytest.raises(BadImage, match='truncated JPEG'):
        decode_rgb(jpeg[:len(jpeg) // 2])
    with pytest.raises(BadImage, match='not a decodable image'):
        decode_rgb(b'just some text\n')
    with pytest.raises(BadImage, match='empty file'):
        decode_rgb(b'')
    with pytest.raises(BadImage, match='cannot read: No such file'):
        load_val_image(str(tmp_path / 'missing.jpg'), 64)
    with pytest.raises(BadImage, match='a folder'):
        load_val_image(str(tmp_path), 64)
    with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8'):
        val_preprocess(np.zeros((8, 8), np.uint8), 8)
    with pytest.raises(ValueError, match='input_size <= resize'):
        val_preprocess(np.zeros((8, 8, 3), np.uint8), 8, resize=4)
    # grey and 4-channel PNGs decode to 3 channels, as the iterator's colour decode
    rgba = np.dstack([np.full((6, 9, 3), 100, np.uint8), np.full((6, 9, 1), 7, np.uint8)])
    for img in (rgba, rgba[:, :, 0]):
        ok, buf = cv2.imencode('.png', img)
        assert decode_rgb(buf.tobytes()).shape == (6, 9, 3)
