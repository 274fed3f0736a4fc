#!/usr/bin/env python
"""Packs a fine-grained dataset as distributed into the folder the trainer reads.

    python tools/im2rec.py --dataset cub --root /data/CUB_200_2011 --out /data/cub_rec
    python tools/im2rec.py --dataset cars --root /data/stanford_cars --out /data/cars_rec
    python tools/im2rec.py --dataset inat --root /data/inat2017 --out /data/inat_rec
    python tools/im2rec.py --dataset folders --root /d/train --val-root /d/val --out /d_rec

writes OUT/train.lst, val.lst, train.rec/.idx, train.crc32, val.rec/.idx, val.crc32 and
dataset.json (and bad_images.txt when --skip-bad skipped images); OUT may not lie in the
dataset's image tree. See docs/datasets.md.
"""
import logging
import os
import sys

from tasn_gluon import cli
from tasn_gluon.cli import non_negative_int, positive_int
from tasn_gluon.data.layouts import LAYOUTS, prepare_dataset
from tasn_gluon.data.packing import default_num_threads

logger = logging.getLogger('tasn_gluon.im2rec')


def _fraction(text):
    value = float(text)
    if not 0 < value < 1:
        raise ValueError(text)
    return value


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('--dataset', '--layout', dest='dataset', required=True, choices=sorted(LAYOUTS),
      help='layout of the dataset under --root')
    a('--root', required=True, help='the dataset folder as distributed')
    a('--out', required=True, help='output folder (created with its parents; a dataset already '
                                   'there is replaced only when the new one is complete)')
    a('--resize', type=non_negative_int, default=512,
      help='shorter side of the stored images in pixels, 0 keeps the size (default: '
           '%(default)s)')
    a('--quality', type=positive_int, default=95, help='JPEG quality 1..100 (default: '
                                                       '%(default)s)')
    a('--num-thread', type=positive_int, default=None,
      help='encoding threads (default: all cores, %d here)' % default_num_threads())
    a('--skip-bad', action='store_true', help='skip unreadable or corrupt images and list them '
                                              'in OUT/bad_images.txt instead of failing')
    a('--no-progress', action='store_true', help='no progress bar (default: one when stderr is '
                                                 'a terminal)')
    g = p.add_argument_group('folders layout')
    g.add_argument('--val-root', default=None,
                   help='folder with the same class sub-folders to use as the val split')
    g.add_argument('--val-fraction', type=_fraction, default=0.2,
                   help='without --val-root: fraction (0..1) of each class put in val '
                        '(default: %(default)s)')
    g.add_argument('--split-seed', type=non_negative_int, default=0,
                   help='seed of that split (default: %(default)s)')
    g = p.add_argument_group('inat layout')
    g.add_argument('--image-root', default=None,
                   help='folder the JSON file_name paths start from (default: --root)')
    args = p.parse_args(argv)
    if args.dataset != 'folders' and args.val_root is not None:
        p.error('--val-root only applies to --dataset folders')
    if args.dataset != 'inat' and args.image_root is not None:
        p.error('--image-root only applies to --dataset inat')
    return args


def work(args):
    options = {}
    if args.dataset == 'folders':
        options = dict(val_root=args.val_root, val_fraction=args.val_fraction,
                       split_seed=args.split_seed)
    elif args.dataset == 'inat' and args.image_root:
        options = dict(image_root=args.image_root)
    info = prepare_dataset(args.dataset, args.root, args.out, resize=args.resize,
                           quality=args.quality, num_threads=args.num_thread,
                           skip_bad=args.skip_bad, progress=False if args.no_progress else None,
                           **options)
    logger.info('%s: %d classes, %d train and %d val images packed into %s', info['name'],
                info['num_classes'], info['num_train'], info['num_val'], args.out)
    if info['bad_images_report']:
        logger.warning('skipped %d bad image(s): see %s', sum(info['skipped'].values()),
                       os.path.join(args.out, info['bad_images_report']))


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
