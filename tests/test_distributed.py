"""Multi-worker training through tools/train.py on 127.0.0.1: MXNet's parameter server
(scheduler + one server + two workers started by tools/launch.py, ``--kvstore dist_sync``).

Every worker runs tools/train.py's ``main`` inside a small wrapper (written by the test) that
records what the trainer does not write on workers other than rank 0: the labels of the training
batches the worker read and its parameters at the end. The tiny set has one training image per
class, so a label names an image. Afterwards the two workers must hold identical trainable
parameters, equal to rank 0's checkpoint and different from the initial ones, and must have read
disjoint shards that together cover the training set.

The job has a time limit (the launcher's ``--timeout``, and the test's own), uses only
127.0.0.1, runs in its own session and is killed as a group whatever happens.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap

import mxnet as mx
import numpy as np
import pytest

from test_launch import assert_group_gone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 8  # = training images: one per class

# Run by every process of the job. Scheduler and server never get past `import mxnet` (MXNet's
# kvstore server runs and exits inside it); workers train through tools/train.py.
WRAPPER = textwrap.dedent('''
    import json, os, sys
    import mxnet as mx
    sys.path.insert(0, {root!r})
    sys.path.insert(0, os.path.join({root!r}, 'tools'))
    from tasn_gluon.engine import training
    import train as train_cli

    seen = dict(labels=[], shards=[])
    state = {{}}
    build_net, get_dataloader = training.build_net, training.get_dataloader

    class Recording:
        """The training iterator, noting the labels of every batch it gives."""
        def __init__(self, it):
            self.it = it
        def __iter__(self):
            for batch in self.it:
                seen['labels'].append(batch.label[0].asnumpy().astype(int).tolist())
                yield batch
        def __getattr__(self, name):
            return getattr(self.it, name)

    def recording_get_dataloader(*args, **kwargs):
        seen['shards'].append([kwargs.get('num_parts'), kwargs.get('part_index')])
        return Recording(get_dataloader(*args, **kwargs))

    def keeping_build_net(*args, **kwargs):
        state['net'] = net = build_net(*args, **kwargs)
        return net

    training.get_dataloader = recording_get_dataloader
    training.build_net = keeping_build_net
    if sys.argv[1:2] == ['--args-file']:  # horovodrun would parse --net etc. itself
        with open(sys.argv[2]) as f:
            argv = json.load(f)
    else:
        argv = sys.argv[1:]
    out = argv[argv.index('--out') + 1]
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, 'pid-%d' % os.getpid()), 'w').close()  # for the test's clean-up
    code = train_cli.main(argv)
    if 'net' in state and seen['shards']:
        rank = seen['shards'][0][1]
        state['net'].save_parameters(os.path.join(out, 'worker-%d.params' % rank))
        with open(os.path.join(out, 'worker-%d.json' % rank), 'w') as f:
            json.dump(dict(seen, pid=os.getpid(), code=code), f)
    sys.exit(code)
''')


@pytest.fixture(scope='module')
def one_image_per_class(tmp_path_factory):
    from tasn_gluon.data.synthetic import make_synthetic_dataset
    d = str(tmp_path_factory.mktemp('dist_data'))
    make_synthetic_dataset(d, num_classes=NUM_CLASSES, per_class_train=1, per_class_val=1,
                           image_size=96, seed=0, num_threads=1)
    return d


def train_args(data_dir, out, kvstore):
    return ['--kvstore', kvstore, '--dataset', 'synthetic', '--data-dir', data_dir,
            '--method', 'tasn', '--net', 'resnet18', '--input-size', '64', '--att-size', '32',
            '--sample-size', '32', '--batch-size', '2', '--eval-batch-size', '8',
            '--epochs', '2', '--lr', '0.05', '--lr-steps', '100', '--out', out,
            '--no-progress', '--num-data-threads', '1', '--log-interval', '1', '--seed', '0']


def run_group(cmd, timeout, env=None):
    """Runs ``cmd`` in a new session; kills the whole group afterwards, whatever happened.
    Returns (exit code or None on timeout, output)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=ROOT, env=env)
    try:
        try:
            output, _ = proc.communicate(timeout=timeout)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
            code = None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return code, output, proc.pid


def kill_leftovers(out, wrapper):
    """Kills the workers the wrapper recorded (pid-N files) that still run it, in case a
    launcher moved them out of the test's process group (Horovod's does)."""
    if not os.path.isdir(out):
        return
    for name in os.listdir(out):
        if not name.startswith('pid-'):
            continue
        pid = int(name[4:])
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                if str(wrapper).encode() not in f.read():
                    continue  # gone, and the number reused by another program
            os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass


def check_workers(out):
    """Both workers: identical trainable parameters (= rank 0's checkpoint, != the initial
    ones) and disjoint shards covering the training set."""
    records = []
    for rank in (0, 1):
        with open(os.path.join(out, 'worker-%d.json' % rank)) as f:
            records.append(json.load(f))
    assert [r['code'] for r in records] == [0, 0]
    assert [r['shards'][0] for r in records] == [[2, 0], [2, 1]]
    labels = [set(sum(r['labels'], [])) for r in records]
    assert labels[0].isdisjoint(labels[1]), labels
    assert labels[0] | labels[1] == set(range(NUM_CLASSES)), labels
    # every epoch reads the worker's whole shard (4 images, 2 batches of 2)
    for r in records:
        assert len(r['labels']) == 4 and all(len(b) == 2 for b in r['labels'])
        assert set(sum(r['labels'][:2], [])) == set(sum(r['labels'][2:], []))

    p0 = mx.nd.load(os.path.join(out, 'worker-0.params'))
    p1 = mx.nd.load(os.path.join(out, 'worker-1.params'))
    ckpt = mx.nd.load(os.path.join(out, 'epoch-0002.params'))
    assert sorted(p0) == sorted(p1) == sorted(ckpt)
    trainable = [k for k in p0 if not k.endswith(('running_mean', 'running_var'))]
    assert len(trainable) > 50
    for k in trainable:
        np.testing.assert_array_equal(p0[k].asnumpy(), p1[k].asnumpy(), err_msg=k)
        np.testing.assert_array_equal(p0[k].asnumpy(), ckpt[k].asnumpy(), err_msg=k)
    # BatchNorm statistics are each worker's own (not synchronised); rank 0's are saved
    stats = [k for k in p0 if k.endswith('running_mean')]
    assert any(not np.array_equal(p0[k].asnumpy(), p1[k].asnumpy()) for k in stats)
    with open(os.path.join(out, 'epoch-0002.json')) as f:
        history = json.load(f)['history']
    assert len(history) == 2 and all(np.isfinite(h['train_loss']) for h in history)
    return p0


def write_wrapper(tmp_path):
    wrapper = tmp_path / 'worker.py'
    wrapper.write_text(WRAPPER.format(root=ROOT))
    return wrapper


def assert_trained(out, final):
    """Training changed the parameters: compare with a fresh network of the same seed."""
    from tasn_gluon.engine.training import build_net, epoch_seed, seed_everything
    with open(os.path.join(out, 'config.json')) as f:
        cfg = json.load(f)
    seed_everything(epoch_seed(cfg['seed'], -1, 0))
    init = build_net(cfg, cfg['num_classes'], [mx.cpu()])._collect_params_with_prefix()
    changed = [k for k, p in init.items() if not k.endswith(('running_mean', 'running_var'))
               and not np.array_equal(p.data().asnumpy(), final[k].asnumpy())]
    assert len(changed) > 50, changed


def run_dist_sync(wrapper, args, out):
    """tools/launch.py: scheduler + 1 server + 2 workers on 127.0.0.1 running the wrapper."""
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'launch.py'), '-n', '2', '-s', '1',
           '--host', '127.0.0.1', '--interface', 'lo', '--timeout', '240', '--',
           sys.executable, str(wrapper)] + args
    try:
        code, output, pgid = run_group(cmd, timeout=300)
        assert code == 0, output[-6000:]
        assert_group_gone(pgid)
        assert 'kvstore dist_sync; worker 0 of 2' in output, output[-3000:]
    finally:
        kill_leftovers(out, wrapper)
    return output


def test_dist_sync_two_workers(one_image_per_class, tmp_path):
    wrapper = write_wrapper(tmp_path)
    out = str(tmp_path / 'run')
    run_dist_sync(wrapper, train_args(one_image_per_class, out, 'dist_sync'), out)
    final = check_workers(out)
    assert_trained(out, final)
