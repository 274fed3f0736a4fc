"""Tiny datasets in each official on-disk layout (real JPEG files, real split files), for tests,
CI and trying the packer without downloading anything. Each maker returns the dataset root to
pass to the matching ``list_*`` reader; images are small (about 40 x 56 px)."""
import json
import os

import cv2
import numpy as np


def write_image(path, rng, height=40, width=56, label=0):
    """A small JPEG: a random smooth colour field with a label-dependent bar (so classes differ)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    coarse = rng.randint(0, 255, size=(3, 3, 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_LINEAR)
    x = (label * 7) % max(1, width - 4)
    img[:, x:x + 4] = 255
    if not cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8)):
        raise IOError('cannot write %s' % path)
    return path


def make_fake_cub(root, num_classes=3, per_class=4, seed=0):
    """CUB_200_2011/ under ``root``; the first half of each class is train. Returns its path."""
    rng = np.random.RandomState(seed)
    base = os.path.join(root, 'CUB_200_2011')
    os.makedirs(base, exist_ok=True)
    images, labels, split, classes = [], [], [], []
    image_id = 0
    for c in range(1, num_classes + 1):
        cname = '%03d.Bird_%d' % (c, c)
        classes.append('%d %s' % (c, cname))
        for i in range(per_class):
            image_id += 1
            rel = '%s/Bird_%d_%04d.jpg' % (cname, c, i)
            write_image(os.path.join(base, 'images', rel), rng, label=c - 1)
            images.append('%d %s' % (image_id, rel))
            labels.append('%d %d' % (image_id, c))
            split.append('%d %d' % (image_id, 1 if i < per_class // 2 else 0))
    for name, lines in (('images.txt', images), ('image_class_labels.txt', labels),
                        ('train_test_split.txt', split), ('classes.txt', classes)):
        with open(os.path.join(base, name), 'w') as f:
            f.write('\n'.join(lines) + '\n')
    return base


def _struct_array(rows, fields):
    """A (1, n) numpy structured array that scipy.io.savemat writes as a MATLAB struct array."""
    arr = np.zeros((1, len(rows)), dtype=[(f, 'O') for f in fields])
    for i, row in enumerate(rows):
        for f in fields:
            arr[0, i][f] = row[f]
    return arr


def _cell(strings):
    cell = np.empty((1, len(strings)), dtype=object)
    for i, s in enumerate(strings):
        cell[0, i] = s
    return cell


def make_fake_cars(root, layout='annos', num_classes=3, per_class=4, seed=0):
    """Stanford Cars under ``root`` in the ``annos`` (cars_annos.mat + car_ims/) or ``devkit``
    layout; the first half of each class is train. Returns ``root``."""
    import scipy.io
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    names = ['Make%d Model%d 20%02d' % (c, c, c) for c in range(1, num_classes + 1)]
    box = {'bbox_x1': np.uint8(1), 'bbox_y1': np.uint8(1), 'bbox_x2': np.uint8(50),
           'bbox_y2': np.uint8(30)}
    rows = {'train': [], 'test': []}
    n = 0
    for c in range(1, num_classes + 1):
        for i in range(per_class):
            n += 1
            which = 'train' if i < per_class // 2 else 'test'
            rows[which].append((n, c))
    if layout == 'annos':
        annos = []
        for which in ('train', 'test'):
            for n, c in rows[which]:
                rel = 'car_ims/%06d.jpg' % n
                write_image(os.path.join(root, rel), rng, label=c - 1)
                annos.append(dict(box, relative_im_path=rel, **{'class': np.uint8(c)},
                                  test=np.uint8(which == 'test')))
        annos.sort(key=lambda a: a['relative_im_path'])
        scipy.io.savemat(os.path.join(root, 'cars_annos.mat'), {
            'annotations': _struct_array(annos, ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2',
                                                 'class', 'test', 'relative_im_path']),
            'class_names': _cell(names)})
    elif layout == 'devkit':
        os.makedirs(os.path.join(root, 'devkit'), exist_ok=True)
        scipy.io.savemat(os.path.join(root, 'devkit', 'cars_meta.mat'),
                         {'class_names': _cell(names)})
        for which, mat in (('train', os.path.join('devkit', 'cars_train_annos.mat')),
                           ('test', 'cars_test_annos_withlabels.mat')):
            annos = []
            for k, (n, c) in enumerate(rows[which], 1):
                fname = '%05d.jpg' % k
                write_image(os.path.join(root, 'cars_' + which, fname), rng, label=c - 1)
                annos.append(dict(box, fname=fname, **{'class': np.uint8(c)}))
            scipy.io.savemat(os.path.join(root, mat), {'annotations': _struct_array(
                annos, ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname'])})
    else:
        raise ValueError("layout must be 'annos' or 'devkit', not %r" % (layout,))
    return root


def make_fake_inat(root, num_classes=3, per_class=4, seed=0, first_category_id=10):
    """iNaturalist-2017-style train2017.json / val2017.json and train_val_images/ under
    ``root``; category ids start at ``first_category_id`` with a gap of 10 between them (to
    exercise the id -> label mapping). The first half of each class is train. Returns ``root``."""
    rng = np.random.RandomState(seed)
    os.makedirs(root, exist_ok=True)
    cats = [{'id': first_category_id + 10 * c, 'name': 'Species %d' % c,
             'supercategory': 'Aves'} for c in range(num_classes)]
    docs = {w: {'images': [], 'annotations': [], 'categories': cats, 'info': {}}
            for w in ('train', 'val')}
    image_id = 1000
    for c, cat in enumerate(cats):
        for i in range(per_class):
            image_id += 1
            which = 'train' if i < per_class // 2 else 'val'
            rel = 'train_val_images/Aves/%s/%08x.jpg' % (cat['name'].replace(' ', '_'),
                                                         image_id * 2654435761 % 2 ** 32)
            write_image(os.path.join(root, rel), rng, label=c)
            docs[which]['images'].append({'id': image_id, 'file_name': rel, 'width': 56,
                                          'height': 40})
            docs[which]['annotations'].append({'id': image_id, 'image_id': image_id,
                                               'category_id': cat['id']})
    for which, doc in docs.items():
        with open(os.path.join(root, '%s2017.json' % which), 'w') as f:
            json.dump(doc, f)
    return root


def make_fake_folders(root, num_classes=3, per_class=5, seed=0):
    """``root/class_<i>/img_<j>.jpg``. Returns ``root``."""
    rng = np.random.RandomState(seed)
    for c in range(num_classes):
        for i in range(per_class):
            write_image(os.path.join(root, 'class_%d' % c, 'img_%02d.jpg' % i), rng, label=c)
    return root
