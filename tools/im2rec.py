#!/usr/bin/env python
"""Packs a fine-grained dataset as distributed into the folder the trainer reads.

    python tools/im2rec.py --dataset cub --root /data/CUB_200_2011 --out /data/cub_rec
    python tools/im2rec.py --dataset cars --root /data/stanford_cars --out /data/cars_rec
    python tools/im2rec.py --dataset inat --root /data/inat2017 --out /data/inat_rec
    python tools/im2rec.py --dataset folders --root /data/mine/train --val-root /data/mine/val --out /data/mine_rec

writes OUT/train.lst, val.lst, train.rec/.idx, train.crc32, val.rec/.idx, val.crc32 and
dataset.json (and bad_images.txt when --skip-bad skipped images). See docs/datasets.md.
Errors (a missing --root, an --out that cannot be written, bad images ...) are one line on
stderr and exit status 2.
"""
import argparse
import logging
import os
import sys



def parse_args(argv=None):
    from tasn_gluon.data.layouts import LAYOUTS
    from tasn_gluon.data.packing import default_num_threads
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                epilog='See docs/datasets.md.')
    p.add_argument('--dataset', '--layout', dest='dataset', required=True,
                   choices=sorted(LAYOUTS), help='layout of the dataset under --root')
    p.add_argument('--root', required=True, help='the dataset folder as distributed')
    p.add_argument('--out', required=True,
                   help='output folder (created with its parents; a dataset already there is '
                        'replaced only when the new one is complete)')
    p.add_argument('--resize', type=int, default=512,
                   help='shorter side of the stored images in pixels, 0 keeps the size '
                        '(default: %(default)s)')
    p.add_argument('--quality', type=int, default=95,
                   help='JPEG quality 1..100 (default: %(default)s)')
    p.add_argument('--num-thread', type=int, default=None,
                   help='encoding threads (default: all cores, %d here)' % default_num_threads())
    p.add_argument('--skip-bad', action='store_true',
                   help='skip unreadable or corrupt images and list them in OUT/bad_images.txt '
                        'instead of failing')
    p.add_argument('--no-progress', action='store_true', help='no progress bar')
    g = p.add_argument_group('folders layout')
    g.add_argument('--val-root', default=None,
                   help='folder with the same class sub-folders to use as the val split')
    g.add_argument('--val-fraction', type=float, default=0.2,
                   help='without --val-root: fraction of each class put in val '
                        '(default: %(default)s)')
    g.add_argument('--split-seed', type=int, default=0,
                   help='seed of that split (default: %(default)s)')
    g = p.add_argument_group('inat layout')
    g.add_argument('--image-root', default=None,
                   help='folder the JSON file_name paths start from (default: --root)')
    args = p.parse_args(argv)
    if args.dataset != 'folders' and (args.val_root is not None):
        p.error('--val-root only applies to --dataset folders')
    if args.dataset != 'inat' and args.image_root is not None:
        p.error('--image-root only applies to --dataset inat')
    if args.num_thread is not None and args.num_thread < 1:
        p.error('--num-thread must be >= 1, got %d' % args.num_thread)
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    from tasn_gluon.data import DatasetError, prepare_dataset
    options = {}
    if args.dataset == 'folders':
        options = dict(val_root=args.val_root, val_fraction=args.val_fraction,
                       split_seed=args.split_seed)
    elif args.dataset == 'inat' and args.image_root:
        options = dict(image_root=args.image_root)
    try:
        info = prepare_dataset(args.dataset, args.root, args.out, resize=args.resize,
                               quality=args.quality, num_threads=args.num_thread,
                               skip_bad=args.skip_bad, progress=not args.no_progress, **options)
    except DatasetError as exc:
        logging.error('%s', exc)
        return 2
    except OSError as exc:        # a disk that fills up, a file system that goes away
        logging.error('cannot write %s: %s', exc.filename or args.out, exc.strerror or exc)
        return 2
    except KeyboardInterrupt:
        logging.error('interrupted; nothing of this run is left in %s', args.out)
        return 130
    logging.info('%s: %d classes, %d train and %d val images packed into %s', info['name'],
                 info['num_classes'], info['num_train'], info['num_val'], args.out)
    if info['bad_images_report']:
        logging.warning('skipped %d bad image(s): see %s', sum(info['skipped'].values()),
                        os.path.join(args.out, info['bad_images_report']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
