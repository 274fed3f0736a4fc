"""dataset.json: what a packed dataset folder holds; the trainer reads only this folder. This
module is the one that knows the file's name and format."""
import json
import os

from ..errors import DatasetError
from ..files import atomic_write_text

__all__ = ['INFO_NAME', 'FORMAT', 'info_path', 'is_packed', 'read_dataset_info',
           'write_dataset_info', 'cached_info']

INFO_NAME = 'dataset.json'
FORMAT = 'tasn-gluon-dataset'        # its "format" entry
REQUIRED_KEYS = ('name', 'num_classes', 'class_names', 'num_train', 'num_val', 'packing')
RECORD_FILES = ('train.rec', 'train.idx', 'val.rec', 'val.idx')


def info_path(data_dir):
    """The path of ``data_dir``'s dataset.json."""
    return os.path.join(data_dir, INFO_NAME)


def is_packed(data_dir):
    """Whether ``data_dir`` holds a dataset.json (a packed folder, complete or not)."""
    return os.path.isfile(info_path(data_dir))


def write_dataset_info(data_dir, info):
    """Writes ``info`` as data_dir/dataset.json (atomically)."""
    return atomic_write_text(info_path(data_dir),
                             json.dumps(info, indent=1, sort_keys=True) + '\n')


def cached_info(data_dir):
    """dataset.json's content, or None when the folder holds none or an unreadable one (a
    cache that is made anew then)."""
    try:
        with open(info_path(data_dir), encoding='utf-8') as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def read_dataset_info(data_dir, check_records=True):
    """The contents of ``data_dir/dataset.json`` as a dict, with at least ``name``,
    ``num_classes``, ``class_names``, ``num_train``, ``num_val`` and ``packing`` (resize,
    quality, ...). DatasetError when the folder is not a packed dataset or is incomplete."""
    path = info_path(data_dir)
    if not os.path.isfile(path):
        raise DatasetError('%s not found: %s is not a packed dataset folder (make one with '
                           'tools/im2rec.py or tasn_gluon.data.synthetic)' % (path, data_dir))
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except ValueError as exc:
        raise DatasetError('%s is not valid JSON: %s' % (path, exc))
    if not isinstance(info, dict):
        raise DatasetError('%s must hold a JSON object' % path)
    missing = [k for k in REQUIRED_KEYS if k not in info]
    if missing:
        raise DatasetError('%s lacks %s' % (path, ', '.join(missing)))
    if info['num_classes'] != len(info['class_names']):
        raise DatasetError('%s: num_classes is %r but %d class names are listed'
                           % (path, info['num_classes'], len(info['class_names'])))
    if check_records:
        absent = [n for n in RECORD_FILES if not os.path.isfile(os.path.join(data_dir, n))]
        if absent:
            raise DatasetError('%s: record file(s) %s missing beside %s'
                               % (data_dir, ', '.join(absent), INFO_NAME))
    return info
