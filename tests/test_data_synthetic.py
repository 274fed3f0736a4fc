"""The built-in synthetic fine-grained set: determinism, packing, and the properties that make it
a fine-grained task (within a colour group, classes differ only in the texture of a small badge,
which vanishes at 64 px)."""
import filecmp
import json
import os

import cv2
import numpy as np
import pytest

from tasn_gluon.data import DatasetError, get_val_iter, read_dataset_info, read_lst
from tasn_gluon.data.synthetic import (BADGE_COLOURS, MAX_CLASSES, TEXTURES, class_designs,
                                       class_names, make_synthetic_dataset, render_image,
                                       texture_cell, texture_mask)

SMALL = dict(num_classes=3, per_class_train=2, per_class_val=1, image_size=96, num_threads=2)


@pytest.fixture(scope='module')
def synth(tmp_path_factory):
    return make_synthetic_dataset(str(tmp_path_factory.mktemp('a') / 'syn'), seed=5, **SMALL)


def test_packed_like_a_real_dataset(synth):
    info = read_dataset_info(synth)
    assert info['name'] == 'synthetic' and info['layout'] == 'synthetic'
    assert (info['num_classes'], info['num_train'], info['num_val']) == (3, 6, 3)
    assert info['class_names'] == ['red-checker', 'red-horizontal', 'red-vertical']
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


def test_boxes_describe_the_badge(synth):
    meta = json.load(open(os.path.join(synth, 'synthetic.json')))
    images = meta['images']
    assert len(images) == 9 and images[0]['split'] == 'train'
    for m in images:
        x0, y0, x1, y1 = m['detail_box']
        assert m['cell'] == texture_cell(96) == 1
        assert x1 - x0 == y1 - y0 and (x1 - x0) % (2 * m['cell']) == 0   # whole periods
        assert 0 < x0 and x1 < 96 and 0 < y0 and y1 < 96
        assert (x1 - x0) / 96.0 < 0.2                                    # a small part
        group, texture = class_designs(3)[m['label']]
        light, dark = (np.array(c, np.float32) for c in BADGE_COLOURS[group])
        img = cv2.imread(os.path.join(synth, 'images', m['split'], m['path'])).astype(np.float32)
        badge = img[y0:y1, x0:x1]
        is_light = (np.abs(badge - light).sum(-1) < np.abs(badge - dark).sum(-1))
        assert is_light.mean() == pytest.approx(0.5, abs=0.02)           # half light, half dark


def test_classes_are_colour_and_texture():
    designs = class_designs(6)
    assert len(set(designs)) == 6 and MAX_CLASSES == len(TEXTURES) * len(BADGE_COLOURS)
    assert sorted(g for g, _ in designs) == [0] * 3 + [1] * 3     # 3 textures per colour
    assert {t for _, t in designs} == set(TEXTURES)
    # named by what they are, in label order (the sorted class folders)
    assert class_names(6) == ['blue-checker', 'blue-horizontal', 'blue-vertical',
                              'red-checker', 'red-horizontal', 'red-vertical']


def _all_masks(texture, side, cell, draws=200):
    """Every mask the generator draws for a texture (all phases)."""
    rng = np.random.RandomState(0)
    return {texture_mask(texture, side, cell, rng).tobytes() for _ in range(draws)}


def test_a_flip_keeps_the_class():
    for texture in TEXTURES:
        masks = _all_masks(texture, 8, 2)
        flipped = {np.frombuffer(m, np.uint8).reshape(8, 8)[:, ::-1].tobytes() for m in masks}
        assert flipped == masks, texture


def test_textures_differ_only_at_full_resolution():
    """At 256 px a texture period is 4 px. Averaged over 4x4 pixels (what a 64-px view holds)
    every texture is the same flat 50 % grey; the align-corners resize the networks use gives
    a flat patch too (its level depends on the random phase, not on the texture)."""
    import mxnet as mx
    cell, side = texture_cell(256), 40
    assert cell == 2
    rng = np.random.RandomState(1)
    for texture in TEXTURES:
        for _ in range(10):
            mask = texture_mask(texture, side, cell, rng).astype(np.float32)
            assert mask.std() == pytest.approx(0.5, abs=0.01)        # full contrast at 256 px
            pooled = mask.reshape(side // 4, 4, side // 4, 4).mean(axis=(1, 3))
            assert np.allclose(pooled, 0.5)
            image = np.full((256, 256), 0.5, np.float32)
            image[100:100 + side, 60:60 + side] = mask
            small = mx.nd.contrib.BilinearResize2D(mx.nd.array(image[None, None]), height=64,
                                                   width=64, align_corners=True)[0, 0].asnumpy()
            inside = small[27:33, 17:23]                              # the badge's interior
            assert inside.std() < 0.12, texture
    # At full resolution, comparing each pixel with its neighbours tells the textures apart.
    def signature(mask):
        def differ(dy, dx):
            a = mask[max(dy, 0):side + min(dy, 0), max(dx, 0):side + min(dx, 0)]
            b = mask[max(-dy, 0):side + min(-dy, 0), max(-dx, 0):side + min(-dx, 0)]
            return round(float((a != b).mean()), 1)
        return (differ(cell, 0), differ(0, cell)) + tuple(sorted((differ(1, 1), differ(1, -1))))
    signatures = {t: {signature(np.frombuffer(m, np.uint8).reshape(side, side))
                      for m in _all_masks(t, side, cell)} for t in TEXTURES}
    assert all(len(s) == 1 for s in signatures.values())            # one per texture, any phase
    assert len({s.pop() for s in signatures.values()}) == len(TEXTURES)


def test_render_is_seeded():
    design = class_designs(2)[1]
    a, ma = render_image(design, np.random.RandomState(1), 128)
    b, mb = render_image(design, np.random.RandomState(1), 128)
    c, _ = render_image(design, np.random.RandomState(2), 128)
    assert np.array_equal(a, b) and ma == mb and not np.array_equal(a, c)
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8


def test_bad_arguments(tmp_path):
    with pytest.raises(DatasetError, match='2..%d classes' % MAX_CLASSES):
        class_designs(1)
    with pytest.raises(DatasetError, match='image_size must be >= 96'):
        make_synthetic_dataset(str(tmp_path / 'x'), image_size=32)
