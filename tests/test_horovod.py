"""Horovod (Gloo, no MPI) data parallelism through tools/train.py --kvstore horovod: two
workers on localhost, launched by horovodrun. The same checks as test_distributed.py: identical
trainable parameters (= rank 0's checkpoint), disjoint shards covering the set, trained
parameters. Skipped where Horovod is not installed (``make setup HOROVOD=1`` installs it).

``horovod.mxnet`` loads its library with RTLD_GLOBAL, which puts libmxnet.so's own build of
MXNet's lib_api (the same symbol names as the operator library's copy of lib_api.cc) into the
global scope; the operator library is linked with ``-Wl,-Bsymbolic`` so that it keeps binding to
its own copy (without it, loading it after importing Horovod dies with SIGFPE)."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

import mxnet as mx
import numpy as np

from jobs import (ROOT, assert_trained, check_workers, initial_params, kill_leftovers,
                  run_dist_sync, run_group, train_args, write_wrapper)

pytestmark = pytest.mark.multiprocess


def _horovodrun():
    local = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    return local if os.path.isfile(local) else shutil.which('horovodrun')


def _horovod_missing():
    try:
        if importlib.util.find_spec('horovod') is None or \
                importlib.util.find_spec('horovod.mxnet') is None:
            return 'Horovod is not installed (make setup HOROVOD=1)'
    except (ImportError, ValueError):
        return 'Horovod is not installed (make setup HOROVOD=1)'
    if _horovodrun() is None:
        return 'horovodrun is not on PATH'
    return None


MISSING = _horovod_missing()
needs_horovod = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))


@needs_horovod
def test_operator_library_loads_after_horovod():
    code = ('import mxnet as mx\nimport horovod.mxnet as hvd\nhvd.init()\n'
            'from tasn_gluon import ops\n'
            'y = ops.att_sampler(mx.nd.ones((1, 1, 8, 8)), mx.nd.ones((1, 8)), mx.nd.ones((1, 8)),'
            ' 0.5)\nprint(y.shape, y.sum().asscalar())\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert '(1, 1, 4, 4) 16.0' in result.stdout


def run_horovod(wrapper, args, out, tmp_path):
    args_file = tmp_path / ('args_%d.json' % len(os.listdir(str(tmp_path))))
    args_file.write_text(json.dumps(args))  # horovodrun would take --net etc. for its own
    cmd = [_horovodrun(), '--gloo', '-np', '2', '-H', 'localhost:2', '--network-interface', 'lo',
           '--start-timeout', '120', sys.executable, str(wrapper), '--args-file', str(args_file)]
    env = dict(os.environ, HOROVOD_GLOO_IFACE='lo')
    try:
        code, output, _ = run_group(cmd, timeout=300, env=env)
        assert code == 0, output[-6000:]
        assert 'kvstore horovod; worker 0 of 2' in output, output[-3000:]
    finally:
        kill_leftovers(out, wrapper)  # horovodrun puts its workers in sessions of their own
    return output


@needs_horovod
def test_horovod_two_gloo_workers(one_image_per_class, tmp_path):
    wrapper = write_wrapper(tmp_path)
    out = str(tmp_path / 'run')
    run_horovod(wrapper, train_args(one_image_per_class, out, 'horovod'), out, tmp_path)
    final = check_workers(out)
    assert_trained(out, final)


def _one_step(data_dir, out, kvstore):
    args = train_args(data_dir, out, kvstore)
    args[args.index('--epochs') + 1] = '1'
    return args + ['--max-batches-per-epoch', '1', '--momentum', '0', '--wd', '0',
                   '--lr', '0.01']


@needs_horovod
def test_horovod_step_equals_dist_sync(one_image_per_class, tmp_path):
    """One plain SGD step on the same shards: Horovod must move the parameters exactly as the
    parameter server does (the mean gradient over both workers' images)."""
    wrapper = write_wrapper(tmp_path)
    outs = {kv: str(tmp_path / kv) for kv in ('dist_sync', 'horovod')}
    run_horovod(wrapper, _one_step(one_image_per_class, outs['horovod'], 'horovod'),
                outs['horovod'], tmp_path)
    run_dist_sync(wrapper, _one_step(one_image_per_class, outs['dist_sync'], 'dist_sync'),
                  outs['dist_sync'])
    init = initial_params(outs['horovod'])
    after = {kv: mx.nd.load(os.path.join(o, 'worker-0.params')) for kv, o in outs.items()}
    ratios = []
    for k, p in init.items():
        if k.endswith(('running_mean', 'running_var')):
            continue
        d_ps = after['dist_sync'][k].asnumpy() - p.data().asnumpy()
        d_hvd = after['horovod'][k].asnumpy() - p.data().asnumpy()
        if np.abs(d_ps).max() > 1e-6:
            ratios.append(np.linalg.norm(d_hvd) / np.linalg.norm(d_ps))
        np.testing.assert_allclose(
            d_hvd, d_ps, rtol=1e-3, atol=1e-3 * np.abs(d_ps).max() + 1e-9,
            err_msg='%s: the Horovod step is %.3g x the dist_sync step (median over parameters)'
                    % (k, np.median(ratios) if ratios else float('nan')))
