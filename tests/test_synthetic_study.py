"""bench/synthetic_study.py on the tiny synthetic set with small sizes: it trains the variants it
is given, and --only-finished tabulates the finished runs without training anything."""
import json
import os
import subprocess
import sys

import cv2
import pytest

from tasn_gluon.data import read_dataset_info
from tasn_gluon.engine import find_checkpoint

from conftest import ROOT


def _study(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'synthetic_study.py')]
                          + [str(a) for a in args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_study_trains_then_tabulates_finished_runs(tiny_synthetic, tmp_path):
    out = str(tmp_path / 'study')
    small = ['--out', out, '--data-dir', tiny_synthetic, '--epochs', '1', '--batch-size', '4',
             '--input-size', '64', '--att-size', '32', '--sample-size', '32', '--no-progress']
    done = _study(*small, '--seeds', '0', '--variants', 'tasn,baseline')
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == ['baseline-seed0', 'synthetic_study.json',
                                       'synthetic_study.md', 'synthetic_study.png', 'tasn-seed0']
    done = _study(*small, '--seeds', '0,1', '--variants', 'tasn,baseline,tasn-no-kd',
                  '--only-finished')
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(os.path.join(out, 'tasn-seed1'))         # nothing trained
    assert not os.path.exists(os.path.join(out, 'tasn-no-kd-seed0'))
    summary = json.load(open(os.path.join(out, 'synthetic_study.json')))['summary']
    assert sorted(summary) == ['baseline', 'tasn']
    assert summary['tasn']['seeds'] == [0] and len(summary['tasn']['badge_magnification']) == 1
    num_val = read_dataset_info(tiny_synthetic)['num_val']
    for variant, s in summary.items():
        history = find_checkpoint(os.path.join(out, '%s-seed0' % variant))['history']
        # the run's own training time (it was reused, not retrained, by this call)
        assert s['train_seconds'] == [pytest.approx(sum(r['epoch_time_s'] for r in history))]
        top1 = s['per_seed'][0]      # a share of the val images, and the mean of one seed
        assert abs(top1 * num_val - round(top1 * num_val)) < 1e-9, top1
        assert s['mean'] == top1 and s['std'] == 0.0
        row = [line for line in done.stdout.splitlines() if line.startswith('| %s |' % variant)]
        assert len(row) == 1 and '| %.2f ± 0.00 | 0: %.2f |' % (100 * top1, 100 * top1) in row[0]
    assert summary['tasn']['badge_magnification'][0] > 0
    assert summary['baseline']['badge_magnification'] is None      # no sampler to magnify
    assert 'TASN - baseline: %+.2f points' % (
        100 * (summary['tasn']['mean'] - summary['baseline']['mean'])) in done.stdout
    assert open(os.path.join(out, 'synthetic_study.md')).read().strip() in done.stdout
    assert cv2.imread(os.path.join(out, 'synthetic_study.png')) is not None
    assert _study(*small, '--seeds', '5', '--only-finished').returncode == 2   # nothing finished
