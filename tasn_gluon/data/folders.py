"""Any folder of class sub-folders (``root/<class>/<image>``): classes are the sorted sub-folder
names; val is either a second folder with the same classes or a seeded per-class fraction."""
import os

import numpy as np

from ..errors import DatasetError, first_few
from .splits import DatasetSplits, Entry

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def image_files(folder):
    """The image files under ``folder`` (recursively, by extension; hidden files and folders
    left out), in walk order: sorted folders, sorted files in each."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        found += [os.path.join(dirpath, f) for f in sorted(filenames)
                  if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith('.')]
    return found


def _scan(root):
    """{class name: sorted relative image paths} of ``root``; DatasetError if there are none."""
    if not os.path.isdir(root):
        raise DatasetError('folders layout: %s is not a folder' % root)
    classes = sorted(d for d in os.listdir(root)
                     if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
    if not classes:
        raise DatasetError('folders layout: %s has no class sub-folders' % root)
    found = {}
    for c in classes:
        found[c] = sorted(os.path.relpath(f, root) for f in image_files(os.path.join(root, c)))
    empty = [c for c, files in found.items() if not files]
    if empty:
        raise DatasetError('folders layout: %d class folder(s) of %s hold no images (%s): %s'
                           % (len(empty), root, '/'.join(IMAGE_EXTENSIONS), first_few(empty)))
    return found


def split_per_class(files, val_fraction, seed):
    """(train, val) of one class's files: a seeded shuffle, round(fraction * n) to val, at least
    one image to each side when the class has two or more."""
    n = len(files)
    order = np.random.RandomState(seed).permutation(n)
    n_val = int(round(val_fraction * n))
    if n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    chosen = set(order[:n_val].tolist())
    return ([f for i, f in enumerate(files) if i not in chosen],
            [f for i, f in enumerate(files) if i in chosen])


def list_folders(root, val_root=None, val_fraction=0.2, split_seed=0, name=None):
    """Class-folder dataset. With ``val_root`` (same class sub-folders) that folder is the val
    split; otherwise ``val_fraction`` of each class goes to val, chosen with ``split_seed``."""
    train_found = _scan(root)
    classes = sorted(train_found)
    name = name or os.path.basename(os.path.normpath(os.path.abspath(root)))
    if val_root is not None:
        val_found = _scan(val_root)
        if sorted(val_found) != classes:
            only_val = sorted(set(val_found) - set(classes))
            only_train = sorted(set(classes) - set(val_found))
            raise DatasetError('folders layout: %s and %s have different class folders '
                               '(only in train: %s; only in val: %s)' % (
                                   root, val_root, first_few(only_train) or '-',
                                   first_few(only_val) or '-'))
        train = [Entry(f, i) for i, c in enumerate(classes) for f in train_found[c]]
        val = [Entry(f, i) for i, c in enumerate(classes) for f in val_found[c]]
        return DatasetSplits(name, classes, train, val, root, val_root)
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError('folders layout: the val fraction must be in (0, 1), got %r '
                           '(or give a val folder)' % (val_fraction,))
    train, val = [], []
    for i, c in enumerate(classes):
        # One seed per class (seed, class index) so adding a class leaves the others' split alone.
        t, v = split_per_class(train_found[c], val_fraction, [split_seed, i])
        train += [Entry(f, i) for f in t]
        val += [Entry(f, i) for f in v]
    return DatasetSplits(name, classes, train, val, root)
