"""Devices: ``--gpus`` parsing, contexts, and the per-device share of the batch."""
import re

import mxnet as mx

from ..errors import DeviceError

__all__ = ['parse_gpus', 'get_contexts', 'per_device_batch_size', 'DeviceError']

_ITEM = re.compile(r'^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$')


def parse_gpus(spec):
    """Parses a GluonCV-style device list into GPU ids.

    ``"0-7"`` -> [0..7], ``"0,2,5"`` -> [0, 2, 5], ``"0-1,4"`` -> [0, 1, 4], ``""`` or ``None``
    -> [] (CPU). Ids must be distinct and ranges ascending.

    Raises
    ------
    DeviceError
        For anything else, naming the bad part.
    """
    if spec is None:
        return []
    if isinstance(spec, (list, tuple)):
        spec = ','.join(str(s) for s in spec)
    spec = str(spec).strip()
    if spec == '' or spec.lower() == 'cpu':
        return []
    ids = []
    for part in spec.split(','):
        m = _ITEM.match(part)
        if m is None:
            raise DeviceError('--gpus %r: %r is not a GPU id or a range like 0-7 (use e.g. '
                              '"0-7", "0,2,5" or "" for CPU)' % (spec, part))
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise DeviceError('--gpus %r: range %r runs backwards' % (spec, part.strip()))
        ids.extend(range(lo, hi + 1))
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise DeviceError('--gpus %r names GPU %s more than once' % (spec, ','.join(map(str, dup))))
    return ids


def get_contexts(gpus, num_cpu_contexts=1):
    """MXNet contexts for ``gpus`` (a spec string or a list of ids); CPU when empty.

    ``num_cpu_contexts`` > 1 gives several CPU contexts (cpu(0), cpu(1), ...), which exercise the
    data-parallel path without GPUs (tests, debugging). It is an error to ask for GPUs that this
    machine or this MXNet build does not have.
    """
    if isinstance(gpus, (list, tuple)) and all(isinstance(g, int) for g in gpus):
        ids = list(gpus)
    else:
        ids = parse_gpus(gpus)
    if not ids:
        if num_cpu_contexts < 1:
            raise DeviceError('num_cpu_contexts must be >= 1, not %r' % num_cpu_contexts)
        return [mx.cpu(i) for i in range(num_cpu_contexts)]
    try:
        available = mx.context.num_gpus()
    except mx.base.MXNetError:
        available = 0
    missing = [i for i in ids if i >= available]
    if missing:
        raise DeviceError('--gpus asks for GPU %s but %s (this MXNet build %s CUDA). Use --gpus "" '
                          'for CPU.' % (','.join(map(str, missing)),
                                        'no GPU is visible' if available == 0 else
                                        'only %d GPU(s) are visible' % available,
                                        'has' if mx.runtime.Features().is_enabled('CUDA')
                                        else 'lacks'))
    return [mx.gpu(i) for i in ids]


def per_device_batch_size(batch_size, num_devices):
    """The per-device batch; the total must divide evenly over the devices."""
    batch_size, num_devices = int(batch_size), int(num_devices)
    if batch_size < 1:
        raise DeviceError('--batch-size must be >= 1, not %d' % batch_size)
    if num_devices < 1:
        raise DeviceError('need at least one device')
    if batch_size % num_devices:
        raise DeviceError('--batch-size %d (the total over all devices) does not divide evenly '
                          'over %d devices; use a multiple of %d' % (batch_size, num_devices,
                                                                     num_devices))
    return batch_size // num_devices
