"""TASNLoss against a hand computation on fixed logits, with and without detaching the teacher."""
import numpy as np
import pytest
import mxnet as mx
from mxnet import autograd

from tasn_gluon.losses import TASNLoss, TERM_NAMES, DEFAULT_WEIGHTS

LOGITS = np.array([
    [[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]],     # att
    [[1.0, 3.0, -2.0], [4.0, 0.0, 1.0]],     # part (teacher)
    [[0.0, 1.5, 0.5], [2.0, 2.0, -1.0]],     # master (student)
    [[-1.0, 0.0, 1.0], [0.5, 0.5, 0.5]],     # part_aux
    [[3.0, 1.0, 0.0], [-2.0, 1.0, 0.0]],     # master_aux
])
LABEL = np.array([1, 0])


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def hand_terms(T=10.0):
    ce = [-_log_softmax(z)[np.arange(2), LABEL] for z in LOGITS]
    p = np.exp(_log_softmax(LOGITS[1] / T))
    kd = -(p * _log_softmax(LOGITS[2] / T)).sum(axis=-1)
    return dict(zip(TERM_NAMES, ce + [kd]))


def _outputs():
    return [mx.nd.array(z, dtype='float64') for z in LOGITS]


@pytest.mark.parametrize('hybridize', [False, True])
def test_total_and_terms_match_hand_computation(hybridize):
    loss_fn = TASNLoss()
    if hybridize:
        loss_fn.hybridize()
    label = mx.nd.array(LABEL, dtype='float64')
    ref = hand_terms()
    terms = loss_fn.terms(_outputs(), label)
    assert set(terms) == set(TERM_NAMES)
    for k in TERM_NAMES:
        np.testing.assert_allclose(terms[k].asnumpy(), ref[k], rtol=1e-12)
    total = loss_fn(_outputs(), label).asnumpy()
    assert total.shape == (2,)
    expected = sum(DEFAULT_WEIGHTS[k] * ref[k] for k in TERM_NAMES)
    np.testing.assert_allclose(total, expected, rtol=1e-12)
    # the published weights: 1, .5, .5, .5, .5, 1
    assert [DEFAULT_WEIGHTS[k] for k in TERM_NAMES] == [1.0, 0.5, 0.5, 0.5, 0.5, 1.0]


def test_weights_and_temperature_arguments():
    label = mx.nd.array(LABEL, dtype='float64')
    ref = hand_terms(T=2.0)
    w = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)
    got = TASNLoss(weights=w, temperature=2.0)(_outputs(), label).asnumpy()
    np.testing.assert_allclose(got, sum(wi * ref[k] for wi, k in zip(w, TERM_NAMES)), rtol=1e-12)
    got = TASNLoss(weights={'kd': 0.0}, temperature=2.0)(_outputs(), label).asnumpy()
    np.testing.assert_allclose(got, sum(DEFAULT_WEIGHTS[k] * ref[k] for k in TERM_NAMES[:5]),
                               rtol=1e-12)
    with pytest.raises(ValueError, match='6 values'):
        TASNLoss(weights=(1, 2))
    with pytest.raises(ValueError, match='Unknown loss terms'):
        TASNLoss(weights={'distill': 1.0})
    with pytest.raises(ValueError, match='temperature'):
        TASNLoss(temperature=0)
    with pytest.raises(ValueError, match='5 logits'):
        TASNLoss()(_outputs()[:4], label)
    # (N, 1) labels, as some data iterators give them
    np.testing.assert_allclose(TASNLoss()(_outputs(), label.reshape((-1, 1))).asnumpy(),
                               TASNLoss()(_outputs(), label).asnumpy())


@pytest.mark.parametrize('detach', [False, True])
def test_teacher_gradient(detach):
    T = 10.0
    outs = _outputs()
    for o in outs:
        o.attach_grad()
    label = mx.nd.array(LABEL, dtype='float64')
    with autograd.record():
        loss = TASNLoss(detach_teacher=detach)(outs, label)
    loss.backward()                                   # d(sum over the batch)
    part, master = LOGITS[1], LOGITS[2]
    onehot = np.eye(3)[LABEL]
    p = np.exp(_log_softmax(part / T))
    log_q = _log_softmax(master / T)
    # CE term of the part head: 0.5 (softmax - onehot)
    grad_part = 0.5 * (np.exp(_log_softmax(part)) - onehot)
    if not detach:
        # dKD/dz_t = -(1/T) p (log q - sum_k p_k log q_k)
        grad_part += -(1.0 / T) * p * (log_q - (p * log_q).sum(-1, keepdims=True))
    np.testing.assert_allclose(outs[1].grad.asnumpy(), grad_part, rtol=1e-10, atol=1e-14)
    # student: 0.5 CE + KD, dKD/dz_s = (q - p) / T, in both modes
    q = np.exp(log_q)
    grad_master = 0.5 * (np.exp(_log_softmax(master)) - onehot) + (q - p) / T
    np.testing.assert_allclose(outs[2].grad.asnumpy(), grad_master, rtol=1e-10, atol=1e-14)
    # the attention head: 1.0 CE only
    np.testing.assert_allclose(outs[0].grad.asnumpy(),
                               np.exp(_log_softmax(LOGITS[0])) - onehot, rtol=1e-10)
