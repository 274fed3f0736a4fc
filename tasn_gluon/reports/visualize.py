"""Pictures of what the attention does (the paper's Figure 4): per image, the input, the
structure map and several detail maps (over the image), their row and column profiles, and the
structure- and details-preserved samples."""
import logging
import os
import re

import mxnet as mx
import numpy as np

from ..data import MEAN_RGB, get_val_iter, read_dataset_info
from ..data.preprocess import BadImage, load_val_image
from ..engine import builders
from ..engine.metrics import save_figure
from ..engine.models import load_model
from ..engine.config import resolve_config
from ..engine.seeds import seed_everything
from ..errors import ConfigError, InputError, ModelMismatch

__all__ = ['load_image_files', 'images_from_rec', 'choose_detail_channels', 'draw_explanation',
           'picture_name', 'draw_predictions', 'visualize', 'run_visualize']

logger = logging.getLogger(__name__)


def load_image_files(paths, input_size):
    """Image files -> ((N, 3, S, S) float32, labels -1), by the val pipeline's own preprocessing
    (``data.preprocess.load_val_image``: shorter side to ``input_size``, centre crop, mean
    subtracted, bit for bit as ``get_val_iter``). InputError naming the first unusable file."""
    out = []
    for p in paths:
        try:
            out.append(load_val_image(p, input_size))
        except BadImage as e:
            raise InputError('cannot read the image %s: %s' % (p, e))
    return np.stack(out), np.full(len(out), -1, np.int64)


def images_from_rec(data_dir, input_size, count, one_per_class=False):
    """``count`` images of ``data_dir``'s val set (and their labels), as the val pipeline gives
    them: the first ones, or with ``one_per_class`` the first image of each class (classes in
    order, up to ``count``)."""
    info = read_dataset_info(data_dir)
    it = get_val_iter(data_dir, 16, input_size, num_threads=1)
    wanted = min(count, info['num_classes']) if one_per_class else count
    xs, ys = [], []
    for batch in it:
        valid = batch.data[0].shape[0] - int(batch.pad or 0)
        for x, y in zip(batch.data[0].asnumpy()[:valid], batch.label[0].asnumpy()[:valid]):
            if not one_per_class or int(y) not in ys:
                xs.append(x)
                ys.append(int(y))
        if len(xs) >= wanted:
            break
    order = np.argsort(ys, kind='stable') if one_per_class else np.arange(len(ys))
    order = order[:wanted]
    return np.stack([xs[i] for i in order]), np.array([ys[i] for i in order], np.int64)


def choose_detail_channels(attention_maps, distinct, k):
    """Per image, at most ``k`` attention maps to draw among its distinct maps (``distinct``
    (N, C): 1 for the first channel of each group of the same map, as the training draw): by
    decreasing peak, the first map peaking at each new location first (so that the pictures
    show different parts where the maps differ), then the strongest of the rest. A list of N
    lists of channels; an image with fewer than ``k`` distinct maps gets all of them."""
    n, c = attention_maps.shape[:2]
    flat = attention_maps.reshape(n, c, -1)
    peaks, where = flat.max(axis=2), flat.argmax(axis=2)
    out = []
    for i in range(n):
        candidates = [int(ch) for ch in np.argsort(-peaks[i], kind='stable') if distinct[i, ch]]
        chosen, seen = [], set()
        for ch in candidates:
            if where[i, ch] not in seen:
                chosen.append(ch)
                seen.add(where[i, ch])
        chosen += [ch for ch in candidates if ch not in chosen]
        out.append(chosen[:k])
    return out


def _to_image(chw, mean_rgb=MEAN_RGB):
    img = chw.transpose(1, 2, 0) + np.array(mean_rgb, np.float32)
    return np.clip(img / 255.0, 0, 1)


def _norm(a):
    a = a - a.min()
    return a / a.max() if a.max() > 0 else a


def draw_explanation(path, image, rows, title=None):
    """One figure: a row per map (structure, then the detail maps), with columns input + map,
    row/column profiles, sampled image. ``rows``: list of dicts with ``name``, ``map`` (S, S),
    ``profile_y`` (S,), ``profile_x`` (S,), ``sample`` (3, s, s)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    n = len(rows)
    fig, axes = plt.subplots(n, 4, figsize=(12, 3 * n), squeeze=False)
    base = _to_image(image)
    for r, row in enumerate(rows):
        ax = axes[r][0]
        ax.imshow(base)
        ax.set_title('input' if r == 0 else '')
        ax.axis('off')
        ax = axes[r][1]
        ax.imshow(base)
        ax.imshow(_norm(row['map']), cmap='jet', alpha=0.5)
        ax.set_title(row['name'])
        ax.axis('off')
        ax = axes[r][2]
        s = len(row['profile_x'])
        ax.plot(np.arange(s), row['profile_x'], label='column profile (x)')
        ax.plot(np.arange(len(row['profile_y'])), row['profile_y'], label='row profile (y)')
        ax.set_title('profiles')
        if r == 0:
            ax.legend(fontsize=7)
        ax = axes[r][3]
        ax.imshow(_to_image(row['sample']))
        ax.set_title('%s sample' % ('structure-preserved' if r == 0 else 'details-preserved'))
        ax.axis('off')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=72)


def picture_name(index, source):
    """``NNNN_STEM.png`` for the ``index``-th classified image: its file's name without the
    extension, characters other than letters, digits and ``.-_`` as ``_`` (``array[3]`` ->
    ``array_3``)."""
    stem = os.path.splitext(os.path.basename(source))[0]
    stem = re.sub(r'[^A-Za-z0-9._-]', '_', stem).strip('._') or 'image'
    return '%04d_%s.png' % (index, stem)


def _rows_of(explained, kind):
    """The arrays of one row of the pictures for a whole batch, on the host: ``kind``
    ('structure' or 'detail') map, profiles and sampled image of an ``explain()`` result."""
    profile_y, profile_x = explained[kind + '_profiles']
    return dict(map=explained[kind + '_map'].asnumpy(), profile_y=profile_y.asnumpy(),
                profile_x=profile_x.asnumpy(), sample=explained[kind + '_image'].asnumpy())


def draw_predictions(net, x, predictions, out_dir, first_index=0):
    """Per image of the batch ``x`` (NDArray (n, 3, S, S), preprocessed) one PNG in ``out_dir``
    (:func:`picture_name`): the input, the structure map over it, its row and column profiles
    and the structure-preserved (zoomed) image of the TASN ``net`` (``net.explain``), titled
    with ``predictions`` (their top classes); sets each prediction's ``picture``. Returns the
    paths."""
    if not net.has_attention:
        raise ModelMismatch('only a TASN has attention to draw, not a %s model' % net.method)
    os.makedirs(out_dir, exist_ok=True)
    structure = _rows_of(net.explain(x), 'structure')
    images = x.asnumpy()
    paths = []
    for i, pred in enumerate(predictions):
        rows = [dict(name='structure map', **{k: v[i] for k, v in structure.items()})]
        top = ', '.join('%s %.1f%%' % (n if n is not None else 'class %d' % c, 100 * p)
                        for c, n, p in list(zip(pred.classes, pred.names,
                                                pred.probabilities))[:3])
        title = '%s: prediction %s' % (os.path.basename(pred.source), top)
        path = os.path.join(out_dir, picture_name(first_index + i, pred.source))
        pred.picture = draw_explanation(path, images[i], rows, title)
        paths.append(path)
    return paths


def visualize(net, images, out_dir, labels=None, class_names=None, num_details=3, prefix='vis'):
    """Writes ``out_dir/{prefix}_{i:03d}.png`` for every image of ``images`` (N, 3, S, S) with
    ``net.explain``, each with the structure map and up to ``num_details`` of the image's
    distinct detail maps; returns the paths."""
    if not net.has_attention:
        raise ModelMismatch('visualisation needs a TASN network (with attention maps), not a %s '
                            'model' % net.method)
    os.makedirs(out_dir, exist_ok=True)
    ctx = list(net.collect_params().values())[0].list_ctx()[0]
    x = mx.nd.array(images, ctx=ctx)
    base = net.explain(x)
    chans = choose_detail_channels(base['attention_maps'].asnumpy(), base['distinct'].asnumpy(),
                                   max(0, int(num_details)))
    rounds = max((len(c) for c in chans), default=0)
    # round j explains image i with its j-th channel (its last one once it has no more)
    details = [net.explain(x, detail_channel=[c[min(j, len(c) - 1)] for c in chans])
               for j in range(rounds)]
    pred = base['logits'][-1].asnumpy().argmax(axis=1)
    num_distinct = base['num_distinct'].asnumpy()
    structure = _rows_of(base, 'structure')                  # each array copied to the host once
    detail_rows = [_rows_of(d, 'detail') for d in details]
    paths = []
    for i in range(len(images)):
        rows = [dict(name='structure map', **{k: v[i] for k, v in structure.items()})]
        for j, d in enumerate(detail_rows[:len(chans[i])]):
            rows.append(dict(name='detail map (channel %d)' % chans[i][j],
                             **{k: v[i] for k, v in d.items()}))
        title = _title(pred[i], labels[i] if labels is not None else -1, class_names,
                       num_distinct[i])
        paths.append(draw_explanation(os.path.join(out_dir, '%s_%03d.png' % (prefix, i)),
                                      images[i], rows, title))
    return paths


def _title(pred, label, class_names, num_distinct):
    def name(c):
        return class_names[c] if class_names and 0 <= c < len(class_names) else str(c)
    title = 'prediction %s' % name(int(pred))
    if label >= 0:
        title += ' (%s), label %s' % ('right' if pred == label else 'wrong', name(int(label)))
    return title + '; %d distinct attention maps' % int(num_distinct)


def _untrained(ctx, seed, overrides, info):
    """An untrained TASN from ``overrides`` (default ResNet-18 at the paper's sizes)."""
    settings = dict(method='tasn', net='resnet18', input_size=512, att_size=224,
                    sample_size=224, from_scratch=True, num_classes=info.get('num_classes'),
                    class_names=info.get('class_names'))
    settings.update(overrides)
    if not settings.get('num_classes'):
        raise ConfigError('an untrained network needs --num-classes (or --data-dir)')
    cfg = resolve_config(settings)
    seed_everything(seed)
    return builders.build_net(cfg, ctx), cfg.input_size, cfg.class_names


def run_visualize(out_dir, checkpoint=None, data_dir=None, image_files=None, num_images=None,
                  num_details=3, ctx=None, seed=0, overrides=None, one_per_class=True,
                  last_good=False):
    """``tools/visualize.py``: a checkpoint (or an untrained TASN built from ``overrides``) on
    images of ``data_dir``'s val set or on ``image_files`` (not both); returns the PNG paths.
    From ``data_dir``: ``num_images`` (default: every class) of the first image of each class,
    or without ``one_per_class`` the first ``num_images`` val images."""
    ctx = ctx or [mx.cpu()]
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if bool(image_files) == bool(data_dir):
        raise ConfigError('give --data-dir or --images (one of them)')
    for value, what, low in ((num_images, '--num-images', 1), (num_details, '--num-details', 0)):
        if value is not None and int(value) < low:
            raise ConfigError('%s must be >= %d, not %r' % (what, low, value))
    info = read_dataset_info(data_dir) if data_dir else {}
    if checkpoint:
        model = load_model(checkpoint, ctx, overrides, last_good=last_good)
        if not model.net.has_attention:
            raise ModelMismatch('%s is a %s model; only a TASN checkpoint has attention to draw'
                                % (checkpoint, model.kind))
        net, input_size, class_names = model.net, model.input_size, model.class_names
    else:
        net, input_size, class_names = _untrained(ctx, seed, overrides, info)
    if image_files:
        images, labels = load_image_files(image_files, input_size)
    else:
        count = info['num_classes'] if num_images is None else int(num_images)
        images, labels = images_from_rec(data_dir, input_size, count, one_per_class)
    return visualize(net, images, out_dir, labels=labels,
                     class_names=class_names or info.get('class_names'), num_details=num_details)
