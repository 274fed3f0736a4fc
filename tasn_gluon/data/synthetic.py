"""A built-in synthetic fine-grained dataset: every class shows the same large object (a bird-like
figure of random colour, pose, position and scale) on a cluttered background; the classes differ
only in the square badge on its head (its "eye").

A class is a pair (badge colour, badge texture). The colour is visible at any resolution; the
texture is not: it is a two-colour pattern of period ``size / 64`` pixels (horizontal stripes,
vertical stripes or a checkerboard, each half light and half dark), so at the 64-pixel
resolution the baseline and the attention net see, every texture averages (or aliases) to the
same flat patch of the badge colour. A network that looks at the image at 64 pixels can
tell the colour group, not the class; one that zooms into the badge can tell both. That is the
fine-grained situation TASN is built for: the coarse view says where to look, the detail decides.
The rest of the scene is muted (``SCENE_CONTRAST``) so that the badge stands out at 64 pixels.

Zoomed in by 1.2-2x, which is what TASN's sampler gives the badge here, the textures alias to
coarser patterns that keep their kind (stripes along the same axis, a checkerboard). Version 2
also had diagonal stripes (either direction); with them TASN learned the textures far more
slowly (docs/benchmarks.md). Textures start at a random phase, and a horizontal
flip never changes the class. Images are rendered to PNG under ``out_dir/images`` and
packed with the same code path as real datasets (folders layout -> pack_dataset), so the demo
exercises the real pipeline.
"""
import concurrent.futures
import fcntl
import json
import logging
import os
import shutil

import cv2
import numpy as np

from ..errors import DatasetError
from ..files import atomic_write_text
from .folders import list_folders
from .info import cached_info
from .packing import default_num_threads, pack_dataset

logger = logging.getLogger(__name__)

# 1: black-and-white codes; 2: colour x 4 textures (with diagonal stripes); 3: colour x 3
# textures, 160 train and 40 val images per class; 4: the classes named by what they are
# (red-horizontal ...), record checksums.
SYNTHETIC_VERSION = 4
TEXTURES = ('horizontal', 'vertical', 'checker')
# (light, dark) BGR pairs, one per colour group, and the groups' names.
BADGE_COLOURS = (((70, 70, 235), (20, 20, 110)),      # red
                 ((235, 120, 60), (110, 40, 10)),     # blue
                 ((80, 220, 80), (15, 90, 15)),       # green
                 ((60, 220, 235), (10, 90, 110)))     # yellow
COLOUR_NAMES = ('red', 'blue', 'green', 'yellow')
MAX_CLASSES = len(TEXTURES) * len(BADGE_COLOURS)
BADGE_FRACTION = 0.2         # badge side / object length
BLACK = 30
# The scene (background, clutter, bird) is muted to this fraction of its contrast, so that the
# badge is what stands out at 64 px: the attention net, trained from scratch here, has to find
# it to begin with (TASN's attention net normally starts from ImageNet weights).
SCENE_CONTRAST = 0.3


def design_name(design):
    """'red-horizontal': what a class is, its folder's and its class name."""
    return '%s-%s' % (COLOUR_NAMES[design[0]], design[1])


def class_designs(num_classes):
    """For each class, its (colour group, texture name): the first ``num_classes`` pairs with
    the colours in turn (three textures of the first colour, then of the second ...), in the
    order of their names, which is the order of the labels (the class folders, sorted)."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise DatasetError('the synthetic set supports 2..%d classes, got %r'
                           % (MAX_CLASSES, num_classes))
    designs = [(i // len(TEXTURES), TEXTURES[i % len(TEXTURES)]) for i in range(num_classes)]
    return sorted(designs, key=design_name)


def texture_cell(image_size):
    """Cell side in pixels: a texture period (two cells) is 1/64 of the image side, so that at
    64 pixels one period falls on one pixel."""
    return max(1, int(round(image_size / 128.0)))


def texture_mask(texture, side, cell, rng):
    """``side`` x ``side`` 0/1 mask of a texture with ``cell``-pixel cells at a random phase."""
    y, x = np.mgrid[0:side, 0:side]
    y = y + rng.randint(2 * cell)
    x = x + rng.randint(2 * cell)
    if texture == 'horizontal':
        v = y // cell
    elif texture == 'vertical':
        v = x // cell
    elif texture == 'checker':
        v = y // cell + x // cell
    else:
        raise DatasetError('unknown texture %r; choose from %s' % (texture, TEXTURES))
    return (v % 2).astype(np.uint8)


def _random_color(rng, lo=40, hi=220):
    return tuple(int(v) for v in rng.randint(lo, hi, size=3))


def _background(rng, size):
    """Smooth random colour field plus mid-size shapes and lines."""
    coarse = rng.randint(60, 200, size=(4, 4, 3)).astype(np.float32)
    img = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(rng.randint(10, 18)):
        color = _random_color(rng)
        kind = rng.randint(4)
        x, y = (int(v) for v in rng.randint(0, size, 2))
        r = int(rng.uniform(0.03, 0.15) * size)
        if kind == 0:
            cv2.circle(img, (x, y), r, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (x - r, y - r // 2), (x + r, y + r // 2), color, -1)
        elif kind == 2:
            cv2.ellipse(img, (x, y), (r, max(1, r // 3)), float(rng.uniform(0, 180)), 0, 360,
                        color, -1, cv2.LINE_AA)
        else:
            x2, y2 = (int(v) for v in rng.randint(0, size, 2))
            cv2.line(img, (x, y), (x2, y2), color, int(rng.randint(1, 4)), cv2.LINE_AA)
    return img


def _draw_badge(img, design, x0, y0, side, cell, rng):
    """Paints the badge of ``design`` = (colour group, texture) at (x0, y0), ``side`` pixels."""
    light, dark = (np.array(c, np.uint8) for c in BADGE_COLOURS[design[0]])
    mask = texture_mask(design[1], side, cell, rng)
    cv2.rectangle(img, (x0 - 1, y0 - 1), (x0 + side, y0 + side), (BLACK,) * 3, 1)
    img[y0:y0 + side, x0:x0 + side] = np.where(mask[:, :, None] > 0, light, dark)


def render_image(design, rng, size=256):
    """One image of the class ``design`` = (colour group, texture), see :func:`class_designs`.

    Returns (uint8 BGR image of size x size, dict with the object box and the badge box as
    [x0, y0, x1, y1] in pixels, and the texture cell in pixels)."""
    img = _background(rng, size)
    obj = rng.uniform(0.45, 0.75) * size                       # object length in pixels
    cell = texture_cell(size)
    period = 2 * cell
    side = max(period, int(round(BADGE_FRACTION * obj / period)) * period)  # whole periods

    facing = 1 if rng.rand() < 0.5 else -1
    angle = rng.uniform(-25, 25)
    half_w, half_h = 0.5 * obj, 0.3 * obj
    margin = 0.62 * obj                                        # body + head + tail reach
    cx = rng.uniform(margin, size - margin) if size > 2 * margin else size / 2.0
    cy = rng.uniform(0.45 * obj, size - 0.45 * obj) if size > 0.9 * obj else size / 2.0
    body = _random_color(rng, 50, 200)
    dark = tuple(int(c * 0.6) for c in body)
    ux, uy = np.cos(np.radians(angle)) * facing, np.sin(np.radians(angle)) * facing
    # Tail: a triangle behind the body.
    back = np.array([cx - ux * half_w * 0.9, cy - uy * half_w * 0.9])
    nx, ny = -uy, ux
    tail = np.array([back, back + [-ux * 0.35 * obj + nx * 0.15 * obj,
                                   -uy * 0.35 * obj + ny * 0.15 * obj],
                     back + [-ux * 0.35 * obj - nx * 0.15 * obj,
                             -uy * 0.35 * obj - ny * 0.15 * obj]], np.int32)
    cv2.fillPoly(img, [tail], dark, cv2.LINE_AA)
    cv2.ellipse(img, (int(cx), int(cy)), (int(half_w), int(half_h)), angle, 0, 360, body, -1,
                cv2.LINE_AA)
    cv2.ellipse(img, (int(cx - ux * 0.1 * obj), int(cy - uy * 0.1 * obj)),
                (int(half_w * 0.55), int(half_h * 0.5)), angle, 0, 360, dark, -1, cv2.LINE_AA)
    hx, hy = cx + ux * 0.5 * obj - nx * 0.12 * obj, cy + uy * 0.5 * obj - ny * 0.12 * obj
    head_r = 0.17 * obj
    cv2.circle(img, (int(hx), int(hy)), int(head_r), body, -1, cv2.LINE_AA)
    beak = np.array([[hx + ux * head_r * 0.9, hy + uy * head_r * 0.9 - 0.04 * obj],
                     [hx + ux * head_r * 0.9, hy + uy * head_r * 0.9 + 0.04 * obj],
                     [hx + ux * head_r * 1.6, hy + uy * head_r * 1.6]], np.int32)
    cv2.fillPoly(img, [beak], (40, 160, 230), cv2.LINE_AA)
    # Mute the scene; the badge, drawn next, keeps its full contrast.
    img = (128 + SCENE_CONTRAST * (img.astype(np.float32) - 128)).astype(np.uint8)
    bx = int(np.clip(round(hx - side / 2.0), 1, size - side - 1))
    by = int(np.clip(round(hy - side / 2.0), 1, size - side - 1))
    _draw_badge(img, design, bx, by, side, cell, rng)

    noise = rng.normal(0, 3, img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    x_lo, x_hi = cx - margin, cx + margin
    return img, {'object_box': [int(max(0, x_lo)), int(max(0, cy - 0.45 * obj)),
                                int(min(size, x_hi)), int(min(size, cy + 0.45 * obj))],
                 'detail_box': [bx, by, bx + side, by + side], 'cell': cell}


def cached_version(out_dir):
    """The design version of the synthetic set in ``out_dir`` (1 for sets written before versions
    were recorded; None when there is no readable set there)."""
    info = cached_info(out_dir)
    synthetic = info.get('synthetic') if info else None
    return None if info is None else (synthetic or {}).get('version', 1)


def default_synthetic_dir():
    """Where the built-in set is cached: ``$TASN_CACHE/synthetic``, else ``.cache/synthetic`` in
    the checkout."""
    root = os.environ.get('TASN_CACHE') or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), '.cache')
    return os.path.join(root, 'synthetic')


def cached_synthetic_set(may_generate=True):
    """The folder of the built-in set (:func:`default_synthetic_dir`), generated (seeded) on
    first use, and again when the cached copy was made by another version of the generator (it
    would silently change the task). One process generates, others wait (runs started side by
    side on a fresh machine). ``may_generate=False`` only accepts an existing set."""
    d = default_synthetic_dir()
    os.makedirs(os.path.dirname(d), exist_ok=True)
    with open(d + '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        version = cached_version(d)
        if version == SYNTHETIC_VERSION:
            logger.info('using the cached synthetic set in %s', d)
            return d
        if not may_generate:
            raise DatasetError('the built-in synthetic set is not in %s; give --data-dir' % d)
        logger.info('generating the built-in synthetic set into %s (%s)', d,
                    'first use' if version is None else 'the cached one is version %s, not %s'
                    % (version, SYNTHETIC_VERSION))
        make_synthetic_dataset(d)
    return d


def class_names(num_classes):
    return [design_name(d) for d in class_designs(num_classes)]


def make_synthetic_dataset(out_dir, num_classes=6, per_class_train=160, per_class_val=40,
                           image_size=256, seed=0, quality=95, num_threads=None):
    """Renders and packs the synthetic set into ``out_dir`` (train.lst/val.lst, train.rec/.idx,
    val.rec/.idx, dataset.json, plus the PNGs under images/, which is replaced, and per-image
    boxes in synthetic.json). The same arguments give the same files. Returns ``out_dir``."""
    if image_size < 96:
        raise DatasetError('synthetic image_size must be >= 96 so the badge stays several '
                           'texture periods wide, got %r' % (image_size,))
    if per_class_train < 1 or per_class_val < 1:
        raise DatasetError('per_class_train and per_class_val must be >= 1')
    designs = class_designs(num_classes)
    names = class_names(num_classes)
    # Start from an empty images/ so PNGs of an earlier, larger call are not packed too.
    shutil.rmtree(os.path.join(out_dir, 'images'), ignore_errors=True)
    jobs = []
    for split_id, (split, count) in enumerate((('train', per_class_train),
                                               ('val', per_class_val))):
        for label in range(num_classes):
            folder = os.path.join(out_dir, 'images', split, names[label])
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                jobs.append((split, split_id, label, i,
                             os.path.join(folder, '%05d.png' % i)))

    def render(job):
        split, split_id, label, i, path = job
        # One generator per image: the output does not depend on thread scheduling.
        rng = np.random.RandomState([seed, split_id, label, i])
        img, meta = render_image(designs[label], rng, image_size)
        if not cv2.imwrite(path, img):
            raise DatasetError('cannot write %s' % path)
        meta.update(split=split, label=label,
                    path=os.path.relpath(path, os.path.join(out_dir, 'images', split)))
        return meta

    with concurrent.futures.ThreadPoolExecutor(num_threads or default_num_threads()) as pool:
        metas = list(pool.map(render, jobs))
    splits = list_folders(os.path.join(out_dir, 'images', 'train'),
                          val_root=os.path.join(out_dir, 'images', 'val'), name='synthetic')
    params = {'version': SYNTHETIC_VERSION, 'num_classes': num_classes,
              'per_class_train': per_class_train,
              'per_class_val': per_class_val, 'image_size': image_size, 'seed': seed,
              'texture_cell': texture_cell(image_size),
              'classes': [dict(colour_group=g, texture=t) for g, t in designs]}
    pack_dataset(splits, out_dir, resize=image_size, quality=quality, num_threads=num_threads,
                 layout='synthetic', extra_info={'synthetic': params})
    atomic_write_text(os.path.join(out_dir, 'synthetic.json'),
                      json.dumps({'params': params, 'images': metas}, indent=0, sort_keys=True))
    return out_dir
