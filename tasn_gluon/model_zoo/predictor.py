"""TASN at inference: the attention net, the structure map, the sampler, the backbone and the
shared fc; its one output is the official "master_aux" logits."""
from mxnet.gluon.block import HybridBlock

from ..attention import amp_float32
from ..maps import resize_bilinear
from .kinds import ModelKind
from .sampling import SamplerMixin, check_input

__all__ = ['TASNPredictor']


class TASNPredictor(SamplerMixin, ModelKind, HybridBlock):
    r"""TASN at inference: attention net, structure map, sampler, backbone, shared fc.

    Returns the official "master_aux" logits (N, num_classes): the shared ``fc`` on the
    structure-preserved image. Built from the blocks of a trained :class:`TASN` (use
    ``TASN.predictor()``) it shares their parameters. Hybridize, run once, then ``export(path)``
    writes ``path-symbol.json`` and ``path-0000.params``; reload them with
    ``mx.gluon.SymbolBlock.imports(json, ['data'], params)`` after ``tasn_gluon.ops.load()``.

    Parameters
    ----------
    att_net, maps, backbone, fc : blocks of a TASN (``maps``: its MapsToProfiles)
    input_size, att_size, sample_size, dense, iters, legacy_sampler, uniform_sampler
        As in :class:`TASN`.
    """

    def __init__(self, att_net, maps, backbone, fc, input_size=512, att_size=224,
                 sample_size=224, dense=4.0, iters=5, legacy_sampler=False,
                 uniform_sampler=False, **kwargs):
        super().__init__(**kwargs)
        self._set_sizes(input_size, att_size, sample_size, dense, iters, legacy_sampler,
                        uniform_sampler)
        # the attention net without its classifier head (unused here, and export() only
        # accepts parameters the graph uses)
        self.att_body, self.att_conv1, self.att_conv2 = att_net.body, att_net.conv1, att_net.conv2
        self.maps, self.backbone, self.fc = maps, backbone, fc

    method = 'tasn'
    validation_outputs = ('master_aux',)
    reported_head = 'master_aux'

    def reported(self, outputs):
        return outputs

    def forward(self, x, *args):
        check_input(x, self.input_size, 'TASNPredictor')
        return super().forward(x, *args)

    def hybrid_forward(self, F, x):
        feats = self.att_conv2(self.att_conv1(self.att_body(resize_bilinear(F, x,
                                                                              self.att_size))))
        sy, sx = self.maps.structure_profiles(F, feats)
        return amp_float32(F, self.fc(self.backbone(self._sample(F, x, sy, sx))))
