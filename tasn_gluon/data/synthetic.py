"""A built-in synthetic fine-grained dataset: every class shows the same large object (a bird-like
figure of random colour, pose, position and scale) on a cluttered background; the classes differ
only in a small black-and-white badge (its "eye"): a 6x6 grid of cells 2-3 pixels wide at 256 px,
about 5-7 % of the image side.

The badge codes are built so that low resolution hides them: the grid is made of 2x2 blocks that
are each a diagonal or an anti-diagonal pair of white cells, so every row, column and block has
the same amount of white, and the codes differ only at the finest scale; shrunk a few times they
all become the same grey square. Each class has two variants, a code and its mirror image, so
horizontal-flip augmentation never changes the class. The background holds decoy grids of the
same size and cell size built from striped blocks (never a class code), so a network has to find
the object, not just any fine texture.

Images are rendered to PNG under ``out_dir/images`` and packed with the same code path as real
datasets (folders layout -> pack_dataset), so the demo exercises the real pipeline.
"""
import concurrent.futures
import itertools
import json
import os
import shutil

import cv2
import numpy as np

from .errors import DatasetError
from .folders import list_folders
from .packing import default_num_threads, pack_dataset

BLOCKS = 3                 # the badge is BLOCKS x BLOCKS blocks of 2 x 2 cells
GRID = 2 * BLOCKS          # cells per side
BLACK, WHITE = 30, 225
DIAGONAL = np.array([[1, 0], [0, 1]], np.uint8)
ANTI_DIAGONAL = np.array([[0, 1], [1, 0]], np.uint8)
MAX_CLASSES = 2 ** (BLOCKS * BLOCKS - 1)


def code_from_bits(bits):
    """BLOCKS*BLOCKS bits -> GRID x GRID cells: bit 0 = diagonal block, 1 = anti-diagonal."""
    rows = [np.hstack([ANTI_DIAGONAL if bits[r * BLOCKS + c] else DIAGONAL
                       for c in range(BLOCKS)]) for r in range(BLOCKS)]
    return np.vstack(rows)


def _mirror_bits(bits):
    """Bits of the horizontally mirrored code: block columns reverse, each block flips type."""
    return tuple(1 - bits[r * BLOCKS + (BLOCKS - 1 - c)]
                 for r in range(BLOCKS) for c in range(BLOCKS))


def detail_codes(num_classes):
    """For each class, the list of its badge codes (GRID x GRID uint8 0/1 arrays): a code and
    its mirror image, so that horizontal flipping never changes the class. Fixed for all seeds.

    Every 2x2 block is a diagonal or an anti-diagonal pair of white cells, so every row, column
    and block of every code has the same amount of white: the codes differ only at the finest
    scale and blur to the same grey square. Classes are chosen greedily to differ in as many
    blocks as possible."""
    if not 2 <= num_classes <= MAX_CLASSES:
        raise DatasetError('the synthetic set supports 2..%d classes, got %r'
                           % (MAX_CLASSES, num_classes))
    orbits, seen = [], set()
    for bits in itertools.product((0, 1), repeat=BLOCKS * BLOCKS):
        if bits not in seen:
            pair = sorted({bits, _mirror_bits(bits)})
            seen.update(pair)
            orbits.append(pair)

    def distance(a, b):
        return min(sum(x != y for x, y in zip(p, q)) for p in a for q in b)

    chosen = []
    for min_dist in (3, 2, 1):  # blocks; later passes fill up when an earlier one runs out
        for orbit in orbits:
            if len(chosen) == num_classes:
                break
            if orbit not in chosen and all(distance(orbit, o) >= min_dist for o in chosen):
                chosen.append(orbit)
    return [[code_from_bits(b) for b in orbit] for orbit in chosen]


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


def _draw_grid(img, code, x0, y0, cell):
    """Paints a GRID x GRID code with ``cell``-pixel cells and a one-pixel dark frame."""
    side = GRID * cell
    cv2.rectangle(img, (x0 - 1, y0 - 1), (x0 + side, y0 + side), (BLACK,) * 3, 1)
    block = np.where(np.kron(code, np.ones((cell, cell), np.uint8)) > 0, WHITE, BLACK)
    img[y0:y0 + side, x0:x0 + side] = block[:, :, None].astype(np.uint8)


STRIPE_BLOCKS = [np.array(b, np.uint8) for b in
                 ([[1, 1], [0, 0]], [[0, 0], [1, 1]], [[1, 0], [1, 0]], [[0, 1], [0, 1]])]


def _decoy_code(rng):
    """A grid of the badge's size and cell size built from striped 2x2 blocks, so it is never a
    class code: fine texture that is not the detail."""
    return np.vstack([np.hstack([STRIPE_BLOCKS[rng.randint(4)] for _ in range(BLOCKS)])
                      for _ in range(BLOCKS)])


def render_image(codes, rng, size=256, detail_fraction=0.014):
    """One image of the class whose badge variants are ``codes`` (one is drawn at random).

    Returns (uint8 BGR image of size x size, dict with the object box and the badge box as
    [x0, y0, x1, y1] in pixels)."""
    img = _background(rng, size)
    obj = rng.uniform(0.45, 0.75) * size                       # object length in pixels
    cell = max(2, int(round(detail_fraction * obj)))
    for _ in range(rng.randint(2, 5)):                         # decoys of the same cell size
        side = GRID * cell
        x, y = (int(v) for v in rng.randint(1, size - side - 1, 2))
        _draw_grid(img, _decoy_code(rng), x, y, cell)

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
    side = GRID * cell
    bx = int(np.clip(round(hx - side / 2.0), 1, size - side - 1))
    by = int(np.clip(round(hy - side / 2.0), 1, size - side - 1))
    _draw_grid(img, codes[rng.randint(len(codes))], bx, by, cell)

    noise = rng.normal(0, 3, img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    x_lo, x_hi = cx - margin, cx + margin
    return img, {'object_box': [int(max(0, x_lo)), int(max(0, cy - 0.45 * obj)),
                                int(min(size, x_hi)), int(min(size, cy + 0.45 * obj))],
                 'detail_box': [bx, by, bx + side, by + side], 'cell': cell}


def class_names(num_classes):
    return ['class_%02d' % i for i in range(num_classes)]


def make_synthetic_dataset(out_dir, num_classes=8, per_class_train=40, per_class_val=10,
                           image_size=256, seed=0, quality=95, num_threads=None,
                           detail_fraction=0.014):
    """Renders and packs the synthetic set into ``out_dir`` (train.lst/val.lst, train.rec/.idx,
    val.rec/.idx, dataset.json, plus the PNGs under images/, which is replaced, and per-image
    boxes in synthetic.json). The same arguments give the same files. Returns ``out_dir``."""
    if image_size < 96:
        raise DatasetError('synthetic image_size must be >= 96 so the badge cells stay >= 2 px '
                           'relative to the object, got %r' % (image_size,))
    if per_class_train < 1 or per_class_val < 1:
        raise DatasetError('per_class_train and per_class_val must be >= 1')
    codes = detail_codes(num_classes)
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
        img, meta = render_image(codes[label], rng, image_size, detail_fraction)
        if not cv2.imwrite(path, img):
            raise DatasetError('cannot write %s' % path)
        meta.update(split=split, label=label,
                    path=os.path.relpath(path, os.path.join(out_dir, 'images', split)))
        return meta

    with concurrent.futures.ThreadPoolExecutor(num_threads or default_num_threads()) as pool:
        metas = list(pool.map(render, jobs))
    splits = list_folders(os.path.join(out_dir, 'images', 'train'),
                          val_root=os.path.join(out_dir, 'images', 'val'), name='synthetic')
    params = {'num_classes': num_classes, 'per_class_train': per_class_train,
              'per_class_val': per_class_val, 'image_size': image_size, 'seed': seed,
              'detail_fraction': detail_fraction,
              'codes': [[c.tolist() for c in variants] for variants in codes]}
    pack_dataset(splits, out_dir, resize=image_size, quality=quality, num_threads=num_threads,
                 layout='synthetic', extra_info={'synthetic': params})
    with open(os.path.join(out_dir, 'synthetic.json'), 'w') as f:
        json.dump({'params': params, 'images': metas}, f, indent=0, sort_keys=True)
    return out_dir
