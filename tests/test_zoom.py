"""The badge magnification of TASN's sampler on the synthetic set (tasn_gluon.reports.zoom)."""
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.errors import InputError
from tasn_gluon.engine.builders import build_net
from tasn_gluon.engine.config import resolve_config
from tasn_gluon.engine.seeds import seed_everything
from tasn_gluon.reports.zoom import axis_magnification, badge_boxes, badge_magnification

from conftest import real_config


def test_axis_magnification_of_a_plain_resize_is_one():
    coords = (np.arange(16) + 0.5) * 4 - 0.5            # 64 -> 16 with half-pixel centres
    assert axis_magnification(coords, 8, 24, 64, 16) == pytest.approx(1.0)
    zoomed = np.concatenate([np.linspace(8, 23, 12), np.linspace(30, 60, 4)])
    assert axis_magnification(zoomed, 8, 24, 64, 16) == pytest.approx(3.0)


def test_badge_boxes_follow_the_input_size(tiny_synthetic):
    native = badge_boxes(tiny_synthetic, 96)              # the set is rendered at 96 px
    half = badge_boxes(tiny_synthetic, 48)
    assert len(native) == 12 and np.allclose(np.array(native) / 2, half)
    with pytest.raises(InputError, match='synthetic.json'):
        badge_boxes(str(tiny_synthetic) + '-missing', 96)


def test_untrained_tasn_magnification(tiny_synthetic, tmp_path):
    seed_everything(0)
    cfg = resolve_config(real_config(tiny_synthetic, tmp_path, input_size=96, num_classes=4))
    net = build_net(cfg, [mx.cpu()])
    mags = badge_magnification(net, tiny_synthetic, batch_size=5)
    assert mags.shape == (12,) and np.all(np.isfinite(mags))
    assert np.all(mags > 0) and np.all(mags <= 4.0 + 1e-6)   # dense = 4 caps the zoom
