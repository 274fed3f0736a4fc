"""The paper's baseline: the plain backbone with global average pooling and one FC, on the input
resized to the sampled images' size."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..attention import amp_float32
from ..maps import resize_bilinear
from .backbones import get_backbone
from .initializer import initialize
from .kinds import ModelKind
from .pretrained import find_pretrained, load_pretrained

__all__ = ['Baseline', 'get_baseline']


class Baseline(ModelKind, HybridBlock):
    r"""The paper's baseline: the plain backbone with global average pooling and one FC on the
    input resized (align-corners bilinear) to ``sample_size``.

    Parameters
    ----------
    backbone : str
        As :func:`get_backbone`.
    num_classes : int
    sample_size : int
        Side the input is resized to (224).

    Inputs: (N, 3, H, W) mean-subtracted; output: logits (N, num_classes).
    """

    def __init__(self, backbone='resnet50', num_classes=200, sample_size=224,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self.sample_size = int(sample_size)
        with self.name_scope():
            self.backbone = get_backbone(backbone, norm_layer=norm_layer,
                                         norm_kwargs=norm_kwargs, prefix='')
            self.fc = nn.Dense(num_classes, in_units=self.backbone.out_channels, prefix='fc1_')

    method = 'baseline'
    validation_outputs = ('top',)
    reported_head = 'top'

    def reported(self, outputs):
        return outputs

    def hybrid_forward(self, F, x):
        return amp_float32(F, self.fc(self.backbone(resize_bilinear(F, x, self.sample_size))))




def get_baseline(net='resnet50', num_classes=200, sample_size=224, pretrained=None, ctx=None,
                 **kwargs):
    r"""The baseline row of the paper: backbone + GAP + FC on the input resized to
    ``sample_size`` (see :class:`Baseline`); ``pretrained`` as in :func:`get_tasn`."""
    kwargs.setdefault('prefix', '')
    model = Baseline(net, num_classes, sample_size, **kwargs)
    initialize(model, ctx)
    if pretrained is not None:
        load_pretrained(model.backbone, find_pretrained(pretrained, net), ctx=ctx)
    return model
