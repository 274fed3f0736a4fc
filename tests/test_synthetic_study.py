"""bench/synthetic_study.py on the tiny synthetic set with small sizes: it trains the variants it
is given, and --only-finished tabulates the finished runs without training anything."""
import json
import os
import subprocess
import sys

import pytest

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
    assert summary['tasn']['train_seconds'][0] > 0          # the run's own time, not this call's
    assert '| tasn | TASN' in done.stdout and 'TASN - baseline:' in done.stdout
    assert _study(*small, '--seeds', '5', '--only-finished').returncode == 2   # nothing finished
