"""make demo's engine (tasn_gluon.reports.demo.run_demo) end to end on the tiny synthetic set
with small sizes: both methods trained (the baseline in a background process) and evaluated, the
table, curves, pictures and summary; a failed background training is reported."""
import json
import math
import os
import re

import cv2
import pytest

from tasn_gluon.engine.metrics import read_metrics_csv
from tasn_gluon.reports.demo import _start_in_background, _wait_for, run_demo

from conftest import NO_AUG


@pytest.mark.multiprocess   # the baseline trains in a background process
def test_demo_end_to_end(tiny_synthetic, tmp_path, capsys):
    out = str(tmp_path / 'demo')
    settings = dict(net='resnet18', input_size=64, att_size=32, sample_size=32, lr=0.01,
                    max_batches_per_epoch=2, num_data_threads=1, aug=dict(NO_AUG))
    summary = run_demo(out, data_dir=tiny_synthetic, epochs=1, batch_size=4, progress=False,
                       settings=settings)
    for name in ('comparison.md', 'curves.png', 'summary.json', 'eval_tasn.json',
                 'eval_baseline.json', 'tasn/metrics.csv', 'tasn/train.log',
                 'baseline/metrics.csv', 'baseline/train.log', 'demo.log'):
        assert os.path.isfile(os.path.join(out, name)), name
    # one picture per class; only the final parameters are kept (no optimizer states)
    assert sorted(os.listdir(os.path.join(out, 'vis'))) == ['vis_%03d.png' % i for i in range(4)]
    for method in ('tasn', 'baseline'):
        kept = sorted(f for f in os.listdir(os.path.join(out, method)) if f.startswith('epoch-'))
        assert kept == ['epoch-0001.json', 'epoch-0001.params'], kept
    assert json.load(open(os.path.join(out, 'summary.json'))) == summary
    top1 = {}
    for method in ('tasn', 'baseline'):
        assert summary['runs'][method]['num_images'] == 12       # every val image once
        saved = json.load(open(os.path.join(out, 'eval_%s.json' % method)))
        top1[method] = saved['top1']
        # the summary reports the saved evaluation, a whole number of the 12 images
        assert summary['runs'][method]['top1'] == saved['top1'], method
        assert abs(12 * saved['top1'] - round(12 * saved['top1'])) < 1e-9, saved['top1']
        # the final parameters are the last epoch's, and the evaluation counts every image once
        rows = read_metrics_csv(os.path.join(out, method, 'metrics.csv'))
        assert [r['epoch'] for r in rows] == [1] and rows[0]['num_val_images'] == 12
    assert summary['tasn_minus_baseline_points'] == pytest.approx(
        100 * (top1['tasn'] - top1['baseline']))
    # the table shows both evaluations (ours top-1, labelled by method)
    table = open(os.path.join(out, 'comparison.md')).read()
    for method in ('tasn', 'baseline'):
        assert re.search(r'\| %.2f \|  \| %s \|' % (100 * top1[method], method), table), table
    # the pictures: one per class, each a readable image, as the summary lists them
    assert summary['visualisations'] == [os.path.join(out, 'vis', 'vis_%03d.png' % i)
                                         for i in range(4)]
    for path in summary['visualisations'] + [os.path.join(out, 'curves.png')]:
        picture = cv2.imread(path)
        assert picture is not None and min(picture.shape[:2]) >= 100, path
    from tasn_gluon.reports.zoom import checkpoint_badge_magnification
    assert summary['badge_magnification'] == pytest.approx(
        checkpoint_badge_magnification(os.path.join(out, 'tasn'), tiny_synthetic))
    printed = capsys.readouterr().out
    assert 'TASN (master_aux)' in printed and 'magnifies the badge' in printed
    # what the numbers mean: 4 classes = 2 colours x 2 textures here
    assert 'chance: 25.0%' in printed and 'colour alone: 50.0%' in printed
    assert 'points of sampling noise' in printed
    assert '### synthetic (built-in)' in open(os.path.join(out, 'comparison.md')).read()


@pytest.mark.multiprocess
def test_a_failed_background_training_is_reported(tmp_path):
    log = str(tmp_path / 'run' / 'train.log')
    proc, seconds = _start_in_background(dict(dataset='synthetic', progress=False,
                                              data_dir=str(tmp_path / 'missing'),
                                              out=str(tmp_path / 'run')))
    with pytest.raises(RuntimeError, match='training the baseline failed .* see %s'
                       % re.escape(log)):
        _wait_for(proc, seconds, log)
    assert proc.exitcode not in (0, None) and math.isnan(seconds.value)
