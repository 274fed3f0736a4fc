"""TASN: Trilinear Attention Sampling Network for training (five heads), and its factory.

Reference: H. Zheng, J. Fu, Z.-J. Zha, J. Luo, "Looking for the Devil in the Details: Learning
Trilinear Attention Sampling Network for Fine-grained Image Recognition", CVPR 2019.

Pipeline (TASN spec section 1): the input image (N, 3, 512, 512), mean-subtracted, is resized
to 224 for the attention net (ResNet-18, stride 8); trilinear attention turns its 28x28x512
features X into 512 attention maps, cut from the graph; the structure map (sum, squared) and the
detail map (one random map in training, the sum at inference) give row/column profiles; the
attention sampler resamples the input to 224x224 twice; one backbone processes
concat(detail, structure) along the batch; heads ``fc_part`` (detail half), ``fc_master``
(structure half) and the shared ``fc`` (both halves). The inference block is
:class:`~tasn_gluon.model_zoo.predictor.TASNPredictor`, the paper's baseline
:class:`~tasn_gluon.model_zoo.baseline.Baseline`.

Parameter names (prefix '' at the top, as built by :func:`get_tasn`) are those of the official
graph (``official_checkpoint_params.tsv``) except Gluon's BN suffixes ``running_mean`` /
``running_var`` for the official ``moving_mean`` / ``moving_var``::

    att_*                 attention net (att_bn_data, att_conv0, att_stage1_unit1_conv1, ...,
                          att_conv1/att_conv2 = the shared multi-dilation weights, att_bn1,
                          att_fc1)
    bn_data, conv0, stage{s}_unit{u}_*, bn1      backbone (ResNet); VGG: conv{s}_{c}
    fullyconnected0       fc_part   (official: part net fc, detail half)
    fullyconnected1       fc_master (official: master net fc, structure half)
    fullyconnected2       fc        (official: shared fc, both halves; "master_aux" = accuracy)
"""
import numbers
import types

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..attention import TrilinearAttention, amp_float32
from ..errors import InputError
from ..losses import HEADS
from ..maps import MapsToProfiles, resize_bilinear, sampler_inputs
from .attention_net import AttentionNet
from .backbones import get_backbone
from .initializer import initialize
from .kinds import DISTINCT_MAPS, ModelKind
from .predictor import TASNPredictor
from .pretrained import ATTENTION_NET, find_pretrained, load_pretrained
from .sampling import SamplerMixin, check_input

__all__ = ['TASN', 'get_tasn']


class TASN(SamplerMixin, ModelKind, HybridBlock):
    r"""Trilinear Attention Sampling Network for training (five heads).

    Parameters
    ----------
    backbone : str
        Backbone of the sampled images (``get_backbone``): ``resnet50``, ``vgg19``, ``resnet18``,
        or a GluonCV network (``resnet50_v1d``, ``resnest50``...).
    num_classes : int
        Number of classes.
    input_size : int
        Side of the input image (512).
    att_size : int
        Side of the attention net's input (224 -> 28x28 maps).
    sample_size : int
        Side of the sampled images (224, or 336 for the 88.0% setting); the sampler's scale is
        ``sample_size / input_size``.
    dense, iters
        Attention sampler attributes (``tasn_gluon.ops.att_sampler``).
    legacy_sampler : bool
        The official code's arithmetic where it has a named defect (docs/deviations.md): the
        sampler's grid (``ops.att_sampler(legacy=True)``) and the structure map's mask
        (``maps.official_structure_mask``). Default: the corrected arithmetic.
    uniform_sampler : bool
        Ablation: both images are sampled with uniform profiles (plain resizes of the input),
        which removes the sampler's contribution.
    attention_variant, softmax_scale
        Trilinear attention variant and spatial-softmax scale (``TrilinearAttention``).
    norm_layer, norm_kwargs
        BatchNorm class (e.g. SyncBatchNorm) and extra arguments for every ResNet.

    Inputs: x (N, 3, input_size, input_size), mean-subtracted RGB.
    Outputs: the tuple of logits ``(att, part, master, part_aux, master_aux)`` (``losses.HEADS``),
    each (N, num_classes). In training mode (``autograd.is_training()``) the detail map is one
    attention map drawn per image among the distinct ones, at inference the sum (hybridized too;
    see ``tasn_gluon.maps``). Only ``att`` carries gradient back into the attention net.
    """

    def __init__(self, backbone='resnet50', num_classes=200, input_size=512, att_size=224,
                 sample_size=224, dense=4.0, iters=5, legacy_sampler=False,
                 uniform_sampler=False, attention_variant='full', softmax_scale=7.0,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        self._set_sizes(input_size, att_size, sample_size, dense, iters, legacy_sampler,
                        uniform_sampler)
        self.backbone_name = backbone
        self.num_classes = int(num_classes)
        with self.name_scope():
            self.att_net = AttentionNet(num_classes, norm_layer=norm_layer,
                                        norm_kwargs=norm_kwargs, prefix='att_')
            self.attention = TrilinearAttention(softmax_scale, attention_variant)
            # fed with X: only the two combinations of attention maps that TASN needs
            self.maps = MapsToProfiles(self.input_size, attention=self.attention,
                                       official_mask=self.legacy_sampler)
            self.backbone = get_backbone(backbone, norm_layer=norm_layer,
                                         norm_kwargs=norm_kwargs, prefix='')
            d = self.backbone.out_channels
            self.fc_part = nn.Dense(num_classes, in_units=d, prefix='fullyconnected0_')
            self.fc_master = nn.Dense(num_classes, in_units=d, prefix='fullyconnected1_')
            self.fc = nn.Dense(num_classes, in_units=d, prefix='fullyconnected2_')
        # views sharing the parameters, held outside Block attributes so that they are not
        # registered as children (saved parameters stay those of TASN)
        self._views = types.SimpleNamespace(predictor=None, stats=None)

    method = 'tasn'
    has_attention = True
    validation_outputs = HEADS + (DISTINCT_MAPS,)
    reported_head = 'master_aux'

    def forward(self, x, *args):
        check_input(x, self.input_size, 'TASN')
        return super().forward(x, *args)

    def reported(self, outputs):
        """The master_aux logits among the five heads."""
        return outputs[HEADS.index(self.reported_head)]

    def inference_net(self):
        return self.predictor()

    def validation_net(self):
        return self.with_attention_stats()

    def hybrid_forward(self, F, x):
        return self.heads_and_stats(F, x)[0]

    def heads_and_stats(self, F, x):
        """``(logits, num_distinct)``: the five logits and the number of distinct attention
        maps of each image (N,)."""
        att_logits, feats = self.att_net(resize_bilinear(F, x, self.att_size))
        # the maps are cut from the graph inside self.maps: the attention net gets gradient
        # from its own head only
        dy, dx, sy, sx, _, _, first = self.maps(feats)
        logits = self._heads(F, att_logits, self._sample(F, x, dy, dx),
                             self._sample(F, x, sy, sx))
        return logits, F.sum(first, axis=1)

    def _heads(self, F, att_logits, detail, struct):
        # one backbone pass over both images: BN statistics shared, as the official graph
        pooled = self.backbone(F.concat(detail, struct, dim=0))
        pooled_d, pooled_s = F.split(pooled, num_outputs=2, axis=0)
        aux_d, aux_s = F.split(self.fc(pooled), num_outputs=2, axis=0)
        # logits in float32 under AMP too: the losses, metrics and NumPy read them
        return tuple(amp_float32(F, z) for z in (att_logits, self.fc_part(pooled_d),
                                                  self.fc_master(pooled_s), aux_d, aux_s))

    def predictor(self):
        """The :class:`TASNPredictor` of this network, sharing its parameters (made once)."""
        if self._views.predictor is None:
            self._views.predictor = TASNPredictor(
                self.att_net, self.maps, self.backbone, self.fc, self.input_size,
                self.att_size, self.sample_size, self._sampler_attrs['dense'],
                self._sampler_attrs['iters'], self.legacy_sampler, self.uniform_sampler,
                prefix='')
        return self._views.predictor

    def with_attention_stats(self):
        """A block sharing this network's parameters whose outputs are the five logits followed
        by the number of distinct attention maps per image (N,): what validation records
        (made once; hybridize it like the network)."""
        if self._views.stats is None:
            self._views.stats = _TASNWithStats(self)
        return self._views.stats

    def explain(self, x, detail_channel=None):
        """Intermediate results for visualisation (the paper's Figure 4), imperatively, by the
        forward's own arithmetic.

        Parameters
        ----------
        x : NDArray (N, 3, input_size, input_size)
        detail_channel : int, sequence of N ints or None
            Attention map used for the detail image. None: as the forward (a map drawn among
            the distinct ones in training mode, the sum at inference).

        Returns
        -------
        dict of NDArrays: ``att_input`` (N,3,att,att), ``features`` X (N,512,h,w),
        ``attention_maps`` (N,512,h,w), ``distinct`` (N,512): 1 for the first channel of each
        group of equal maps, ``num_distinct`` (N,), ``structure_map`` and ``detail_map``
        (N,input,input), ``structure_profiles`` and ``detail_profiles`` ((N,input) row/y,
        (N,input) column/x), ``structure_image`` and ``detail_image`` (N,3,sample,sample),
        ``logits``: the five heads' logits on these two sampled images (as ``__call__``).
        """
        check_input(x, self.input_size, 'TASN.explain')
        F = mx.nd
        att_in = resize_bilinear(F, x, self.att_size)
        att_logits, feats = self.att_net(att_in)
        chan = None
        if detail_channel is not None:
            c = self.att_net.channels
            chan = mx.nd.array([detail_channel] * x.shape[0]
                               if isinstance(detail_channel, numbers.Integral)
                               else detail_channel, ctx=x.context, dtype=x.dtype)
            if chan.shape != (x.shape[0],) or chan.min().asscalar() < 0 \
                    or chan.max().asscalar() >= c:
                raise InputError('detail_channel must be one index or N indices in [0, %d)' % c)
        dy, dx, sy, sx, dmap, smap, first = sampler_inputs(
            F, feats, self.input_size, self.attention, self.legacy_sampler, chan,
            self.maps.dtype)
        detail, struct = self._sample(F, x, dy, dx), self._sample(F, x, sy, sx)
        logits = self._heads(F, att_logits, detail, struct)
        return dict(att_input=att_in, features=feats, attention_maps=self.attention(feats),
                    distinct=first, num_distinct=F.sum(first, axis=1),
                    structure_map=smap, detail_map=dmap,
                    structure_profiles=(sy, sx), detail_profiles=(dy, dx),
                    structure_image=struct, detail_image=detail, logits=logits)


class _TASNWithStats(HybridBlock):
    """See :meth:`TASN.with_attention_stats`."""

    def __init__(self, tasn):
        super().__init__(prefix='')
        self.tasn = tasn

    def hybrid_forward(self, F, x):
        logits, num_distinct = self.tasn.heads_and_stats(F, x)
        return tuple(logits) + (num_distinct,)


def get_tasn(net='resnet50', num_classes=200, input_size=512, att_size=224, sample_size=224,
             legacy_sampler=False, uniform_sampler=False, pretrained=None, att_pretrained=None,
             ctx=None, **kwargs):
    r"""TASN, initialised (Xavier(gaussian, in, 2); BN gamma 1 / beta 0), parameters named as
    the official graph.

    Parameters
    ----------
    net : str
        Backbone: ``resnet50`` (default), ``vgg19``, ``resnet18``, a GluonCV network such as
        ``resnet50_v1d`` or ``resnest50`` (see ``backbone_spec``).
    num_classes, input_size, att_size, sample_size, legacy_sampler, uniform_sampler
        See :class:`TASN`.
    pretrained : str or None
        Local ImageNet weights of the backbone: a Gluon model-zoo or GluonCV ``.params`` file
        (e.g. ``resnet50_v2-*.params``, ``resnet50_v1d-*.params``), MXNet's Symbol checkpoint
        (``resnet-50-0000.params``), or ``'zoo'``: the backbone's file in the model-zoo folder
        (:func:`find_pretrained`); None: random initialisation.
    att_pretrained : str or None
        The same for the attention net's ResNet-18 (``'zoo'``: GluonCV's ``resnet18_v2``).
    ctx : Context or list of Context
        Where to initialise (default CPU).
    **kwargs
        Passed to :class:`TASN` (``dense``, ``iters``, ``attention_variant``, ``norm_layer``...).
    """
    kwargs.setdefault('prefix', '')
    model = TASN(net, num_classes, input_size, att_size, sample_size,
                 legacy_sampler=legacy_sampler, uniform_sampler=uniform_sampler, **kwargs)
    initialize(model, ctx)
    if pretrained is not None:
        load_pretrained(model.backbone, find_pretrained(pretrained, net), ctx=ctx)
    if att_pretrained is not None:
        load_pretrained(model.att_net, find_pretrained(att_pretrained, ATTENTION_NET), ctx=ctx)
    return model


