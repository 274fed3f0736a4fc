"""The eval JSON (``tools/eval.py --out``, read by ``tools/compare.py``) and its text form."""
import json
import math

from ..files import atomic_write_text
from ..losses import HEADS

__all__ = ['result_dict', 'write_result_json', 'format_result']


def result_dict(res, **info):
    """The eval JSON: the five head keys (fractions), their ``_top5``, ``kd_loss``,
    ``distinct_maps``, ``num_images``, ``top1``/``top5`` (reported accuracy) and run
    information."""
    out = dict(info)
    for k, v in res.items():
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[k] = v
    return out


def write_result_json(path, result):
    atomic_write_text(path, json.dumps(result, indent=1, sort_keys=True, default=str) + '\n')
    return path


def format_result(result):
    lines = []
    heads = [h for h in HEADS if result.get(h) is not None]
    if heads:
        lines.append('%-12s %8s %8s' % ('head', 'top-1', 'top-5'))
        for h in heads:
            lines.append('%-12s %7.2f%% %7.2f%%' % (h, 100 * result[h], 100 * result[h + '_top5']))
    if result.get('top1') is not None:
        lines.append('%-12s %7.2f%% %7.2f%%   (reported accuracy)' %
                     ('top1' if not heads else 'reported', 100 * result['top1'],
                      100 * result['top5']))
    if result.get('kd_loss') is not None:
        lines.append('KD loss      %.4f' % result['kd_loss'])
    if result.get('distinct_maps') is not None:
        lines.append('distinct attention maps per image %.1f' % result['distinct_maps'])
    lines.append('images       %d' % result['num_images'])
    if result.get('trained_input_size'):
        lines.append('input size   %d (the model was trained at %d: --override-input-size)'
                     % (result['input_size'], result['trained_input_size']))
    if result.get('epoch') is not None:
        lines.append('checkpoint   epoch %d (%s)' % (result['epoch'], result['checkpoint']))
    if result.get('amp'):
        lines.append('precision    %s mixed precision (AMP)' % result['amp'])
    return '\n'.join(lines)
