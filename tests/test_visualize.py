"""tools/visualize.py writes the Figure-4 style PNGs, for an untrained and a trained TASN: one
val image per class, the detail maps among the distinct maps, titles with class names."""
import os

import cv2
import numpy as np
import pytest

from tasn_gluon.data import read_dataset_info
from tasn_gluon.reports.visualize import (choose_detail_channels, images_from_rec,
                                          run_visualize)


def _png(path):
    """The picture as an (H, W, 3) array: a readable PNG of a real figure."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    assert img is not None, path
    return img


def test_visualize_untrained_on_files(tmp_path, tool):
    img = (np.random.RandomState(0).rand(80, 120, 3) * 255).astype(np.uint8)
    f = str(tmp_path / 'a.jpg')
    cv2.imwrite(f, img)
    out = str(tmp_path / 'vis')
    flags = ['--num-classes', '3', '--input-size', '64', '--att-size', '32', '--sample-size',
             '32']
    done = tool('visualize', '--images', f, '--out', out, '--num-details', '2', *flags)
    assert done.returncode == 0, done.stderr
    # one row per map (structure + 2 details), four panels each: taller than wide
    pic = _png(os.path.join(out, 'vis_000.png'))
    assert pic.shape[0] > 0.6 * pic.shape[1] and pic.std() > 10
    done = tool('visualize', '--images', tmp_path / 'none.jpg', '--out', out, *flags)
    assert done.returncode == 2 and 'cannot read the image' in done.stderr


def test_visualize_checkpoint_one_image_per_class(tiny_synthetic, trained_runs, tmp_path):
    out = str(tmp_path / 'vis')
    with pytest.raises(ValueError, match='only a TASN checkpoint'):
        run_visualize(out, checkpoint=trained_runs['baseline'], data_dir=tiny_synthetic)
    paths = run_visualize(out, checkpoint=trained_runs['tasn'], data_dir=tiny_synthetic)
    assert sorted(os.listdir(out)) == ['vis_%03d.png' % i for i in range(4)] == \
        [os.path.basename(p) for p in paths]
    _, labels = images_from_rec(tiny_synthetic, 64, 10, one_per_class=True)
    assert labels.tolist() == [0, 1, 2, 3]               # the first image of every class
    names = read_dataset_info(tiny_synthetic)['class_names']
    assert all(_png(p).std() > 10 for p in paths) and len(set(names)) == 4


def test_visualize_num_images_takes_the_first_val_images(tiny_synthetic, trained_runs, tmp_path,
                                                         tool):
    """--num-images N: the first N val images, not one per class (12 val images, 3 per class)."""
    out = tmp_path / 'vis'
    done = tool('visualize', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                '--num-images', 6, '--num-details', 1, '--out', out)
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ['vis_%03d.png' % i for i in range(6)]
    _, labels = images_from_rec(tiny_synthetic, 64, 6)
    assert len(labels) == 6 and len(set(labels.tolist())) < 6   # repeats classes


def test_detail_channels_prefer_distinct_peaks():
    m = np.zeros((1, 5, 3, 3))
    m[0, 0, 0, 0], m[0, 1, 0, 0], m[0, 2, 1, 1], m[0, 3, 2, 2], m[0, 4, 0, 0] = 5, 4, 3, 1, 6
    every = np.ones((1, 5))
    assert choose_detail_channels(m, every, 3) == [[4, 2, 3]]
    assert choose_detail_channels(m, every, 5) == [[4, 2, 3, 0, 1]]
    # only distinct maps are drawn, as the training draw picks them; fewer than asked: those
    distinct = np.array([[1, 1, 0, 0, 0]])
    assert choose_detail_channels(m, distinct, 3) == [[0, 1]]
    assert choose_detail_channels(m, distinct, 1000) == [[0, 1]]
