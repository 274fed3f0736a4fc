"""--gpus parsing, contexts and the per-device batch."""
import mxnet as mx
import pytest

from tasn_gluon.engine.devices import (DeviceError, get_contexts, parse_gpus,
                                       per_device_batch_size)


@pytest.mark.parametrize('spec, ids', [
    ('0-7', list(range(8))), ('0,2,5', [0, 2, 5]), ('', []), (None, []), ('3', [3]),
    (' 0 - 1 , 4 ', [0, 1, 4]), ('0-1,4-5', [0, 1, 4, 5]), ('cpu', []), ([1, 2], [1, 2])])
def test_parse_gpus(spec, ids):
    assert parse_gpus(spec) == ids


@pytest.mark.parametrize('spec, msg', [
    ('a', 'not a GPU id'), ('0-', 'not a GPU id'), ('1,,2', 'not a GPU id'), ('-1', 'not a GPU'),
    ('7-0', 'runs backwards'), ('0,0', 'more than once'), ('0-3,2', 'more than once'),
    ('1.5', 'not a GPU id')])
def test_parse_gpus_errors(spec, msg):
    with pytest.raises(DeviceError, match=msg):
        parse_gpus(spec)


def test_contexts():
    assert get_contexts('') == [mx.cpu(0)]
    assert get_contexts('', num_cpu_contexts=2) == [mx.cpu(0), mx.cpu(1)]
    if mx.context.num_gpus() == 0:
        with pytest.raises(DeviceError, match='GPU 0'):
            get_contexts('0')
    else:
        assert get_contexts('0') == [mx.gpu(0)]


def test_per_device_batch_size():
    assert per_device_batch_size(96, 8) == 12
    assert per_device_batch_size(5, 1) == 5
    with pytest.raises(DeviceError, match='does not divide evenly over 8 devices'):
        per_device_batch_size(100, 8)
    with pytest.raises(DeviceError, match='>= 1'):
        per_device_batch_size(0, 1)
