"""Helpers of the multi-process tests (the launcher, dist_sync and Horovod jobs): running a job
in its own process group with bounded time and making sure nothing of it is left, the worker
wrapper that records what rank 0's checkpoint does not show, and the checks on the workers'
results. This module holds no tests."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import mxnet as mx
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 8  # = training images of the one-image-per-class set: one per class

# Run by every process of the job. Scheduler and server never get past `import mxnet` (MXNet's
# kvstore server runs and exits inside it); workers run tools/train.py as `python tools/train.py`
# would, with the engine's builders wrapped to record the batches and keep the network.
WRAPPER = textwrap.dedent('''
    import gc, json, os, runpy, sys
    import mxnet as mx
    from tasn_gluon.engine import builders

    seen = dict(labels=[], shards=[])
    state = {{}}
    build_net, train_loader = builders.build_net, builders.train_loader

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

    def recording_train_loader(cfg, data_dir, seed, num_parts=1, part_index=0,
                               color_on_device=False):
        seen['shards'].append([num_parts, part_index])
        return Recording(train_loader(cfg, data_dir, seed, num_parts, part_index,
                                      color_on_device))

    def keeping_build_net(cfg, ctx):
        state['net'] = net = build_net(cfg, ctx)
        return net

    builders.train_loader = recording_train_loader
    builders.build_net = keeping_build_net
    if sys.argv[1:2] == ['--args-file']:  # horovodrun would parse --net etc. itself
        with open(sys.argv[2]) as f:
            argv = json.load(f)
    else:
        argv = sys.argv[1:]
    out = argv[argv.index('--out') + 1]
    os.makedirs(out, exist_ok=True)
    open(os.path.join(out, 'pid-%d' % os.getpid()), 'w').close()  # for the test's clean-up
    tool = os.path.join({root!r}, 'tools', 'train.py')
    sys.argv = [tool] + argv
    try:
        runpy.run_path(tool, run_name='__main__')
        code = 0
    except SystemExit as e:
        code = e.code or 0
    if 'net' in state and seen['shards']:
        rank = seen['shards'][0][1]
        state['net'].save_parameters(os.path.join(out, 'worker-%d.params' % rank))
        with open(os.path.join(out, 'worker-%d.json' % rank), 'w') as f:
            json.dump(dict(seen, pid=os.getpid(), code=code), f)
    # the network's parameters lead to the trainer and its distributed kvstore, which must be
    # freed before the interpreter exits (as tools/train.py does)
    state.clear()
    gc.collect()
    sys.exit(code)
''')


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


def assert_group_gone(pgid):
    for _ in range(50):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail('processes of the job are still running')


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
    init = initial_params(out)
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


def initial_params(out):
    """The parameters the run in ``out`` started from (its seed, a fresh network)."""
    from tasn_gluon.engine.builders import build_net
    from tasn_gluon.engine.config import read_saved_config
    from tasn_gluon.engine.seeds import epoch_seed, seed_everything
    with open(os.path.join(out, 'config.json')) as f:
        cfg = read_saved_config(json.load(f), 'config.json')
    seed_everything(epoch_seed(cfg.seed, -1, 0))
    return build_net(cfg, [mx.cpu()])._collect_params_with_prefix()


def make_one_image_per_class(d):
    from tasn_gluon.data.synthetic import make_synthetic_dataset
    make_synthetic_dataset(d, num_classes=NUM_CLASSES, per_class_train=1, per_class_val=1,
                           image_size=96, seed=0, num_threads=1)
    return d
