"""CUB-200-2011 as distributed (CUB_200_2011.tgz): the official train/test split."""
import os

from ..errors import DatasetError, first_few
from .splits import DatasetSplits, Entry
from .tables import read_id_table, split_file

SPLIT_FILES = ('images.txt', 'image_class_labels.txt', 'train_test_split.txt', 'classes.txt')


def find_cub_root(root):
    """Accepts the CUB_200_2011 folder itself or the folder that contains it."""
    if not os.path.isdir(root):
        raise DatasetError('CUB-200-2011: %s is not a folder' % root)
    if not os.path.isfile(os.path.join(root, 'images.txt')):
        inner = os.path.join(root, 'CUB_200_2011')
        if os.path.isfile(os.path.join(inner, 'images.txt')):
            return inner
    return root


def list_cub(root):
    """Reads CUB-200-2011's split files under ``root`` into DatasetSplits (train = the official
    training images, val = the official test images; labels = class id - 1)."""
    root = find_cub_root(root)
    what = 'CUB-200-2011'
    missing = [n for n in SPLIT_FILES if not os.path.isfile(os.path.join(root, n))]
    if missing:
        raise DatasetError('%s: missing split file(s) %s under %s'
                           % (what, ', '.join(missing), root))
    images = read_id_table(split_file(root, 'images.txt', what))
    labels = read_id_table(split_file(root, 'image_class_labels.txt', what), int)
    is_train = read_id_table(split_file(root, 'train_test_split.txt', what), int)
    classes = read_id_table(split_file(root, 'classes.txt', what))

    class_ids = sorted(classes)
    if class_ids != list(range(1, len(class_ids) + 1)):
        raise DatasetError('%s: classes.txt ids must be 1..%d without gaps, got %s'
                           % (what, len(class_ids), first_few(class_ids)))
    for name, table in (('image_class_labels.txt', labels), ('train_test_split.txt', is_train)):
        absent = [i for i in images if i not in table]
        extra = [i for i in table if i not in images]
        if absent:
            raise DatasetError('%s: %d image id(s) of images.txt have no line in %s: %s'
                               % (what, len(absent), name, first_few(absent)))
        if extra:
            raise DatasetError('%s: %d id(s) in %s are not in images.txt: %s'
                               % (what, len(extra), name, first_few(extra)))
    bad_flags = [i for i, f in is_train.items() if f not in (0, 1)]
    if bad_flags:
        raise DatasetError('%s: train_test_split.txt flags must be 0 or 1 (image ids %s)'
                           % (what, first_few(bad_flags)))
    bad_labels = [(i, c) for i, c in labels.items() if c not in classes]
    if bad_labels:
        raise DatasetError('%s: %d label(s) out of range 1..%d in image_class_labels.txt: %s'
                           % (what, len(bad_labels), len(classes),
                              first_few('image %d -> %d' % ic for ic in bad_labels)))

    train, val = [], []
    for image_id in sorted(images):
        entry = Entry('images/' + images[image_id], labels[image_id] - 1)
        (train if is_train[image_id] == 1 else val).append(entry)
    return DatasetSplits('cub', [classes[i] for i in class_ids], train, val, root)
