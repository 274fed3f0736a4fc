"""tools/visualize.py writes the Figure-4 style PNGs, for an untrained and a trained TASN."""
import importlib.util
import os

import cv2
import numpy as np

from test_train_support import tiny_synthetic, trained_runs  # noqa: F401 (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli():
    spec = importlib.util.spec_from_file_location('vis_cli',
                                                  os.path.join(ROOT, 'tools', 'visualize.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _is_png(path):
    with open(path, 'rb') as f:
        return f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_visualize_untrained_on_files(tmp_path, capsys):
    img = (np.random.RandomState(0).rand(80, 120, 3) * 255).astype(np.uint8)
    f = str(tmp_path / 'a.jpg')
    cv2.imwrite(f, img)
    out = str(tmp_path / 'vis')
    assert _cli().main(['--images', f, '--out', out, '--num-classes', '3', '--input-size', '64',
                        '--att-size', '32', '--sample-size', '32', '--num-details', '2']) == 0
    assert _is_png(os.path.join(out, 'vis_000.png'))
    assert _cli().main(['--images', str(tmp_path / 'none.jpg'), '--out', out, '--num-classes',
                        '3', '--input-size', '64', '--att-size', '32',
                        '--sample-size', '32']) == 2
    assert 'cannot read the image' in capsys.readouterr().err


def test_visualize_checkpoint_on_rec(tiny_synthetic, trained_runs, tmp_path, capsys):
    out = str(tmp_path / 'vis')
    assert _cli().main(['--checkpoint', trained_runs['baseline'], '--data-dir', tiny_synthetic,
                        '--out', out]) == 2
    assert 'only TASN' in capsys.readouterr().err
    assert _cli().main(['--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                        '--num-images', '2', '--out', out]) == 0
    assert sorted(os.listdir(out)) == ['vis_000.png', 'vis_001.png']
    assert all(_is_png(os.path.join(out, p)) for p in os.listdir(out))


def test_detail_channels_prefer_distinct_peaks():
    from tasn_gluon.engine.visualize import choose_detail_channels
    m = np.zeros((1, 5, 3, 3))
    m[0, 0, 0, 0], m[0, 1, 0, 0], m[0, 2, 1, 1], m[0, 3, 2, 2], m[0, 4, 0, 0] = 5, 4, 3, 1, 6
    assert choose_detail_channels(m, 3).tolist() == [[4, 2, 3]]
    assert choose_detail_channels(m, 5).tolist() == [[4, 2, 3, 0, 1]]
