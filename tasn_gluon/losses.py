"""The TASN objective (TASN spec section 6).

Reference: H. Zheng et al., "Looking for the Devil in the Details: Learning Trilinear Attention
Sampling Network for Fine-grained Image Recognition", CVPR 2019, Sec. 3.3 (distillation).

    L = 1.0 CE(att) + 0.5 CE(part) + 0.5 CE(master) + 0.5 CE(part_aux) + 0.5 CE(master_aux)
        + 1.0 KD,     KD = - sum_k softmax(z_part / T)_k * log softmax(z_master / T)_k,  T = 10

(no T^2 factor). The teacher is the part net (detail image), the student the master net
(structure image). The official code lets the gradient flow through the teacher's soft targets;
that is the default here, ``detach_teacher=True`` stops it.
"""
import mxnet as mx
from mxnet.gluon.block import HybridBlock

__all__ = ['HEADS', 'TERM_NAMES', 'DEFAULT_WEIGHTS', 'TASNLoss', 'softmax_cross_entropy',
           'distillation_loss']

# The five predictions of TASN, in the order the model returns them (spec section 6);
# "master_aux" (the shared fc on the structure-preserved image) is the reported accuracy.
HEADS = ('att', 'part', 'master', 'part_aux', 'master_aux')
TERM_NAMES = HEADS + ('kd',)
DEFAULT_WEIGHTS = dict(att=1.0, part=0.5, master=0.5, part_aux=0.5, master_aux=0.5, kd=1.0)


def softmax_cross_entropy(F, logits, label):
    """Per-sample CE of (N, K) logits against (N,) (or (N, 1)) class indices -> (N,)."""
    return -F.pick(F.log_softmax(logits, axis=-1), F.reshape(label, (-1,)), axis=-1)


def distillation_loss(F, teacher, student, temperature, detach_teacher=False):
    """Per-sample KD: cross-entropy of softmax(student/T) against softmax(teacher/T) -> (N,)."""
    soft = F.softmax(teacher / temperature, axis=-1)
    if detach_teacher:
        soft = F.BlockGrad(soft)
    return -F.sum(soft * F.log_softmax(student / temperature, axis=-1), axis=-1)


class TASNLoss(HybridBlock):
    r"""The TASN objective on the five logits of :class:`~tasn_gluon.model_zoo.TASN`.

    Parameters
    ----------
    weights : dict or sequence of 6 floats
        Weights of ``('att', 'part', 'master', 'part_aux', 'master_aux', 'kd')``; a dict may give
        only some of them (the rest keep the defaults 1, .5, .5, .5, .5, 1).
    temperature : float
        Distillation temperature T (10).
    detach_teacher : bool
        Stop the gradient through the teacher's (part net's) soft targets. False (default) is
        the official behaviour.

    Call ``loss_fn(outputs, label)`` with ``outputs`` the 5-tuple (each (N, K)) and ``label``
    (N,) class indices: returns the per-sample total loss (N,). ``terms(outputs, label)`` returns
    the six unweighted per-sample terms as a dict (for logging and the validation KD loss).
    """

    def __init__(self, weights=None, temperature=10.0, detach_teacher=False, **kwargs):
        super().__init__(**kwargs)
        w = dict(DEFAULT_WEIGHTS)
        if weights is None:
            pass
        elif isinstance(weights, dict):
            unknown = set(weights) - set(TERM_NAMES)
            if unknown:
                raise ValueError('Unknown loss terms %s; terms are %s'
                                 % (sorted(unknown), TERM_NAMES))
            w.update({k: float(v) for k, v in weights.items()})
        else:
            weights = tuple(weights)
            if len(weights) != len(TERM_NAMES):
                raise ValueError('weights needs %d values %s, got %d'
                                 % (len(TERM_NAMES), TERM_NAMES, len(weights)))
            w = {k: float(v) for k, v in zip(TERM_NAMES, weights)}
        if temperature <= 0:
            raise ValueError('temperature must be positive, got %r' % temperature)
        self.weights = w
        self.temperature = float(temperature)
        self.detach_teacher = bool(detach_teacher)

    @staticmethod
    def _unpack(outputs):
        outputs = tuple(outputs)
        if len(outputs) != len(HEADS):
            raise ValueError('TASNLoss expects the 5 logits %s, got %d outputs'
                             % (', '.join(HEADS), len(outputs)))
        return outputs

    def _terms(self, F, att, part, master, part_aux, master_aux, label):
        ce = [softmax_cross_entropy(F, z, label) for z in (att, part, master, part_aux,
                                                           master_aux)]  # HEADS' order
        kd = distillation_loss(F, part, master, self.temperature, self.detach_teacher)
        return ce + [kd]

    def forward(self, outputs, label):
        return super().forward(*self._unpack(outputs), label)

    def hybrid_forward(self, F, att, part, master, part_aux, master_aux, label):
        terms = self._terms(F, att, part, master, part_aux, master_aux, label)
        return F.add_n(*[t * self.weights[k] for k, t in zip(TERM_NAMES, terms)])

    def terms(self, outputs, label):
        """The six unweighted per-sample terms ``{'att', 'part', 'master', 'part_aux',
        'master_aux', 'kd'}``, each (N,) (imperative, NDArrays)."""
        return dict(zip(TERM_NAMES, self._terms(mx.nd, *self._unpack(outputs), label)))

    def __repr__(self):
        return '%s(weights=%s, temperature=%g, detach_teacher=%s)' % (
            self.__class__.__name__, self.weights, self.temperature, self.detach_teacher)
