"""The train and val iterators: shapes, values, exact evaluation, sharding, seeding, and a check
that each augmentation option of MXNet's ImageRecordIter does what the paper's recipe needs."""
import os

import cv2
import numpy as np
import pytest

from tasn_gluon.errors import ConfigError
from tasn_gluon.data import (DatasetError, MEAN_RGB, count_shard, get_train_iter, get_val_iter,
                             prepare_dataset)

MEAN = np.array(MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
OFF = dict(rand_crop=False, rand_mirror=False, max_rotate_angle=0, brightness=0, contrast=0,
           saturation=0, pca_noise=0, shuffle=False)


def _write(path, img):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, img)


def _probe_images():
    """Class name -> 64 px (BGR) test image whose change under one augmentation is predictable."""
    halves = np.zeros((64, 64, 3), np.uint8)
    halves[:, 32:] = 255
    two_tone = np.full((64, 64, 3), 64, np.uint8)
    two_tone[:, 32:] = 192
    gradient = np.tile(np.linspace(0, 255, 96).astype(np.uint8)[None, :, None], (64, 1, 3))
    return {'a_gray': np.full((64, 64, 3), 128, np.uint8), 'b_halves': halves,
            'c_black': np.zeros((64, 64, 3), np.uint8),
            'd_color': np.tile(np.array([10, 100, 200], np.uint8), (64, 64, 1)),
            'e_two_tone': two_tone, 'f_gradient': gradient}


@pytest.fixture(scope='module')
def probe(tmp_path_factory):
    """A packed folders dataset: 6 classes x 8 train images, 1 val image each (PNG sources)."""
    base = tmp_path_factory.mktemp('probe')
    for name, img in _probe_images().items():
        for i in range(8):
            _write(str(base / 'train' / name / ('%d.png' % i)), img)
        _write(str(base / 'val' / name / '0.png'), img)
    out = str(base / 'packed')
    prepare_dataset('folders', str(base / 'train'), out, resize=0, quality=100, num_threads=1,
                    val_root=str(base / 'val'))
    return out


@pytest.fixture(scope='module')
def many(tmp_path_factory):
    """13 classes, val = one image per class, so val labels identify images."""
    base = tmp_path_factory.mktemp('many')
    rng = np.random.RandomState(0)
    for c in range(13):
        for split, n in (('train', 2), ('val', 1)):
            for i in range(n):
                _write(str(base / split / ('c%02d' % c) / ('%d.jpg' % i)),
                       rng.randint(0, 255, (24, 30, 3)).astype(np.uint8))
    out = str(base / 'packed')
    prepare_dataset('folders', str(base / 'train'), out, resize=24, num_threads=1,
                    val_root=str(base / 'val'))
    return out


def _epoch(it):
    """(images as uint8-range RGB NCHW float, labels) of one epoch, pad rows dropped."""
    data, labels = [], []
    for b in it:
        n = b.data[0].shape[0] - b.pad
        data.append(b.data[0].asnumpy()[:n] + MEAN)
        labels.append(b.label[0].asnumpy()[:n])
    it.reset()
    return np.concatenate(data), np.concatenate(labels).astype(int)


def _class(probe_dir, name):
    return sorted(_probe_images()).index(name)


def _train(probe_dir, epochs=1, seed=0, **opts):
    options = dict(OFF)
    options.update(opts)
    it = get_train_iter(probe_dir, batch_size=8, input_size=64, seed=seed, num_threads=2,
                        **options)
    runs = [_epoch(it) for _ in range(epochs)]
    return np.concatenate([r[0] for r in runs]), np.concatenate([r[1] for r in runs])


def test_val_iter_shapes_values_labels(probe):
    it = get_val_iter(probe, batch_size=4, input_size=48, num_threads=1)
    assert it.provide_data[0].shape == (4, 3, 48, 48)
    assert it.num_images == 6 and it.num_batches == 2
    batches = list(it)
    assert len(batches) == 2 and batches[-1].pad == 2
    assert batches[0].data[0].dtype == np.float32 and batches[0].label[0].dtype == np.float32
    # The pad rows of the short last batch are zeroed, not uninitialised memory.
    assert np.all(batches[-1].data[0].asnumpy()[2:] == 0)
    assert np.all(batches[-1].label[0].asnumpy()[2:] == 0)
    it.reset()
    data, labels = _epoch(it)
    assert data.shape == (6, 3, 48, 48) and list(labels) == list(range(6))
    # Mean subtracted per RGB channel, no std division: colour (B, G, R) = (10, 100, 200).
    color = data[_class(probe, 'd_color')].reshape(3, -1).mean(axis=1)
    np.testing.assert_allclose(color, [200, 100, 10], atol=3)
    gray = data[_class(probe, 'a_gray')]
    np.testing.assert_allclose(gray, 128, atol=2)
    # Centre crop after the shorter side goes to 48: the 64x96 gradient becomes 48x72, x 12..59.
    grad = data[_class(probe, 'f_gradient')][0, 0]
    expected = cv2.resize(np.linspace(0, 255, 96)[None].astype(np.float32), (72, 1),
                          interpolation=cv2.INTER_LINEAR)[0, 12:60]
    np.testing.assert_allclose(grad, expected, atol=4)


@pytest.mark.parametrize('batch_size', [1, 4, 5, 13, 16])
@pytest.mark.parametrize('num_parts', [1, 2, 3, 4])
def test_val_iter_is_exact_over_shards(many, batch_size, num_parts):
    seen = []
    for part in range(num_parts):
        it = get_val_iter(many, batch_size=batch_size, input_size=16, num_parts=num_parts,
                          part_index=part, num_threads=1)
        for epoch in range(2):                     # reset() gives the same epoch again
            labels = list(_epoch(it)[1])
            assert len(labels) == it.num_images == count_shard(13, num_parts, part)
            if epoch == 0:
                seen += labels
    assert sorted(seen) == list(range(13))


def test_count_shard_and_empty_shard(many):
    assert [count_shard(10, 4, p) for p in range(4)] == [3, 3, 3, 1]
    assert sum(count_shard(5089, 7, p) for p in range(7)) == 5089
    with pytest.raises(DatasetError, match='shard 13 of 14 .* empty'):
        get_val_iter(many, batch_size=2, input_size=16, num_parts=14, part_index=13)
    with pytest.raises(ValueError, match='part_index'):
        get_val_iter(many, batch_size=2, input_size=16, num_parts=2, part_index=2)


def test_train_iter_shapes_and_shards(many):
    it = get_train_iter(many, batch_size=4, input_size=16, num_threads=1, last_batch='discard')
    b = next(iter(it))
    assert b.data[0].shape == (4, 3, 16, 16) and b.label[0].shape == (4,)
    it.reset()
    assert it.num_images == 26 and it.num_batches == 6
    for epoch in range(3):                      # only full batches, the same count each epoch
        batches = [(b.pad, b.label[0].asnumpy().copy()) for b in it]
        it.reset()
        assert len(batches) == 6 and all(pad == 0 for pad, _ in batches)
        labels = np.concatenate([l for _, l in batches])
        assert len(set(labels.tolist())) >= 12 and np.bincount(labels.astype(int)).max() <= 2
    labels = []
    for part in range(2):
        it = get_train_iter(many, batch_size=13, input_size=16, num_parts=2, part_index=part,
                            num_threads=1, shuffle=False)
        labels += list(_epoch(it)[1])
    assert sorted(labels) == sorted(list(range(13)) * 2)


def test_train_iter_wraps_the_last_batch_as_the_official_round_batch(many):
    """26 images (2 per class), batch 4: 7 full batches; the 26 images once each, and the last
    batch completed with the epoch's first two images (data and labels)."""
    it = get_train_iter(many, batch_size=4, input_size=16, num_threads=1, **OFF)
    assert it.num_batches == 7
    for epoch in range(2):
        batches = [(b.pad, b.data[0].asnumpy().copy(), b.label[0].asnumpy().copy()) for b in it]
        it.reset()
        assert len(batches) == 7 and all(pad == 0 for pad, _, _ in batches)
        labels = np.concatenate([l for _, _, l in batches])
        assert sorted(labels[:26].tolist()) == sorted(list(range(13)) * 2)
        np.testing.assert_array_equal(batches[-1][1][2:], batches[0][1][:2])
        np.testing.assert_array_equal(labels[26:], labels[:2])
    # fewer images than a batch: the shard repeats until the batch is full
    tiny = get_train_iter(many, batch_size=16, input_size=16, num_parts=2, part_index=1,
                          num_threads=1, **OFF)
    (b,) = list(tiny)
    labels = b.label[0].asnumpy()
    np.testing.assert_array_equal(labels[13:], labels[:3])


def test_train_iter_is_seeded(many):
    def run(seed, threads):
        it = get_train_iter(many, batch_size=5, input_size=16, seed=seed, num_threads=threads)
        return [_epoch(it) for _ in range(2)]
    a, b, c = run(3, 2), run(3, 2), run(4, 2)
    for (da, la), (db, lb) in zip(a, b):
        np.testing.assert_array_equal(da, db)
        np.testing.assert_array_equal(la, lb)
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[0][1], a[1][1])     # each epoch reshuffles


def test_unknown_option_and_bad_sizes(probe):
    with pytest.raises(ConfigError, match='unknown augmentation option.*rotation'):
        get_train_iter(probe, batch_size=2, input_size=32, rotation=30)
    with pytest.raises(ConfigError, match='resize .* must be >= --input-size'):
        get_train_iter(probe, batch_size=2, input_size=32, resize=16)
    with pytest.raises(DatasetError, match='dataset.json not found'):
        get_val_iter(os.path.dirname(probe), batch_size=2)


# ---- each augmentation, one at a time ----------------------------------------------------------

def test_no_augmentation_is_identity(probe):
    data, labels = _train(probe)
    gray = data[labels == _class(probe, 'a_gray')]
    np.testing.assert_allclose(gray, 128, atol=2)


def test_flip(probe):
    data, labels = _train(probe, epochs=2, rand_mirror=True)
    halves = data[labels == _class(probe, 'b_halves')][:, 0]
    left_dark = halves[:, :, :30].mean(axis=(1, 2)) < 10
    right_dark = halves[:, :, 34:].mean(axis=(1, 2)) < 10
    assert np.all(left_dark ^ right_dark)            # each image is intact or mirrored
    assert 0 < left_dark.sum() < len(left_dark)      # and both happen


def test_random_crop(probe):
    data, labels = _train(probe, epochs=2, rand_crop=True)
    first_column = data[labels == _class(probe, 'f_gradient')][:, 0, 0, 0]
    assert first_column.min() >= -1 and first_column.max() <= 255 * 32 / 95 + 2
    assert len(np.unique(np.round(first_column))) > 3   # different offsets in 0..32


def test_rotation_fills_white_within_30_degrees(probe):
    data, labels = _train(probe, epochs=3, max_rotate_angle=30, fill_value=255)
    black = data[labels == _class(probe, 'c_black')]
    white = (black > 200).all(axis=1).mean(axis=(1, 2))
    ref = cv2.warpAffine(np.zeros((64, 64), np.uint8),
                         cv2.getRotationMatrix2D((32, 32), 30, 1.0), (64, 64),
                         borderValue=255)
    bound = (ref > 200).mean()
    assert white.max() <= bound + 0.02
    assert (white > 0.01).mean() > 0.5               # most angles leave white corners
    assert np.all(black[:, :, 24:40, 24:40] < 10)    # the centre stays black
    data, labels = _train(probe, epochs=1, max_rotate_angle=30, fill_value=0)
    assert np.all(data[labels == _class(probe, 'c_black')] < 10)


def test_brightness(probe):
    data, labels = _train(probe, epochs=3, brightness=0.4)
    factors = data[labels == _class(probe, 'a_gray')].mean(axis=(1, 2, 3)) / 128.0
    assert factors.min() >= 0.6 - 0.02 and factors.max() <= 1.4 + 0.02
    assert factors.max() - factors.min() > 0.3


def test_contrast(probe):
    data, labels = _train(probe, epochs=3, contrast=0.4)
    tones = data[labels == _class(probe, 'e_two_tone')][:, 0]
    spread = (tones[:, :, 40:].mean(axis=(1, 2)) - tones[:, :, :24].mean(axis=(1, 2))) / 128.0
    assert spread.min() >= 0.6 - 0.03 and spread.max() <= 1.4 + 0.03
    assert spread.max() - spread.min() > 0.3


def test_saturation(probe):
    data, labels = _train(probe, epochs=3, saturation=0.4)
    color = data[labels == _class(probe, 'd_color')].mean(axis=(2, 3))   # (n, RGB)
    spread = (color[:, 0] - color[:, 2]) / (200 - 10.0)
    assert spread.min() >= 0.6 - 0.03 and spread.max() <= 1.4 + 0.03
    assert spread.max() - spread.min() > 0.3
    gray = data[labels == _class(probe, 'a_gray')]
    np.testing.assert_allclose(gray, 128, atol=2)                      # grey has no saturation


def test_pca_lighting(probe):
    data, labels = _train(probe, epochs=3, pca_noise=0.1)
    offsets = data[labels == _class(probe, 'a_gray')].mean(axis=(2, 3)) - 128   # (n, RGB)
    # AlexNet lighting: eigvec @ (alpha * eigval), alpha ~ N(0, 0.1); the top eigenvector
    # (55.46) is nearly (1, 1, 1) / sqrt(3), so offsets are ~equal per channel, std ~ 3.2.
    assert np.abs(offsets).max() < 20
    assert offsets.std() > 0.5
    assert np.abs(offsets - offsets.mean(axis=1, keepdims=True)).max() < 2.5


def test_full_recipe_runs_and_stays_in_range(probe):
    it = get_train_iter(probe, batch_size=8, input_size=48, num_threads=2)
    data, labels = _epoch(it)
    assert data.shape == (48, 3, 48, 48)
    assert data.min() >= -1 and data.max() <= 256


# ---- colour augmentation on the training device (its arithmetic: test_data_color.py) --------

def test_color_on_device_moves_the_colour_work(probe):
    geometric_off = dict(rand_crop=False, rand_mirror=False, max_rotate_angle=0, shuffle=False)
    it = get_train_iter(probe, batch_size=8, input_size=64, num_threads=2,
                        color_on_device=True, **geometric_off)
    assert it.device_augment is not None and it.device_augment.brightness == 0.4
    plain = []
    jittered = []
    for b in it:
        plain.append(b.data[0].asnumpy() + MEAN)
        jittered.append(it.device_augment(b.data[0]).asnumpy() + MEAN)
    labels = np.arange(48) // 8                      # no shuffle: class after class
    plain, jittered = np.concatenate(plain), np.concatenate(jittered)
    gray = _class(probe, 'a_gray')
    np.testing.assert_allclose(plain[labels == gray], 128, atol=2)   # nothing done on the CPU
    assert jittered[labels == gray].std() > 1
    assert get_train_iter(probe, batch_size=8, input_size=64).device_augment is None


def test_records_and_dataset_json_must_agree(many, tmp_path):
    import json
    import shutil
    bad = str(tmp_path / 'bad')
    shutil.copytree(many, bad)
    info_path = os.path.join(bad, 'dataset.json')
    info = json.load(open(info_path))
    info['num_val'] = 15
    json.dump(info, open(info_path, 'w'))
    with pytest.raises(DatasetError, match='val.idx lists 13 records but dataset.json says '
                                           'num_val = 15'):
        get_val_iter(bad, batch_size=4, input_size=16, num_threads=1)
    # Past that check, the wrapper still notices an iterator that disagrees with its count.
    from tasn_gluon.data import RecordIter
    info['num_val'] = 13
    json.dump(info, open(info_path, 'w'))
    for count, message in ((11, 'holds more than the 11 images'),
                           (17, 'stopped after 4 of 5 batches')):
        it = get_val_iter(bad, batch_size=4, input_size=16, num_threads=1)
        wrapped = RecordIter(it._inner, count, 4, 'keep')
        with pytest.raises(DatasetError, match=message):
            for _ in wrapped:
                pass
