"""dataset.json: what a packed dataset folder holds; the trainer reads only this folder."""
import json
import os

from .errors import DatasetError

INFO_NAME = 'dataset.json'
FORMAT = 'tasn-gluon-dataset'
REQUIRED_KEYS = ('name', 'num_classes', 'class_names', 'num_train', 'num_val', 'packing')
RECORD_FILES = ('train.rec', 'train.idx', 'val.rec', 'val.idx')


def write_dataset_info(data_dir, info):
    """Writes ``info`` as data_dir/dataset.json (through a temporary name)."""
    path = os.path.join(data_dir, INFO_NAME)
    tmp = path + '.tmp'
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(info, f, indent=1, sort_keys=True)
        f.write('\n')
    os.replace(tmp, path)
    return path


def read_dataset_info(data_dir, check_records=True):
    """The contents of ``data_dir/dataset.json`` as a dict, with at least ``name``,
    ``num_classes``, ``class_names``, ``num_train``, ``num_val`` and ``packing`` (resize,
    quality, ...). DatasetError when the folder is not a packed dataset or is incomplete."""
    path = os.path.join(data_dir, INFO_NAME)
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
            raise DatasetError('%s: record file(s) %s missing beside dataset.json'
                               % (data_dir, ', '.join(absent)))
    return info
