"""The built-in synthetic fine-grained set: determinism, packing, and the properties that make it
a fine-grained task (classes differ only in a small detail that blurs away)."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest

from tasn_gluon.data import DatasetError, get_val_iter, read_dataset_info, read_lst
from tasn_gluon.data.synthetic import (GRID, MAX_CLASSES, detail_codes, make_synthetic_dataset,
                                       render_image)

SMALL = dict(num_classes=3, per_class_train=2, per_class_val=1, image_size=96, num_threads=2)


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('a') / 'syn'), seed=5, **SMALL)


def test_packed_like_a_real_dataset(synth):
    info = read_dataset_info(synth)
    assert info['name'] == 'synthetic' and info['layout'] == 'synthetic'
    assert (info['num_classes'], info['num_train'], info['num_val']) == (3, 6, 3)
    assert info['class_names'] == ['class_00', 'class_01', 'class_02']
    assert info['packing']['resize'] == 96 and info['synthetic']['seed'] == 5
    assert [e.label for e in read_lst(os.path.join(synth, 'val.lst'))] == [0, 1, 2]
    it = get_val_iter(synth, batch_size=2, input_size=64, num_threads=1)
    labels = [l for b in it for l in b.label[0].asnumpy()[:2 - b.pad]]
    assert labels == [0, 1, 2]


def test_deterministic_for_a_seed(synth, tmp_path):
    again = make_synthetic_dataset(str(tmp_path / 'same'), seed=5, **SMALL)
    other = make_synthetic_dataset(str(tmp_path / 'other'), seed=6, **SMALL)
    for name in ('train.rec', 'train.idx', 'val.rec', 'val.lst', 'synthetic.json'):
        assert filecmp.cmp(os.path.join(synth, name), os.path.join(again, name), shallow=False)
    assert not filecmp.cmp(os.path.join(synth, 'train.rec'), os.path.join(other, 'train.rec'),
                           shallow=False)
    a, b = read_dataset_info(synth), read_dataset_info(again)
    a.pop('source'), b.pop('source')
    assert a == b
    # Regenerating smaller in the same folder leaves no images of the earlier call behind.
    smaller = dict(SMALL, per_class_train=1)
    make_synthetic_dataset(again, seed=5, **smaller)
    assert read_dataset_info(again)['num_train'] == 3


def test_boxes_describe_the_detail(synth):
    meta = json.load(open(os.path.join(synth, 'synthetic.json')))
    images = meta['images']
    assert len(images) == 9 and images[0]['split'] == 'train'
    for m in images:
        x0, y0, x1, y1 = m['detail_box']
        assert x1 - x0 == y1 - y0 == GRID * m['cell'] and m['cell'] >= 2
        assert 0 < x0 and x1 < 96 and 0 < y0 and y1 < 96
        # a few percent of the image side
        assert (x1 - x0) / 96.0 < 0.2
        img = cv2.imread(os.path.join(synth, 'images', m['split'], m['path']))
        badge = img[y0:y1, x0:x1].mean(axis=2)
        assert 0.35 < (badge > 128).mean() < 0.65


def test_codes_are_fine_grained():
    classes = detail_codes(8)
    assert len(classes) == 8
    flat = [c for variants in classes for c in variants]
    assert len({c.tobytes() for c in flat}) == len(flat)           # all distinct
    for variants in classes:
        assert len(variants) == 2
        mirrored = {v[:, ::-1].tobytes() for v in variants}
        assert mirrored == {v.tobytes() for v in variants}          # flips stay in the class
        for v in variants:                                          # same white per row/column
            assert set(v.sum(axis=0)) == {GRID // 2} and set(v.sum(axis=1)) == {GRID // 2}
            blocks = v.reshape(GRID // 2, 2, GRID // 2, 2).sum(axis=(1, 3))
            assert np.all(blocks == 2)
    # Classes differ in at least one 2x2 block (4 cells) at full resolution ...
    for i in range(8):
        for j in range(i):
            assert min(int((a != b).sum()) for a in classes[i] for b in classes[j]) >= 4
    # ... but blurred over about a cell they are almost the same grey square.
    blurred = [cv2.GaussianBlur(np.pad(c.astype(np.float32), 2, constant_values=0.5), (0, 0), 1.0)
               for c in flat]
    assert max(np.abs(a - b).max() for a in blurred for b in blurred) < 0.15


def test_render_is_seeded():
    codes = detail_codes(2)[0]
    a, ma = render_image(codes, np.random.RandomState(1), 128)
    b, mb = render_image(codes, np.random.RandomState(1), 128)
    c, _ = render_image(codes, np.random.RandomState(2), 128)
    assert np.array_equal(a, b) and ma == mb and not np.array_equal(a, c)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match='2..%d classes' % MAX_CLASSES):
        detail_codes(1)
    with pytest.raises(DatasetError, match='image_size must be >= 96'):
        make_synthetic_dataset(str(tmp_path / 'x'), image_size=32)
