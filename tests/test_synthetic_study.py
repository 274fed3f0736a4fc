"""bench/synthetic_study.py on the tiny synthetic set with small sizes: it trains the variants it
is given, and --only-finished tabulates the finished runs without training anything."""
import importlib.util
import json
import os

from test_train_support import tiny_synthetic  # noqa: F401 (fixture)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _study():
    spec = importlib.util.spec_from_file_location(
        'synthetic_study', os.path.join(ROOT, 'bench', 'synthetic_study.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_trains_then_tabulates_finished_runs(tiny_synthetic, tmp_path, capsys):
    study, out = _study(), str(tmp_path / 'study')
    small = ['--out', out, '--data-dir', tiny_synthetic, '--epochs', '1', '--batch-size', '4',
             '--input-size', '64', '--att-size', '32', '--sample-size', '32', '--no-progress']
    assert study.main(small + ['--seeds', '0', '--variants', 'tasn,baseline']) == 0
    assert sorted(os.listdir(out)) == ['baseline-seed0', 'synthetic_study.json',
                                       'synthetic_study.md', 'synthetic_study.png', 'tasn-seed0']
    capsys.readouterr()
    assert study.main(small + ['--seeds', '0,1', '--variants', 'tasn,baseline,tasn-no-kd',
                               '--only-finished']) == 0
    assert not os.path.exists(os.path.join(out, 'tasn-seed1'))         # nothing trained
    assert not os.path.exists(os.path.join(out, 'tasn-no-kd-seed0'))
    summary = json.load(open(os.path.join(out, 'synthetic_study.json')))['summary']
    assert sorted(summary) == ['baseline', 'tasn']
    assert summary['tasn']['seeds'] == [0] and len(summary['tasn']['badge_magnification']) == 1
    assert summary['tasn']['train_seconds'][0] > 0          # the run's own time, not this call's
    table = capsys.readouterr().out
    assert '| tasn | TASN' in table and 'TASN - baseline:' in table
    assert study.main(small + ['--seeds', '5', '--only-finished']) == 2     # nothing finished
