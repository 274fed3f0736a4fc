"""Nothing lost, nothing silent: what a user did that once overwrote a run, crashed the
interpreter or passed silently, run as the user ran it (the command lines in a subprocess, on
files damaged that way). Each case asserts the exit status, the message, and that nothing
outside the run folder changed."""
import json
import os
import shutil

import pytest

from tasn_gluon.engine import load_checkpoint, run

from conftest import clean_error, real_config, snapshot

TINY_RUN = ['--dataset', 'synthetic', '--net', 'resnet18', '--input-size', '64', '--att-size',
            '32', '--sample-size', '32', '--batch-size', '4', '--max-batches-per-epoch', '1',
            '--no-progress', '--num-data-threads', '1', '--eval-batch-size', '12']


@pytest.fixture
def one_epoch_run(tiny_synthetic, tmp_path):
    cfg = real_config(tiny_synthetic, tmp_path / 'runs' / 'C', epochs=1, max_batches_per_epoch=1)
    run(cfg)
    return cfg['out']


@pytest.mark.slow
def test_resume_of_a_copied_or_moved_run_trains_where_it_is(one_epoch_run, tmp_path, tool):
    """cp -r runs/C runs/D, then --resume runs/D: D is continued, C (whose directory D's saved
    config names) is not touched; mv runs/D runs/D_moved, then --resume runs/D_moved: runs/D is
    not recreated."""
    c, d = one_epoch_run, str(tmp_path / 'runs' / 'D')
    shutil.copytree(c, d)
    before = snapshot(c)
    done = tool('train', '--resume', d, '--epochs', '2')
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(d)['epoch'] == 2 and snapshot(c) == before
    moved = str(tmp_path / 'runs' / 'D_moved')
    os.rename(d, moved)
    done = tool('train', '--resume', moved, '--epochs', '3')
    assert done.returncode == 0, done.stderr[-3000:]
    assert load_checkpoint(moved)['epoch'] == 3 and not os.path.exists(d)
    assert snapshot(c) == before and sorted(os.listdir(str(tmp_path / 'runs'))) == \
        ['C', 'D_moved']
    with open(os.path.join(moved, 'config.json')) as f:
        assert json.load(f)['out'] == moved           # where it is now, for the record only


def _damaged_copy(src, dst, split, how):
    shutil.copytree(src, dst)
    rec = os.path.join(dst, split + '.rec')
    size = os.path.getsize(rec)
    if how == 'half, aligned':
        os.truncate(rec, size // 2 // 4 * 4)
    elif how == 'half, unaligned':
        os.truncate(rec, size // 2 // 4 * 4 + 1)
    else:  # 4000 bytes overwritten in the middle
        with open(rec, 'r+b') as f:
            f.seek(size // 2 - 2000)
            f.write(bytes(range(256)) * 15 + bytes(160))   # 4000 bytes
    return dst


@pytest.mark.parametrize('how,message', [('half, aligned', 'train.rec'),
                                         ('half, unaligned', 'train.rec'),
                                         ('4000 bytes overwritten', 'train.rec')])
def test_training_on_a_damaged_train_rec_is_refused(tiny_synthetic, tmp_path, tool, how,
                                                    message):
    data = _damaged_copy(tiny_synthetic, str(tmp_path / 'data'), 'train', how)
    out = str(tmp_path / 'run')
    done = tool('train', *TINY_RUN, '--data-dir', data, '--out', out, '--epochs', '1')
    clean_error(done, message)
    assert not os.path.exists(out)                   # a failed start leaves nothing behind


def test_eval_visualize_demo_on_a_truncated_val_rec(tiny_synthetic, trained_runs, tmp_path,
                                                    tool):
    data = _damaged_copy(tiny_synthetic, str(tmp_path / 'data'), 'val', 'half, aligned')
    before = snapshot(trained_runs['tasn'])
    clean_error(tool('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', data),
                 'val.rec')
    vis = str(tmp_path / 'vis')
    clean_error(tool('visualize', '--checkpoint', trained_runs['tasn'], '--data-dir', data,
                      '--out', vis), 'val.rec')
    assert not os.path.exists(vis) and snapshot(trained_runs['tasn']) == before
    clean_error(tool('demo', '--data-dir', data, '--out', tmp_path / 'demo', '--epochs', '1',
                      '--no-progress'), 'val.rec')


def test_a_damaged_params_file_is_refused_on_every_path(trained_runs, tiny_synthetic,
                                                        tmp_path, tool):
    """64 bytes of epoch-0001.params zeroed: eval of that file (and of the run) and export
    refuse it by the SHA-256 in its record."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(trained_runs['tasn'], run_dir)
    params = os.path.join(run_dir, 'epoch-0001.params')
    with open(params, 'r+b') as f:
        f.seek(os.path.getsize(params) // 2)
        f.write(b'\0' * 64)
    clean_error(tool('eval', '--checkpoint', params, '--data-dir', tiny_synthetic),
                 'does not match the SHA-256', 'epoch-0001.params')
    clean_error(tool('export', '--checkpoint', params, '--out', tmp_path / 'x'), 'SHA-256')
    assert not os.path.exists(str(tmp_path / 'x-symbol.json'))


def test_classes_of_model_and_data_must_agree(trained_runs, tiny_synthetic, tmp_path, tool):
    """An exported 4-class graph on a 6-class set, and on a 4-class set whose class names
    differ: refused, not scored."""
    from tasn_gluon.data.synthetic import make_synthetic_dataset
    from symbols.export import export_checkpoint
    prefix = str(tmp_path / 'export' / 'tasn')
    export_checkpoint(trained_runs['tasn'], prefix)
    six = make_synthetic_dataset(str(tmp_path / 'six'), num_classes=6, per_class_train=1,
                                 per_class_val=1, image_size=96, num_threads=1)
    clean_error(tool('eval', '--checkpoint', prefix + '-symbol.json', '--data-dir', six),
                 'has 4 classes but', 'has 6')
    renamed = str(tmp_path / 'renamed')
    shutil.copytree(tiny_synthetic, renamed)
    info_path = os.path.join(renamed, 'dataset.json')
    with open(info_path) as f:
        info = json.load(f)
    info['class_names'][2] = 'green-dots'
    with open(info_path, 'w') as f:
        json.dump(info, f)
    clean_error(tool('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', renamed),
                 'name their classes differently', 'green-dots')


def test_failed_starts_leave_nothing_and_stale_temporaries_go(one_epoch_run, tiny_synthetic,
                                                               tmp_path, tool):
    out = str(tmp_path / 'new_run')
    clean_error(tool('train', *TINY_RUN, '--data-dir', tmp_path / 'nonexistent', '--out', out),
                 'nonexistent')
    clean_error(tool('train', '--dataset', 'cub', '--data-dir', tmp_path, '--out', out),
                 '--pretrained', '--att-pretrained', '--from-scratch')
    clean_error(tool('train', *TINY_RUN, '--data-dir', tiny_synthetic, '--batch-size', 32,
                      '--last-batch', 'discard', '--out', out),
                 'no training step', '24 training images', '--batch-size 32')
    assert not os.path.exists(out)
    # a checkpoint write killed mid-way left a temporary file of a process that is gone; one of
    # a live process (this one) may be a write in progress and stays
    dead = os.path.join(one_epoch_run, '.epoch-0002.params.tmp-%d' % _a_dead_pid())
    alive = os.path.join(one_epoch_run, '.epoch-0002.states.tmp-%d' % os.getpid())
    for p in (dead, alive):
        open(p, 'wb').close()
    done = tool('train', '--resume', one_epoch_run, '--epochs', '2')
    assert done.returncode == 0, done.stderr[-3000:]
    assert not os.path.exists(dead) and os.path.exists(alive)
    assert 'left by a process that no longer runs' in open(
        os.path.join(one_epoch_run, 'train.log')).read()


def _a_dead_pid():
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    return p.pid


def test_train_help_shows_the_recipe_defaults(tool):
    """(Every tool's help, its description and defaults: tests/test_error_contract.py.)"""
    cub = tool('train', '--help').stdout
    syn = tool('train', '--dataset', 'synthetic', '--help').stdout
    assert cub.splitlines()[0].startswith('usage:')
    assert 'Train TASN (or the plain-backbone baseline) on a packed dataset.' in cub
    assert '(default: None)' not in cub + syn
    assert '(default for --dataset cub: 0.1)' in cub and '(default for --dataset cub: 300)' in cub
    assert '(default for --dataset synthetic: 0.05)' in syn and \
        '(default for --dataset synthetic: resnet18)' in syn


def test_compare_puts_a_toy_set_under_custom(trained_runs, tiny_synthetic, tmp_path, tool):
    """A 4-class set in CUB's layout (the eval JSON says cub) is not CUB-200-2011."""
    out = str(tmp_path / 'toy.json')
    done = tool('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                '--dataset', 'cub', '--out', out)
    assert done.returncode == 0, done.stderr[-2000:]
    table = tool('compare', out).stdout
    assert '87.9' not in table and '### custom data' in table and '4 classes' in table
