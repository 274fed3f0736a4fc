"""Shared fixtures of the suite: the operator library check, the tiny synthetic set and two runs
trained on it, the engine's stand-ins, and running the command lines as a user does."""
import importlib
import inspect
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY = dict(num_classes=4, per_class_train=6, per_class_val=3, image_size=96, seed=0)
NO_AUG = dict(rand_mirror=False, max_rotate_angle=0, brightness=0, contrast=0, saturation=0,
              pca_noise=0)


def pytest_configure(config):
    """A missing operator library fails the whole run the same way, at start, with the command
    that builds it (rather than a skip in one module and a crash in another)."""
    from tasn_gluon import ops
    from tasn_gluon.errors import SetupError
    try:
        ops.load()
    except SetupError as e:
        raise pytest.UsageError(str(e))


def pytest_collection_modifyitems(config, items):
    """A test that runs a command line (the ``tool`` fixture) starts a process: multiprocess."""
    for item in items:
        if 'tool' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.multiprocess)


def run_tool(name, *args, env=None, timeout=600, cwd=None):
    """Runs ``python tools/NAME.py ARGS`` as a user would; returns the CompletedProcess (text
    output in ``stdout``/``stderr``, the exit status in ``returncode``)."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1')
    full_env.update(env or {})
    return subprocess.run([sys.executable, os.path.join(ROOT, 'tools', name + '.py')]
                          + [str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


def snapshot(folder):
    """{relative path: SHA-256} of every file under ``folder`` (what a refused command must
    leave as it was)."""
    import hashlib
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            p = os.path.join(root, f)
            with open(p, 'rb') as fh:
                out[os.path.relpath(p, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def clean_error(done, *words):
    """A refused command line: exit status 2, one ``error:`` line naming ``words``, no
    traceback, no abort."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert 'Traceback' not in done.stderr and 'terminate called' not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith('error:') or
              ': error: ' in line]
    assert len(errors) == 1, done.stderr[-2000:]
    for w in words:
        assert w in errors[0], (w, done.stderr[-2000:])


def official_parameters():
    """Every (kind, name, shape) of the official graph, from the TSV the package ships
    (``symbols.TSV_PATH``)."""
    from symbols import TSV_PATH
    rows = []
    with open(TSV_PATH) as f:
        for line in f:
            if line.startswith('#') or line.startswith('kind\t') or not line.strip():
                continue
            kind, name, shape = line.split()
            rows.append((kind, name, tuple(int(s) for s in shape.split('x'))))
    assert len(rows) > 300
    return rows


def _random_value(rs, kind, name, shape):
    """Values that keep activations in range through ResNet-50: He-scaled weights, BN
    statistics near (0, 1); the input BN's variance matches mean-subtracted 0..255 pixels."""
    if name.endswith('moving_var'):
        return rs.uniform(2000, 4000, shape) if 'bn_data' in name else rs.uniform(0.5, 1.5, shape)
    if name.endswith('moving_mean'):
        return rs.normal(0, 0.1, shape)
    if name.endswith('gamma'):
        return rs.uniform(0.5, 1.0, shape)
    if name.endswith(('beta', 'bias')):
        return rs.normal(0, 0.05, shape)
    import numpy as np
    fan_in = int(np.prod(shape[1:]))
    return rs.normal(0, np.sqrt(1.0 / fan_in), shape)


def fabricate(rows, seed=0):
    """Seeded values for (kind, name, shape) rows: {'arg:NAME' / 'aux:NAME': float32 array}, a
    Module checkpoint's content (e.g. of the official graph, from official_parameters())."""
    import numpy as np
    rs = np.random.RandomState(seed)
    return {'%s:%s' % (kind, name): _random_value(rs, kind, name, shape).astype(np.float32)
            for kind, name, shape in rows}


@pytest.fixture(scope='session')
def tool():
    return run_tool


def real_config(data_dir, out, **kw):
    """A tiny real run: ResNet-18, input 64, attention 32, samples 32, batch 4."""
    cfg = dict(dataset='synthetic', data_dir=data_dir, net='resnet18', method='tasn',
               batch_size=4, epochs=1, lr=0.01, lr_steps='100', momentum=0.9, wd=0.0,
               input_size=64, att_size=32, sample_size=32, out=str(out), progress=False,
               log_interval=100, keep_checkpoints=0, num_data_threads=2, eval_batch_size=12,
               aug=dict(NO_AUG))
    cfg.update(kw)
    return cfg


@pytest.fixture(scope='session')
def tiny_synthetic(tmp_path_factory):
    """A tiny packed synthetic set made by the library (4 classes, 24 train, 12 val, 96 px)."""
    from tasn_gluon.data.synthetic import make_synthetic_dataset
    d = str(tmp_path_factory.mktemp('tiny_synthetic'))
    make_synthetic_dataset(d, num_threads=2, **TINY)
    return d


@pytest.fixture(scope='session')
def trained_runs(tiny_synthetic, tmp_path_factory):
    """A TASN and a baseline run of one short epoch on the tiny set: {method: run_dir}."""
    from tasn_gluon.engine import run
    root = tmp_path_factory.mktemp('trained_runs')
    runs = {}
    for method in ('tasn', 'baseline'):
        cfg = real_config(tiny_synthetic, root / method, method=method, epochs=1,
                          max_batches_per_epoch=2)
        run(cfg)
        runs[method] = cfg['out']
    return runs


@pytest.fixture(scope='session')
def one_image_per_class(tmp_path_factory):
    """A synthetic set of 8 classes with one training and one val image each (jobs.py)."""
    import jobs
    return jobs.make_one_image_per_class(str(tmp_path_factory.mktemp('dist_data')))


@pytest.fixture
def fake_engine(monkeypatch):
    """The engine with the stand-ins of tests/fakes.py in place of the real model and data
    (same signatures, checked here, so that a stand-in cannot drift from what it replaces)."""
    import fakes
    for module_name, names in fakes.REPLACEMENTS.items():
        module = importlib.import_module(module_name)
        for name, fake in names.items():
            real = getattr(module, name)
            assert list(inspect.signature(fake).parameters) == \
                list(inspect.signature(real).parameters), 'fake %s drifted' % name
            monkeypatch.setattr(module, name, fake)
    return fakes


@pytest.fixture
def synthetic_cache(monkeypatch, tmp_path):
    """An empty cache folder for the built-in synthetic set ($TASN_CACHE)."""
    monkeypatch.setenv('TASN_CACHE', str(tmp_path / 'cache'))
    return os.path.join(str(tmp_path / 'cache'), 'synthetic')


def raw_records(data_dir, split):
    """Every record of ``split`` as MXNet's indexed reader returns it, in key order."""
    import mxnet as mx
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(data_dir, split + '.idx'),
                                        os.path.join(data_dir, split + '.rec'), 'r')
    try:
        return [rec.read_idx(key) for key in sorted(rec.keys)]
    finally:
        rec.close()


def val_records(data_dir):
    """(JPEG bytes, label) of every val record, in file order, as stored in val.rec."""
    import mxnet as mx
    out = []
    for record in raw_records(data_dir, 'val'):
        header, payload = mx.recordio.unpack(record)
        out.append((payload, int(header.label)))
    return out


def randomize_bn_stats(net, seed=0):
    """Non-trivial BatchNorm statistics and (trainable) scales and shifts, so that a weight
    mapping that mixes them up is caught."""
    import mxnet as mx
    import numpy as np
    rng = np.random.RandomState(seed)
    for name, p in net.collect_params().items():
        if name.endswith('running_mean'):
            p.set_data(mx.nd.array(rng.uniform(-0.5, 0.5, p.shape)))
        elif name.endswith('running_var'):
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))
        elif name.endswith(('gamma', 'beta')) and p.grad_req != 'null':
            p.set_data(mx.nd.array(rng.uniform(0.5, 1.5, p.shape)))


def assert_same_checkpoints(run_a, run_b, history_keys=('train_loss',)):
    """The latest checkpoints of two runs are bit-identical: every parameter, the trainer
    states file byte for byte, and ``history_keys`` of every history row. Returns both
    checkpoint records."""
    import mxnet as mx
    import numpy as np
    from tasn_gluon.engine import load_checkpoint
    ra, rb = load_checkpoint(run_a), load_checkpoint(run_b)
    pa, pb = mx.nd.load(ra['params_path']), mx.nd.load(rb['params_path'])
    assert sorted(pa) == sorted(pb)
    for k in pa:
        assert np.array_equal(pa[k].asnumpy(), pb[k].asnumpy()), k
    with open(ra['states_path'], 'rb') as fa, open(rb['states_path'], 'rb') as fb:
        assert fa.read() == fb.read()
    assert [[r[k] for k in history_keys] for r in ra['history']] == \
        [[r[k] for k in history_keys] for r in rb['history']]
    return ra, rb
