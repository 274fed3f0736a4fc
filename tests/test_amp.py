"""Mixed precision (``--amp``, ``mxnet.contrib.amp``) on the CPU, where it computes in bfloat16.

``amp.init`` patches MXNet for the whole process and cannot be undone, so every case that
turns AMP on runs in a process of its own (tests/amp_jobs.py, or a command line) and is marked
``multiprocess``; the tests here that stay in the test process never call it. On a CPU without
oneDNN's bfloat16 kernels (no AVX-512: AMD Zen 2/3, older Intel) the bfloat16 runs are skipped
and the clear error that ``--amp`` gives there is tested instead.
"""
import json
import os
import platform

import cv2
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.engine import load_checkpoint, precision
from tasn_gluon.engine.config import resolve_config
from tasn_gluon.engine.models import load_model
from tasn_gluon.errors import ConfigError

import amp_jobs
from conftest import NO_AUG, assert_same_checkpoints, real_config

# bfloat16 keeps 8 significant bits: round-to-nearest changes a value by at most 2^-9 relative
U_BF16 = 2.0 ** -9


@pytest.fixture
def bf16():
    """Skips a test that runs bfloat16 on a CPU without oneDNN's bfloat16 kernels (the probe
    runs in a child process, once per test process: AMP stays off here)."""
    ok, why = precision.bfloat16_supported()
    if not ok:
        pytest.skip('no bfloat16 kernels on this CPU (%s): %s' % (precision.cpu_model(), why))


def _job(name, args, **kw):
    found, done = amp_jobs.run_job(name, args, **kw)
    assert done.returncode == 0, done.stderr[-3000:]
    return found


# ------------------------------------------------------------------------------ in process

def test_dtype_per_device_and_mixed_devices_refused():
    assert precision.amp_dtype_for([mx.cpu(0), mx.cpu(1)]) == 'bfloat16'
    assert precision.amp_dtype_for(mx.gpu(0)) == 'float16'    # no GPU needed to choose
    with pytest.raises(precision.AMPError, match='mix both'):
        precision.amp_dtype_for([mx.cpu(), mx.gpu(0)])
    with pytest.raises(precision.AMPError, match='at least one device'):
        precision.amp_dtype_for([])
    assert precision.amp_dtype() is None                     # nothing above turned AMP on


def test_amp_settings_checked():
    assert resolve_config({}).amp is False
    assert resolve_config(dict(amp=True)).amp is True
    with pytest.raises(ValueError, match='--amp is a switch'):
        resolve_config(dict(amp='yes'))
    with pytest.raises(ValueError, match='dist_async'):
        resolve_config(dict(amp=True, kvstore='dist_async'))


def test_exported_graph_refuses_amp():
    """An exported graph is read from JSON, which AMP's patched functions never see: refused
    before anything is turned on."""
    with pytest.raises(ConfigError, match='--amp applies to checkpoints'):
        load_model('nowhere/tasn-symbol.json', [mx.cpu()], amp=True)
    assert precision.amp_dtype() is None


# ------------------------------------------------------------------------------ in subprocesses

@pytest.mark.multiprocess
def test_enable_amp_once_and_the_loss_scaler(bf16):
    r = _job('api', {})
    assert r['before'] is None and r['dtype'] == r['again'] == 'bfloat16'
    # the sampler library is loaded before amp.init, and loading it again keeps AMP's patches
    assert not r['sampler_before'] and r['sampler_after'] and r['patched_after_load']
    assert 'already on with bfloat16' in r['other_dtype_error']
    # multi-precision SGD over float32 parameters: plain momentum states, no master copies
    assert r['multi_precision'] is True and r['param_dtypes'] == ['float32']
    assert r['state_kinds'] == ['NDArray']
    clean, over, after = r['clean'], r['overflow'], r['after_overflow']
    assert clean['moved'] and not clean['skipped'] and clean['state']['loss_scale'] == 2 ** 16
    # an infinite gradient: no update, the scale halves for the next step, the count restarts
    assert over['skipped'] and not over['moved']
    assert over['state']['next_loss_scale'] == 2 ** 15 and over['state']['unskipped'] == 0
    assert after['moved'] and after['state']['loss_scale'] == 2 ** 15
    # a new trainer starts afresh; the saved state (through JSON) puts it back exactly
    assert r['fresh']['loss_scale'] == 2 ** 16 and r['fresh']['unskipped'] == 0
    assert r['restored'] == r['saved'] == after['state']


@pytest.mark.multiprocess
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_maps_attention_and_sampler_compute_in_float32(dtype, request):
    """Features arriving in float16/bfloat16 (what AMP's convolutions give) are cast to
    float32 first: the distinct-map comparisons, the profiles, the maps and the sampled images
    are those of the float32 path on the same values, bit for bit, and float32. (On a CPU,
    AMP's own float16 wrappers cast nothing: the model's casts alone do it.)"""
    if dtype == 'bfloat16':
        request.getfixturevalue('bf16')
    r = _job('casts', dict(dtype=dtype))
    assert r['input_dtype'] == dtype
    assert r['dtypes'] == ['float32'] * 8 and all(r['equal']), r
    assert r['num_distinct'] == [13, 13]   # 16 maps, 4 zero channels one map: 13
    assert r['sampled_dtype'] == 'float32' and r['sampled_equal']


@pytest.mark.multiprocess
@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_training_graph_dtypes(dtype):
    """TASN's training graph under AMP, built as Symbols (float16, the GPU case, needs no GPU
    for that): every convolution and dense layer computes in the low precision; the spatial
    softmax in float32, the relation, its softmax and the keys of the maps in float64 (the
    default mode's identity of maps, tasn_gluon.maps), the combination of the two maps, the
    draw and the two sampler calls in float32; the five logits and the distinct-map count come
    out float32."""
    r = _job('graph', dict(dtype=dtype))
    inv = r['inventory']
    low = ','.join([dtype] * 2)
    assert inv.get('Convolution(%s)' % low, 0) == 42       # 21 per ResNet-18 (no bias)
    assert inv.get('Convolution(%s,%s)' % (low, dtype), 0) == 5   # the dilated head (bias)
    assert inv.get('FullyConnected(%s,%s)' % (low, dtype), 0) == 4
    assert inv['AttSampler(float32,float32,float32)'] == 2
    assert inv['softmax(float32)'] == 1          # the spatial softmax, row by row
    assert inv['softmax(float64)'] == 1          # the relation's, computed once (maps)
    assert inv['batch_dot(float64,float64)'] == 3  # relation, keys, weights @ relation
    assert inv['batch_dot(float32,float32)'] == 1  # the two maps from X, in one product
    assert inv['broadcast_equal(float32,float32)'] == 1  # the draw
    # nothing else: every watched operator is one of the kinds above
    assert sum(inv.values()) == 42 + 5 + 4 + 2 + 1 + 1 + 3 + 1 + 1, inv
    assert r['outputs'] == ['float32'] * 6


@pytest.mark.multiprocess
@pytest.mark.slow
def test_amp_training_loss_falls(bf16, tiny_synthetic, tmp_path):
    """The same first batch every epoch: under AMP the training loss falls as in float32
    (test_train_real's bound), every checkpoint records the loss scaler, parameters stay
    float32."""
    aug = dict(NO_AUG, shuffle=False)
    cfg = real_config(tiny_synthetic, tmp_path / 'run', epochs=4, max_batches_per_epoch=1,
                      aug=aug, amp=True)
    r = _job('train', dict(cfgs=[cfg]))[0]
    losses = [h['train_loss'] for h in r['history']]
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    assert r['param_dtypes'] == ['float32']
    s = r['amp_loss_scaler']
    assert s['dtype'] == 'bfloat16' and s['loss_scale'] == 2 ** 16 and s['unskipped'] == 4
    for e in range(1, 5):   # every epoch's record, not only the last
        with open(os.path.join(cfg['out'], 'epoch-%04d.json' % e)) as f:
            assert json.load(f)['amp_loss_scaler']['unskipped'] == e
    log = open(os.path.join(cfg['out'], 'train.log')).read()
    assert 'bfloat16 mixed precision (AMP)' in log


@pytest.mark.multiprocess
@pytest.mark.slow
def test_amp_resume_bit_identical(bf16, tiny_synthetic, tmp_path):
    """2 epochs straight vs 1 epoch + resume in a new process, all under AMP (shuffled,
    augmented, random detail maps): bit-identical parameters, trainer states, loss-scaler
    state and losses. The scaler's clean-step count (4 = 2 epochs x 2 steps) shows it was
    restored: a fresh scaler would stand at 2."""
    aug = dict(rand_mirror=True, brightness=0.4, max_rotate_angle=10)
    a = real_config(tiny_synthetic, tmp_path / 'a', epochs=2, max_batches_per_epoch=2,
                    lr_steps='1', aug=aug, amp=True)
    b = dict(a, out=str(tmp_path / 'b'), epochs=1)
    ra, rb = _job('train', dict(cfgs=[a, b]))
    assert rb['epoch'] == 1 and rb['amp_loss_scaler']['unskipped'] == 2
    rc = _job('train', dict(cfgs=[dict(resume=b['out'], epochs=2, progress=False)]))[0]
    assert rc['amp_loss_scaler'] == ra['amp_loss_scaler']
    assert rc['amp_loss_scaler']['unskipped'] == 4
    ca, cb = assert_same_checkpoints(a['out'], b['out'])
    assert ca['amp_loss_scaler'] == cb['amp_loss_scaler']


def _update_error(amp_arrays, method, f32, keep):
    """||(w1 - w0)_amp - (w1 - w0)_f32|| / ||(w1 - w0)_f32|| over the parameters ``keep``
    selects (one norm over all of them)."""
    err = ref = 0.0
    for k, w0 in f32['w0'].items():
        if f32['grad_req'][k] == 'null' or not keep(k):
            continue
        assert np.array_equal(amp_arrays['%s/w0/%s' % (method, k)], w0), k  # same start
        d_amp = amp_arrays['%s/w1/%s' % (method, k)] - w0
        d_f32 = f32['w1'][k] - w0
        err += float(np.sum((d_amp - d_f32) ** 2))
        ref += float(np.sum(d_f32 ** 2))
    return np.sqrt(err / ref)


@pytest.mark.multiprocess
@pytest.mark.slow
def test_amp_step_agrees_with_float32(bf16, tiny_synthetic, tmp_path):
    """One training step from the same parameters on the same batch (12 images) with the same
    random draws, under AMP (another process) and in float32 (here).

    Compared: (1) the logits of that step, max |z_amp - z_f32| / max |z_f32|, and (2) the
    update the step makes, ||dw_amp - dw_f32|| / ||dw_f32|| with dw = w1 - w0 over the
    parameters. Baseline: its logits and all parameters. TASN: the attention net's logits and
    parameters, which only CE(att) trains; its backbone is not compared, because the sampled
    images are not a continuous function of the features: which maps are one map is decided at
    float32 resolution (tasn_gluon.maps), bfloat16 convolutions move which channels of X are
    zero or alike (measured: different distinct-map counts per image and ~7% change in the
    profiles), and a different map is then drawn for the detail image.

    Bounds. Each convolution and dense layer rounds its input and its weight to bfloat16,
    2^-9 relative each; to first order, without cancellation, the errors add along the path:
    the attention logits pass 20 such layers (conv0, 16 in the body, the two dilated levels,
    fc), 40 roundings, the baseline's 18, 36. (1): <= 40 * 2^-9 = 7.8% (att), 36 * 2^-9 = 7.0%
    (baseline); measured over seeds 0-3 on this set: 1.3-3.8% and 2.4-3.8%. (2): the backward
    pass rounds as many times again, first order 2 x 40 * 2^-9 = 16%, but the training-mode
    BatchNorm backward over batch statistics of 12 images amplifies (measured 25-33%, already
    28% for the plain baseline); the bound is 50%, which still fails a skipped update (100%),
    a loss scale left in the gradient (65535x) or a sign error (200%). Lower bound: (1) is
    above 2^-12, i.e. bfloat16 really ran (float32 runs are bit-identical).
    """
    npz = str(tmp_path / 'amp.npz')
    _job('step', dict(methods=['tasn', 'baseline'], data_dir=tiny_synthetic,
                      out=str(tmp_path / 'amp'), npz=npz))
    amp = np.load(npz)
    for method, roundings, keep in (('tasn', 40, lambda k: k.startswith('att_')),
                                    ('baseline', 36, lambda k: True)):
        f32 = amp_jobs.one_step(tiny_synthetic, str(tmp_path / ('f32_' + method)), method,
                                False)
        z_amp, z_f32 = amp['%s/logits' % method], f32['logits']
        logit_err = np.abs(z_amp - z_f32).max() / np.abs(z_f32).max()
        assert 2.0 ** -12 < logit_err <= roundings * U_BF16, (method, logit_err)
        update_err = _update_error(amp, method, f32, keep)
        assert update_err <= 0.5, (method, update_err)
        assert f32['param_dtypes'] == ['float32']


@pytest.mark.multiprocess
@pytest.mark.slow
def test_amp_command_lines(bf16, tiny_synthetic, tmp_path, tool):
    out = str(tmp_path / 'run')
    done = tool('train', '--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--net',
                'resnet18', '--input-size', '64', '--att-size', '32', '--sample-size', '32',
                '--batch-size', '4', '--epochs', '1', '--max-batches-per-epoch', '2',
                '--no-progress', '--num-data-threads', '1', '--amp', '--out', out)
    assert done.returncode == 0, done.stderr
    assert 'mixed precision (AMP, mxnet.contrib.amp): bfloat16 on cpu(0)' in done.stdout
    log = open(os.path.join(out, 'train.log')).read()   # opened after the start: its summary
    assert 'precision: bfloat16 mixed precision (AMP), float32 parameters' in log
    assert load_checkpoint(out)['amp_loss_scaler']['dtype'] == 'bfloat16'
    res = str(tmp_path / 'eval.json')
    done = tool('eval', '--checkpoint', out, '--data-dir', tiny_synthetic, '--amp', '--out',
                res)
    assert done.returncode == 0, done.stderr
    assert 'bfloat16 mixed precision (AMP)' in done.stdout
    r = json.load(open(res))
    assert r['amp'] == 'bfloat16' and r['num_images'] == 12 and 0 <= r['top1'] <= 1
    image = str(tmp_path / 'bird.jpg')
    cv2.imwrite(image, (np.random.RandomState(0).rand(80, 100, 3) * 255).astype(np.uint8))
    done = tool('predict', '--checkpoint', out, image, '--amp', '--out', tmp_path / 'p.json')
    assert done.returncode == 0, done.stderr
    (p,) = json.load(open(str(tmp_path / 'p.json')))['predictions']
    probs = [t['probability'] for t in p['top']]
    assert len(probs) == 4 and abs(sum(probs) - 1) < 1e-9      # float64 softmax of all classes


@pytest.mark.multiprocess
@pytest.mark.skipif(platform.machine() not in ('x86_64', 'AMD64'),
                    reason='DNNL_MAX_CPU_ISA caps x86 instruction sets')
def test_amp_without_bfloat16_kernels_is_a_clear_error(tiny_synthetic, tmp_path, tool):
    """oneDNN limited to AVX2 (as on AMD Zen 2/3) has no bfloat16 convolution: --amp on the
    CPU is then one line naming the CPU, exit 2, nothing written."""
    out = str(tmp_path / 'run')
    done = tool('train', '--dataset', 'synthetic', '--data-dir', tiny_synthetic, '--net',
                'resnet18', '--input-size', '64', '--att-size', '32', '--sample-size', '32',
                '--batch-size', '4', '--epochs', '1', '--amp', '--out', out,
                env=dict(DNNL_MAX_CPU_ISA='AVX2'))
    assert done.returncode == 2, done.stderr
    assert 'bfloat16' in done.stderr and 'AVX-512' in done.stderr
    assert 'Traceback' not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not os.path.exists(out)
