"""How far TASN's sampler zooms into the detail that decides the class, measured on the built-in
synthetic set, whose ``synthetic.json`` records every image's badge box.

The magnification of an image is the number of output pixels that sample the badge, per axis,
divided by what a plain resize to the same output size gives (1.0: no zoom; the operator caps
it at ``dense`` = 4); the two axes are combined by their geometric mean.
"""
import json
import os

import mxnet as mx
import numpy as np

from .. import ops
from ..data import read_lst
from ..engine.models import load_model
from ..errors import DatasetError
from .visualize import images_from_rec

__all__ = ['badge_boxes', 'axis_magnification', 'badge_magnification',
           'checkpoint_badge_magnification']


def badge_boxes(data_dir, input_size):
    """The badge box [x0, y0, x1, y1] of every val image of a synthetic set, in val.rec order,
    in pixels of the network input (``input_size``)."""
    path = os.path.join(data_dir, 'synthetic.json')
    if not os.path.isfile(path):
        raise DatasetError('%s not found: badge boxes exist only for the built-in synthetic '
                           'set' % path)
    with open(path, encoding='utf-8') as f:
        meta = json.load(f)
    scale = float(input_size) / meta['params']['image_size']
    boxes = {m['path']: m['detail_box'] for m in meta['images'] if m['split'] == 'val'}
    return [[v * scale for v in boxes[e.path]]
            for e in read_lst(os.path.join(data_dir, 'val.lst'))]


def axis_magnification(coords, lo, hi, input_len, output_len):
    """Output samples whose coordinate falls on input pixels [lo, hi), relative to a resize."""
    inside = np.count_nonzero((coords >= lo - 0.5) & (coords < hi - 0.5))
    return inside / ((hi - lo) * output_len / float(input_len))


def badge_magnification(net, data_dir, ctx=None, batch_size=16):
    """Per val image, the badge magnification in the structure-preserved image of a trained
    (or untrained) :class:`TASN` ``net`` at inference. Returns a NumPy array."""
    ctx = ctx or mx.cpu()
    size, out = int(net.input_size), int(net.sample_size)
    boxes = badge_boxes(data_dir, size)
    images, _ = images_from_rec(data_dir, size, len(boxes))
    result = []
    for start in range(0, len(boxes), batch_size):
        x = mx.nd.array(images[start:start + batch_size], ctx=ctx)
        row, col = net.explain(x)['structure_profiles']
        ys, xs = (g.asnumpy() for g in ops.att_sampler_grid(row, col, size, size, out / size))
        for i, (x0, y0, x1, y1) in enumerate(boxes[start:start + x.shape[0]]):
            my = axis_magnification(ys[i], y0, y1, size, out)
            mx_ = axis_magnification(xs[i], x0, x1, size, out)
            result.append(np.sqrt(my * mx_))
    return np.array(result)


def checkpoint_badge_magnification(checkpoint, data_dir, ctx=None):
    """Mean badge magnification of the TASN saved in ``checkpoint`` (a run directory or its
    ``.params``) over ``data_dir``'s val set."""
    ctx = ctx or mx.cpu()
    return float(badge_magnification(load_model(checkpoint, [ctx]).net, data_dir, ctx).mean())
