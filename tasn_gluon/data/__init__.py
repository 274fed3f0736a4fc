"""Datasets for TASN: official split files -> packed RecordIO folders (im2rec), the paper's
input pipeline over them, and a built-in synthetic fine-grained set.

Typical use::

    from tasn_gluon import data
    data.prepare_dataset('cub', '/data/CUB_200_2011', '/data/cub_rec')   # once
    info = data.read_dataset_info('/data/cub_rec')
    train = data.get_train_iter('/data/cub_rec', batch_size=12, input_size=512)
    val = data.get_val_iter('/data/cub_rec', batch_size=12, input_size=512)

The iterators check the record files first (``verify='full'``: structure and checksums).
"""
from ..errors import DatasetError
from .splits import DatasetSplits, Entry, read_lst, write_lst
from .cub import list_cub
from .cars import list_cars
from .inat import list_inat
from .folders import list_folders
from .info import is_packed, read_dataset_info, write_dataset_info
from .packing import pack_dataset, pack_records
from .layouts import LAYOUTS, list_dataset, prepare_dataset
from .pipeline import (MEAN_RGB, TRAIN_AUGMENT, TRAIN_LAST_BATCH, RecordIter, count_shard,
                       get_train_iter, get_val_iter)
from .color import BatchColorJitter
from .preprocess import BadImage, decode_rgb, load_val_image, val_preprocess
from .records import VERIFY_LEVELS, check_split
from . import synthetic

__all__ = ['DatasetError', 'DatasetSplits', 'Entry', 'read_lst', 'write_lst', 'list_cub',
           'list_cars', 'list_inat', 'list_folders', 'is_packed', 'read_dataset_info',
           'write_dataset_info', 'pack_dataset', 'pack_records', 'LAYOUTS', 'list_dataset',
           'prepare_dataset', 'MEAN_RGB', 'TRAIN_AUGMENT', 'TRAIN_LAST_BATCH', 'RecordIter',
           'count_shard', 'get_train_iter', 'get_val_iter', 'BatchColorJitter', 'BadImage',
           'decode_rgb', 'load_val_image', 'val_preprocess', 'VERIFY_LEVELS', 'check_split',
           'synthetic']
