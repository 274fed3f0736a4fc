"""Mixed precision (``--amp``) as MXNet 1.9.1's ``mxnet.contrib.amp`` does it.

``amp.init(target_dtype)`` rewrites the Python functions of ``mx.nd`` and ``mx.sym`` so that the
operators of its lists cast their inputs: ``Convolution`` and ``FullyConnected`` to the low
precision, softmax, reductions and the like to float32, element-wise ops with several inputs to
the widest of their types. The parameters stay float32: the casts of the weights are inserted
in the graph, and their gradients arrive in float32. float16 on GPUs (tensor cores), bfloat16
on CPUs (oneDNN; float32's exponent range, 8-bit significand).

Rules that follow from how AMP works, kept here in one place:

* ``amp.init`` patches the whole process and cannot be undone: :func:`enable_amp` calls it once,
  before any network is built (a hybridized graph built earlier keeps its float32 operators);
  a later call with the other dtype is an error.
* ``mx.library.load`` regenerates the operator namespaces and so silently drops AMP's patches:
  the AttSampler library is loaded *before* ``amp.init`` (``tasn_gluon.ops.load`` loads it once
  per process, so no later call reloads it).
* AMP's lists do not know the extension operators ``AttSampler``/``AttSamplerGrid``: they are
  left unwrapped and get whatever dtype arrives, while their kernels are float32/float64 only
  (bfloat16 or float16 input is refused by their type inference). The model code therefore
  casts to float32 around the sampler, and runs the trilinear attention and the distinct-map
  comparisons in float32 (``attention.amp_float32``: ``F.amp_cast`` nodes, added only while
  AMP is on). With MXNet's own lists the sampler's inputs happen to arrive in float32 in the
  hybridized graph already (``sum``/``softmax`` are float32 ops); the casts make that hold
  whatever the lists say, and for NDArrays on a CPU under float16, which AMP's wrappers do not
  cast at all, they are what makes it work. The logits are cast to float32 at the heads.
* Dynamic loss scaling: :func:`init_trainer` gives the trainer AMP's loss scaler; the training
  step multiplies the losses by the scale inside ``autograd.record`` (:func:`scale_losses`), and
  ``Trainer.step`` divides the gradients by it and skips the update when a gradient is not
  finite (the scale is then halved; after 2000 clean steps it doubles). Its state is saved in
  every checkpoint (:func:`scaler_state`) and restored on resume (:func:`restore_scaler`).
"""
import logging
import subprocess
import sys
import threading

import mxnet as mx

from .. import ops
from ..errors import DeviceError

__all__ = ['AMPError', 'AMP_DTYPES', 'amp_dtype_for', 'enable_amp', 'amp_dtype', 'init_trainer',
           'loss_scaler', 'scale_losses', 'step_skipped', 'scaler_state', 'restore_scaler',
           'bfloat16_supported', 'cpu_model']

logger = logging.getLogger(__name__)

# device type -> AMP's target dtype
AMP_DTYPES = {'gpu': 'float16', 'cpu': 'bfloat16'}

_lock = threading.Lock()
_enabled = None          # the dtype enable_amp turned on in this process
_bf16_probe = None       # None until probed, then (ok, message)


class AMPError(DeviceError):
    """AMP asked for where it cannot work (mixed devices, a CPU without bfloat16 kernels, a
    second dtype in one process)."""


def _amp():
    from mxnet.contrib import amp
    return amp


def amp_dtype_for(ctx):
    """AMP's low-precision dtype for the contexts ``ctx``: 'float16' for GPUs, 'bfloat16' for
    CPUs. One process runs one dtype, so a list mixing CPUs and GPUs is refused."""
    ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
    if not ctx:
        raise AMPError('--amp needs at least one device')
    kinds = sorted({c.device_type for c in ctx})
    if len(kinds) > 1:
        raise AMPError('--amp computes in float16 on GPUs and bfloat16 on CPUs, one dtype per '
                       'process; the devices %s mix both' % ', '.join(str(c) for c in ctx))
    if kinds[0] not in AMP_DTYPES:
        raise AMPError('--amp supports CPU and GPU contexts, not %s' % kinds[0])
    return AMP_DTYPES[kinds[0]]


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo), or 'unknown CPU'."""
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'


# A bfloat16 convolution forward and backward; prints 'ok' or the first line of MXNet's error.
_BF16_PROBE = """
import mxnet as mx
from mxnet.contrib.amp.amp import bfloat16
try:
    x = mx.nd.amp_cast(mx.nd.ones((1, 8, 4, 4)), dtype=bfloat16)
    w = mx.nd.amp_cast(mx.nd.ones((8, 8, 3, 3)), dtype=bfloat16)
    w.attach_grad()
    with mx.autograd.record():
        y = mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=8, pad=(1, 1), no_bias=True)
    y.backward()
    mx.nd.amp_cast(w.grad, dtype='float32').wait_to_read()
    print('ok')
except mx.base.MXNetError as e:
    print(str(e).strip().splitlines()[0])
"""


def bfloat16_supported():
    """``(ok, message)``: whether this CPU runs MXNet's bfloat16 convolution (oneDNN has bfloat16
    kernels on AVX-512 CPUs only; elsewhere it cannot create the primitive). Probed once per
    process by a tiny convolution forward and backward in bfloat16 in a child process: a failed
    oneDNN primitive leaves an error in MXNet's engine that resurfaces at exit, and logs C++
    lines on stderr. Touches nothing of this process (AMP stays as it is)."""
    global _bf16_probe
    if _bf16_probe is None:
        try:
            done = subprocess.run([sys.executable, '-c', _BF16_PROBE], capture_output=True,
                                  text=True, timeout=300)
            lines = done.stdout.strip().splitlines()
            answer = lines[-1] if lines else (done.stderr.strip().splitlines() or
                                              ['the probe exited with %d' % done.returncode])[-1]
        except (OSError, subprocess.TimeoutExpired) as e:
            answer = 'the probe could not run: %s' % e
        _bf16_probe = (answer == 'ok', '' if answer == 'ok' else answer)
    return _bf16_probe


def _patched():
    """True while AMP's wrappers are in MXNet's operator namespaces."""
    return all(getattr(getattr(f, '__code__', None), 'co_name', '') == '_new_fun'
               for f in (mx.nd.Convolution, mx.sym.Convolution))


def enable_amp(ctx):
    """Turns AMP on for the contexts ``ctx`` (see :func:`amp_dtype_for`) and returns the dtype.

    Call it before any network is built. A second call with the same dtype does nothing; with
    the other dtype it raises AMPError (``amp.init`` cannot be undone). Loads the AttSampler
    library first (see the module docstring).
    """
    global _enabled
    dtype = amp_dtype_for(ctx)
    with _lock:
        if _enabled is not None:
            if _enabled != dtype:
                raise AMPError('AMP is already on with %s in this process and cannot switch to '
                               '%s for %s (amp.init patches MXNet for the whole process; use '
                               'another process)' % (_enabled, dtype, ', '.join(map(str, ctx))))
            if not _patched():   # the package's own order of calls went wrong: a bug
                raise RuntimeError("MXNet's operator namespaces were regenerated after AMP was "
                                   'turned on (mx.library.load after amp.init drops its casts)')
            return dtype
        amp = _amp()
        if amp.amp._amp_initialized:
            raise RuntimeError('amp.init() was already called in this process outside '
                           'enable_amp, with a dtype this cannot know: turn AMP on through '
                           'tasn_gluon.engine.precision.enable_amp only')
        if dtype == 'bfloat16':
            ok, why = bfloat16_supported()
            if not ok:
                raise AMPError('--amp on the CPU computes in bfloat16, which MXNet cannot run '
                               'on this CPU (%s): oneDNN has bfloat16 kernels on AVX-512 CPUs '
                               'only (%s); train without --amp or on a GPU' % (cpu_model(), why))
        ops.load()  # before amp.init: loading an operator library afterwards undoes its patches
        amp.init(target_dtype=dtype)
        if not _patched():
            raise RuntimeError('amp.init(%r) did not patch MXNet\'s operators' % dtype)
        _enabled = dtype
    logger.info('mixed precision (AMP, mxnet.contrib.amp): %s on %s; parameters, sampler, '
                'attention and losses float32', dtype, ', '.join(map(str, ctx)))
    return dtype


def amp_dtype():
    """The dtype AMP runs with in this process (turned on by :func:`enable_amp`), or None."""
    return _enabled


def init_trainer(trainer):
    """Gives ``trainer`` AMP's dynamic loss scaler (after :func:`enable_amp`)."""
    if _enabled is None:
        raise RuntimeError('init_trainer needs AMP turned on first (enable_amp)')
    _amp().init_trainer(trainer)
    return trainer


def loss_scaler(trainer):
    """The trainer's AMP loss scaler, or None for a float32 trainer."""
    return getattr(trainer, '_amp_loss_scaler', None)


def scale_losses(losses, trainer):
    """The losses to differentiate: under AMP each multiplied by the trainer's current loss
    scale (``amp.scale_loss``, which also sets the trainer to divide the gradients by it);
    otherwise ``losses`` themselves. Call inside ``autograd.record``: the product must be
    recorded for backward to see it."""
    if loss_scaler(trainer) is None:
        return list(losses)
    with _amp().scale_loss(list(losses), trainer) as scaled:
        return list(scaled)


def step_skipped(trainer):
    """True when the last ``trainer.step`` skipped its update because a gradient overflowed (the
    scaler then halves the scale for the next step; a growth doubles it instead)."""
    s = loss_scaler(trainer)
    return s is not None and s._next_loss_scale < s._loss_scale


# LossScaler's attributes (mxnet/contrib/amp/loss_scaler.py, 1.9.1): the scale of the next
# scale_loss is _loss_scale; has_overflow() sets it to _next_loss_scale first, so both are state.
_SCALER_FIELDS = {'loss_scale': '_loss_scale', 'next_loss_scale': '_next_loss_scale',
                  'max_loss_scale': '_max_loss_scale', 'scale_seq_len': '_scale_seq_len',
                  'unskipped': '_unskipped'}


def scaler_state(trainer):
    """The dynamic loss scaler's state as a JSON-able dict (with the dtype), or None for a
    float32 trainer. Scales are powers of two: JSON keeps them exactly."""
    s = loss_scaler(trainer)
    if s is None:
        return None
    state = {k: getattr(s, attr) for k, attr in _SCALER_FIELDS.items()}
    state.update(dtype=_enabled)
    return state


def restore_scaler(trainer, state, where='the checkpoint'):
    """Puts a :func:`scaler_state` back into ``trainer``'s scaler."""
    s = loss_scaler(trainer)
    if s is None:
        raise RuntimeError('restore_scaler: the trainer has no AMP loss scaler (init_trainer)')
    missing = sorted(set(_SCALER_FIELDS) - set(state or {}))
    if missing:
        raise AMPError('%s: the AMP loss-scaler state lacks %s' % (where, ', '.join(missing)))
    for k, attr in _SCALER_FIELDS.items():
        value = state[k]
        setattr(s, attr, int(value) if attr in ('_scale_seq_len', '_unskipped') else float(value))
    return trainer
