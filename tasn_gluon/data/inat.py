"""iNaturalist 2017: ``train2017.json`` / ``val2017.json`` (COCO style: images, annotations,
categories) with the image folder they point into (``train_val_images/...``)."""
import json
import os

from ..errors import DatasetError, first_few
from .splits import DatasetSplits, Entry

WHAT = 'iNaturalist 2017'
SPLIT_FILES = {'train': 'train2017.json', 'val': 'val2017.json'}


def _load_json(path):
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except ValueError as exc:
        raise DatasetError('%s: %s is not valid JSON: %s' % (WHAT, path, exc))


def _require_keys(obj, keys, where):
    if not isinstance(obj, dict):
        raise DatasetError('%s: %s must be a JSON object' % (WHAT, where))
    missing = [k for k in keys if k not in obj]
    if missing:
        raise DatasetError('%s: %s lacks %s' % (WHAT, where, ', '.join(missing)))


def _categories(doc, path):
    _require_keys(doc, ['images', 'annotations', 'categories'], path)
    cats = {}
    for c in doc['categories']:
        _require_keys(c, ['id', 'name'], '%s: a category' % path)
        if c['id'] in cats:
            raise DatasetError('%s: duplicate category id %r in %s' % (WHAT, c['id'], path))
        cats[c['id']] = str(c['name'])
    if not cats:
        raise DatasetError('%s: %s lists no categories' % (WHAT, path))
    return cats


def _entries(doc, path, label_of):
    images = {}
    for im in doc['images']:
        _require_keys(im, ['id', 'file_name'], '%s: an image' % path)
        if im['id'] in images:
            raise DatasetError('%s: duplicate image id %r in %s' % (WHAT, im['id'], path))
        images[im['id']] = im['file_name']
    labels = {}
    for a in doc['annotations']:
        _require_keys(a, ['image_id', 'category_id'], '%s: an annotation' % path)
        if a['image_id'] not in images:
            raise DatasetError('%s: an annotation in %s refers to unknown image id %r'
                               % (WHAT, path, a['image_id']))
        if a['image_id'] in labels and labels[a['image_id']] != a['category_id']:
            raise DatasetError('%s: image id %r has two different categories in %s'
                               % (WHAT, a['image_id'], path))
        if a['category_id'] not in label_of:
            raise DatasetError('%s: label out of range: category id %r (image id %r) is not '
                               'among the categories of %s' % (WHAT, a['category_id'],
                                                               a['image_id'], path))
        labels[a['image_id']] = a['category_id']
    unlabelled = [i for i in images if i not in labels]
    if unlabelled:
        raise DatasetError('%s: %d image(s) of %s have no annotation: ids %s'
                           % (WHAT, len(unlabelled), path, first_few(unlabelled)))
    return [Entry(images[i], label_of[labels[i]]) for i in sorted(images)]


def list_inat(root, image_root=None):
    """Reads the 2017 train and val JSON files under ``root``; image paths in them are relative
    to ``image_root`` (default: ``root``). Categories are sorted by id and numbered from 0."""
    if not os.path.isdir(root):
        raise DatasetError('%s: %s is not a folder' % (WHAT, root))
    paths = {k: os.path.join(root, v) for k, v in SPLIT_FILES.items()}
    missing = [SPLIT_FILES[k] for k, p in paths.items() if not os.path.isfile(p)]
    if missing:
        raise DatasetError('%s: missing split file(s) %s under %s'
                           % (WHAT, ', '.join(missing), root))
    docs = {k: _load_json(p) for k, p in paths.items()}
    cats = _categories(docs['train'], paths['train'])
    if _categories(docs['val'], paths['val']) != cats:
        raise DatasetError('%s: %s and %s list different categories'
                           % (WHAT, paths['train'], paths['val']))
    ids = sorted(cats)
    label_of = {cid: i for i, cid in enumerate(ids)}
    train = _entries(docs['train'], paths['train'], label_of)
    val = _entries(docs['val'], paths['val'], label_of)
    return DatasetSplits('inat2017', [cats[i] for i in ids], train, val, image_root or root)
