"""Errors that tell the truth, runs that cannot mix, flags that do what they say: every case
runs the command line as a user does (a subprocess) and asserts the exit status, the message
(it names the input) and that nothing outside the run folder changed.

The contract (README, tasn_gluon.cli): 0 done; 1 a bug, with its traceback; 2 a bad input, one
``error:`` line; 3 a diverged run; 4 done in part (predict: inputs skipped); 130 interrupted.
"""
import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, clean_error, real_config, run_tool, snapshot

TINY = ['--dataset', 'synthetic', '--net', 'resnet18', '--input-size', '64', '--att-size', '32',
        '--sample-size', '32', '--batch-size', '4', '--no-progress', '--num-data-threads', '1',
        '--eval-batch-size', '12']
TOOLS = ('train', 'eval', 'predict', 'export', 'visualize', 'compare', 'convert_official',
         'demo', 'im2rec', 'launch')


def _in_parallel(calls):
    """[tool(*args) for args in calls], two at a time (each is a process)."""
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda args: run_tool(*args), calls))


@pytest.fixture(scope='module')
def two_epoch_run(tiny_synthetic, tmp_path_factory):
    """A TASN run with the checkpoints of epochs 1 and 2 kept."""
    from tasn_gluon.engine import run
    cfg = real_config(tiny_synthetic, tmp_path_factory.mktemp('two') / 'run', epochs=2,
                      max_batches_per_epoch=1)
    run(cfg)
    return cfg['out']


@pytest.fixture(scope='module')
def exported(trained_runs, tmp_path_factory):
    from symbols.export import export_checkpoint
    prefix = str(tmp_path_factory.mktemp('export') / 'tasn')
    export_checkpoint(trained_runs['tasn'], prefix)
    return prefix


# ---------------------------------------------------------------------- the contract itself

_INJECTED = '''
import runpy, sys
sys.argv = sys.argv[1:]
import tasn_gluon.cli as cli
run = cli.run
def injected(parse_args, work, argv=None, **kwargs):
    def broken(args):
        raise ValueError('injected internal error 4711')
    return run(parse_args, broken, argv, **kwargs)
cli.run = injected
runpy.run_path(sys.argv[0], run_name='__main__')
'''


def _with_injected_bug(tool, *args):
    """Runs tools/TOOL.py with ARGS, its work replaced by one that raises a ValueError."""
    return subprocess.run([sys.executable, '-c', _INJECTED, os.path.join(ROOT, 'tools',
                                                                         tool + '.py')]
                          + [str(a) for a in args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@pytest.mark.multiprocess
def test_every_tool_keeps_the_contract(tmp_path, tiny_synthetic):
    """For every tool: --help exits 0 and describes the tool in one sentence; a flag value out of range is one error line, exit 2; a
    bug (an exception that is not the package's bad-input error) keeps its traceback and
    exits 1, never 2."""
    minimal = {'train': ['--out', tmp_path / 'r'], 'eval': ['--checkpoint', tmp_path,
                                                            '--data-dir', tmp_path],
               'predict': ['--checkpoint', tmp_path, 'x.jpg'],
               'export': ['--checkpoint', tmp_path, '--out', tmp_path / 'x'],
               'visualize': ['--images', 'x.jpg', '--out', tmp_path / 'v'],
               'compare': ['x.json'], 'convert_official': ['x.params', '--out', tmp_path / 'c'],
               'demo': ['--out', tmp_path / 'd'],
               'im2rec': ['--dataset', 'cub', '--root', tmp_path, '--out', tmp_path / 'o'],
               'launch': ['-n', '1', '--', 'true']}
    helps = _in_parallel([(t, '--help') for t in TOOLS])
    for tool, h in zip(TOOLS, helps):
        # usage, a one-sentence description, and real defaults (train's: tests/test_user_safety)
        assert h.returncode == 0 and h.stdout.startswith('usage:'), tool
        assert '(default: None)' not in h.stdout, tool
        description = ' '.join(h.stdout.split('\n\n')[1].split())   # argparse wraps it
        assert description.endswith('.') and '. ' not in description, (tool, description)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        bugs = list(pool.map(lambda t: _with_injected_bug(t, *minimal[t]), TOOLS))
    for tool, done in zip(TOOLS, bugs):
        assert done.returncode == 1, (tool, done.returncode, done.stderr[-1000:])
        assert 'Traceback' in done.stderr and 'injected internal error 4711' in done.stderr
        assert 'error: injected' not in done.stderr
    bad = _in_parallel([('demo', '--epochs', '0', '--out', tmp_path / 'd'),
                        ('visualize', '--images', 'x.jpg', '--out', tmp_path / 'v',
                         '--num-details', '-2'),
                        ('im2rec', '--dataset', 'folders', '--root', tmp_path, '--out',
                         tmp_path / 'o', '--split-seed', '-1'),
                        ('launch', '-n', '0', '--', 'true')])
    for done, flag in zip(bad, ('--epochs', '--num-details', '--split-seed', '--num-workers')):
        clean_error(done, flag)
    assert os.listdir(tmp_path) == []                         # nothing written by any of them


@pytest.mark.multiprocess
def test_an_internal_error_inside_eval_and_predict_is_a_bug(trained_runs, tiny_synthetic,
                                                            tmp_path):
    """A ValueError raised inside the forward pass (a bug, not a bad input) is not reported as
    an `error:` line with exit 2 but with its traceback and exit 1; a missing path still gets
    one error line and exit 2."""
    script = '''
import runpy, sys
sys.argv = sys.argv[1:]
from tasn_gluon.model_zoo import TASN, TASNPredictor
def broken(self, F, x):
    raise ValueError('injected internal error 4711')
TASN.heads_and_stats = TASNPredictor.hybrid_forward = broken   # validation's and predict's
runpy.run_path(sys.argv[0], run_name='__main__')
'''
    image = os.path.join(tmp_path, 'bird.jpg')
    import cv2
    import numpy as np
    cv2.imwrite(image, (np.random.RandomState(0).rand(80, 90, 3) * 255).astype(np.uint8))
    for tool, args in (('eval', ['--checkpoint', trained_runs['tasn'], '--data-dir',
                                 tiny_synthetic]),
                       ('predict', ['--checkpoint', trained_runs['tasn'], image])):
        done = subprocess.run([sys.executable, '-c', script,
                               os.path.join(ROOT, 'tools', tool + '.py')] + args,
                              capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert done.returncode == 1, (tool, done.returncode, done.stderr[-1500:])
        assert 'Traceback' in done.stderr and 'injected internal error 4711' in done.stderr
    clean_error(run_tool('eval', '--checkpoint', tmp_path / 'nope', '--data-dir',
                         tiny_synthetic), 'nope')


# ---------------------------------------------------------------------- runs cannot mix

@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_trainings_into_one_folder_cannot_mix(tiny_synthetic, tmp_path):
    """A second training into a folder that a live training owns is refused with one line
    naming the owner (two real processes); the first finishes undisturbed. A process killed
    with SIGKILL leaves no lock behind: the run resumes."""
    out = str(tmp_path / 'same')
    args = [sys.executable, os.path.join(ROOT, 'tools', 'train.py')] + TINY + [
        '--data-dir', tiny_synthetic, '--out', out]
    first = subprocess.Popen(args + ['--epochs', '3', '--max-batches-per-epoch', '2'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = os.path.join(out, '.run.lock')
    deadline = time.time() + 120
    while not (os.path.isfile(lock) and os.path.getsize(lock)) and time.time() < deadline:
        time.sleep(0.1)
    second = run_tool('train', *TINY, '--data-dir', tiny_synthetic, '--out', out,
                      '--epochs', '2', '--seed', '7')
    clean_error(second, out, 'in use by another run', 'process %d' % first.pid)
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    with open(os.path.join(out, 'config.json')) as f:
        cfg = json.load(f)
    assert cfg['epochs'] == 3 and cfg['seed'] == 0
    with open(os.path.join(out, 'metrics.csv')) as f:
        assert len(f.read().splitlines()) == 1 + 3
    assert 'seed 7' not in open(os.path.join(out, 'train.log')).read()
    # Ctrl-C while it trains: exit status 130, one line; killed: the kernel drops the lock
    for sig, status in ((signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)):
        resumed = subprocess.Popen([sys.executable, os.path.join(ROOT, 'tools', 'train.py'),
                                    '--resume', out, '--epochs', '30'],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_interruptible)
        _wait_for_owner(lock, resumed.pid)
        time.sleep(3)
        resumed.send_signal(sig)
        _, err = resumed.communicate(timeout=120)
        assert resumed.returncode == status, (sig, err[-2000:])
        if sig == signal.SIGINT:
            assert err.strip().splitlines()[-1] == 'interrupted', err[-2000:]
            assert 'Traceback' not in err, err[-2000:]
    done = run_tool('train', '--resume', out, '--epochs', '4')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'is damaged' not in done.stdout + done.stderr  # every checkpoint left intact


def _interruptible():
    # A job started in the background by a shell (as CI may be) inherits SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler: give the child Ctrl-C as a terminal has.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_owner(lock, pid, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with open(lock) as f:
                if json.load(f).get('pid') == pid:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError('process %d did not take %s within %d s' % (pid, lock, seconds))


# ---------------------------------------------------------------------- a damaged checkpoint

@pytest.mark.multiprocess
def test_a_damaged_newest_checkpoint_is_refused_unless_asked(two_epoch_run, tiny_synthetic,
                                                             tmp_path):
    """epoch-0002.params corrupted: eval, predict, export and visualize refuse the run, naming
    the file and epoch 1; --last-good (or the epoch file itself) uses epoch 1, and the eval
    JSON says so; --resume falls back, saying so."""
    run_dir = str(tmp_path / 'run')
    shutil.copytree(two_epoch_run, run_dir)
    params = os.path.join(run_dir, 'epoch-0002.params')
    with open(params, 'r+b') as f:
        f.seek(os.path.getsize(params) // 2)
        f.write(b'\0' * 64)
    before = snapshot(run_dir)
    image = os.path.join(tmp_path, 'x.png')
    shutil.copy(_any_png(tiny_synthetic), image)
    refused = _in_parallel([
        ('eval', '--checkpoint', run_dir, '--data-dir', tiny_synthetic),
        ('predict', '--checkpoint', run_dir, image),
        ('export', '--checkpoint', run_dir, '--out', tmp_path / 'x' / 'm'),
        ('visualize', '--checkpoint', run_dir, '--images', image, '--out', tmp_path / 'v')])
    for done in refused:
        clean_error(done, 'epoch-0002.params', 'epoch 1', '--last-good')
    assert not os.path.exists(tmp_path / 'x') and not os.path.exists(tmp_path / 'v')
    asked = _in_parallel([
        ('eval', '--checkpoint', run_dir, '--data-dir', tiny_synthetic, '--last-good', '--out',
         tmp_path / 'e.json'),
        ('eval', '--checkpoint', os.path.join(run_dir, 'epoch-0001.params'), '--data-dir',
         tiny_synthetic)])
    for done in asked:
        assert done.returncode == 0, done.stderr[-2000:]
        assert 'epoch 1' in done.stdout
    assert json.load(open(tmp_path / 'e.json'))['epoch'] == 1
    assert snapshot(run_dir) == before
    done = run_tool('train', '--resume', run_dir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'damaged' in done.stdout and 'using epoch 1' in done.stdout


def _any_png(data_dir):
    folder = os.path.join(data_dir, 'images', 'val')
    cls = sorted(os.listdir(folder))[0]
    return os.path.join(folder, cls, sorted(os.listdir(os.path.join(folder, cls)))[0])


# ---------------------------------------------------------------------- network flags

@pytest.mark.multiprocess
def test_network_flags_must_agree_with_a_saved_model(trained_runs, exported, tiny_synthetic,
                                                     tmp_path):
    """Flags that describe a network are for a bare .params file: on a run or an export they
    must agree with what it records; evaluating at another input size is asked for by name
    and stated in the output and the JSON."""
    image = _any_png(tiny_synthetic)
    graph = exported + '-symbol.json'
    refused = _in_parallel([
        ('eval', '--checkpoint', graph, '--data-dir', tiny_synthetic, '--method', 'baseline'),
        ('eval', '--checkpoint', graph, '--data-dir', tiny_synthetic, '--input-size', '128'),
        ('predict', '--checkpoint', trained_runs['tasn'], image, '--input-size', '96'),
        ('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
         '--method', 'baseline'),
        ('eval', '--checkpoint', graph, '--data-dir', tiny_synthetic, '--num-classes', '9'),
        ('export', '--checkpoint', trained_runs['tasn'], '--out', tmp_path / 'e' / 'm',
         '--net', 'vgg19')])
    for done, words in zip(refused, (('--method baseline', 'tasn'), ('--input-size 128', '64'),
                                     ('--input-size 96', '--override-input-size'),
                                     ('--method baseline',), ('--num-classes 9', '4'),
                                     ('--net vgg19', 'resnet18'))):
        clean_error(done, *words)
    done = run_tool('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
                    '--override-input-size', '96', '--out', tmp_path / 'e96.json')
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'trained at 64' in done.stdout
    result = json.load(open(tmp_path / 'e96.json'))
    assert result['input_size'] == 96 and result['trained_input_size'] == 64
    done = run_tool('predict', '--checkpoint', trained_runs['tasn'], image,
                    '--override-input-size', '96')
    assert done.returncode == 0 and 'trained at 64' in done.stderr


# ---------------------------------------------------------------------- out of range, not default

@pytest.mark.multiprocess
def test_zero_is_an_error_not_the_default(trained_runs, tiny_synthetic, tmp_path):
    out = tmp_path / 'run'
    refused = _in_parallel([
        ('demo', '--epochs', '0', '--out', tmp_path / 'demo'),
        ('train', *TINY, '--data-dir', tiny_synthetic, '--out', out,
         '--max-batches-per-epoch', '0'),
        ('train', *TINY, '--data-dir', tiny_synthetic, '--out', out, '--eval-batch-size', '0'),
        ('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
         '--batch-size', '0'),
        ('eval', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
         '--batch-size', '-3'),
        ('visualize', '--checkpoint', trained_runs['tasn'], '--data-dir', tiny_synthetic,
         '--num-images', '0', '--out', tmp_path / 'v')])
    for done, flag in zip(refused, ('--epochs', '--max-batches-per-epoch', '--eval-batch-size',
                                    '--batch-size', '--batch-size', '--num-images')):
        clean_error(done, flag, '>= 1')
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- bad input, not a crash

@pytest.mark.multiprocess
def test_bad_inputs_are_one_line_not_a_crash(trained_runs, tiny_synthetic, tmp_path):
    text = tmp_path / 'text.params'
    text.write_text('not parameters\n')
    empty = tmp_path / 'empty.params'
    empty.write_bytes(b'')
    eval_list = tmp_path / 'list.json'
    eval_list.write_text('[1, 2]')
    eval_abc = tmp_path / 'abc.json'
    eval_abc.write_text(json.dumps({'top1': 'abc', 'dataset': 'cub'}))
    eval_good = tmp_path / 'good.json'
    eval_good.write_text(json.dumps({'top1': 0.5, 'dataset': 'cub'}))
    out = tmp_path / 'run'
    run_dir = trained_runs['tasn']
    cases = [
        (('train', *TINY, '--data-dir', tiny_synthetic, '--out', out, '--lr', 'inf'),
         ('--lr', 'inf')),
        (('train', *TINY, '--data-dir', tiny_synthetic, '--out', out, '--num-data-threads',
          '-1'), ('--num-data-threads',)),
        (('train', *TINY, '--data-dir', tiny_synthetic, '--out', out, '--kvstore', 'dist_sync'),
         ('dist_sync', 'tools/launch.py', 'DMLC_NUM_WORKER')),
        (('train', '--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--out', out,
          '--pretrained', text, '--att-pretrained', text), ('text.params', 'not an MXNet')),
        (('train', '--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--out', out,
          '--pretrained', empty), ('empty.params',)),
        (('train', '--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--out', out,
          '--pretrained', tmp_path), ('--pretrained', 'is a folder, not a file')),
        (('train', *TINY, '--data-dir', tiny_synthetic, '--out', out, '--method', 'baseline',
          '--legacy-sampler'), ('--legacy-sampler', 'tasn only')),
        (('eval', '--checkpoint', os.path.join(run_dir, 'epoch-0001.states'), '--data-dir',
          tiny_synthetic), ('epoch-0001.states', 'not a model')),
        (('eval', '--checkpoint', os.path.join(run_dir, 'epoch-0001.json'), '--data-dir',
          tiny_synthetic), ('epoch-0001.json', 'not a model')),
        (('compare', eval_list), ('list.json', 'not an eval JSON')),
        (('compare', eval_abc), ('abc.json', "'abc'")),
        (('compare', eval_good, '--published', text), ('text.params', 'published')),
        (('visualize', '--checkpoint', run_dir, '--data-dir', tiny_synthetic, '--images',
          'x.png', '--out', tmp_path / 'v'), ('--images', '--data-dir')),
    ]
    results = _in_parallel([c for c, _ in cases])
    for done, (call, words) in zip(results, cases):
        clean_error(done, *words)
        assert 'Traceback (most recent call last)' not in done.stderr, call
    assert sorted(os.listdir(tmp_path)) == ['abc.json', 'empty.params', 'good.json',
                                            'list.json', 'text.params']


# ---------------------------------------------------------------------- writes where told

@pytest.mark.multiprocess
def test_nothing_is_written_where_it_does_not_belong(trained_runs, tmp_path):
    import fake_datasets as fake
    root = fake.make_fake_folders(str(tmp_path / 'images'), num_classes=2, per_class=3)
    before = snapshot(root)
    class_folder = os.path.join(root, sorted(os.listdir(root))[0])
    refused = _in_parallel([
        ('im2rec', '--dataset', 'folders', '--root', root, '--out', root),
        ('im2rec', '--dataset', 'folders', '--root', root, '--out',
         os.path.join(class_folder, 'rec')),
        ('export', '--checkpoint', trained_runs['tasn'], '--out', str(tmp_path / 'exp') + '/'),
        ('export', '--checkpoint', trained_runs['tasn'], '--out', tmp_path / 'exp2' / 'm',
         '--epoch', '-1'),
        ('demo', '--out', tmp_path / 'demo', '--batch-size', '0')])
    for done, words in zip(refused, (('--out', 'dataset'), ('--out', 'image'), ('--out',),
                                     ('--epoch',), ('--batch-size',))):
        clean_error(done, *words)
    assert snapshot(root) == before
    assert sorted(os.listdir(tmp_path)) == ['images']


@pytest.mark.multiprocess
def test_visualize_draws_only_the_distinct_maps(trained_runs, tiny_synthetic, tmp_path):
    """--num-details 1000 on a network whose X has 3 live channels (all others zero, one
    map): each picture has the structure row and one row per distinct map (216 px a row at
    72 dpi), not 1000."""
    import mxnet as mx
    from PIL import Image
    from tasn_gluon.engine.checkpoint import load_checkpoint, save_checkpoint
    record = load_checkpoint(trained_runs['tasn'])
    params = mx.nd.load(record['params_path'])
    bias = params['att_net.conv2.bias'].asnumpy()
    bias[3:] = -1e4                                  # X zero in every channel but 0, 1, 2
    params['att_net.conv2.bias'] = mx.nd.array(bias)
    weight = params['att_net.conv2.weight'].asnumpy()
    weight[3:] = 0
    params['att_net.conv2.weight'] = mx.nd.array(weight)
    run_dir = str(tmp_path / 'run')
    os.makedirs(run_dir)
    mx.nd.save(os.path.join(run_dir, 'src.params'), params)

    class Net:
        def save_parameters(self, path):
            shutil.copy(os.path.join(run_dir, 'src.params'), path)
    save_checkpoint(run_dir, 1, Net(), config=record['config'])
    os.remove(os.path.join(run_dir, 'src.params'))
    done = run_tool('visualize', '--checkpoint', run_dir, '--data-dir', tiny_synthetic,
                    '--num-images', '2', '--num-details', '1000', '--out', tmp_path / 'vis')
    assert done.returncode == 0, done.stderr[-2000:]
    pictures = done.stdout.split()
    assert len(pictures) == 2
    for p in pictures:
        rows = Image.open(p).size[1] / 216.0
        assert 2 <= rows <= 5, rows                  # the structure map + at most 4 maps


@pytest.mark.multiprocess
def test_im2rec_draws_no_progress_bar_into_a_pipe(tmp_path):
    import fake_datasets as fake
    root = fake.make_fake_folders(str(tmp_path / 'images'), num_classes=2, per_class=3)
    done = run_tool('im2rec', '--dataset', 'folders', '--root', root, '--out', tmp_path / 'rec',
                    '--num-thread', '1')
    assert done.returncode == 0, done.stderr[-2000:]
    assert '\r' not in done.stderr and '\r' not in done.stdout
    assert 'packed into' in done.stdout
