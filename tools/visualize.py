#!/usr/bin/env python
"""Draw what TASN's attention does (the paper's Figure 4) for images of a .rec set or files.

Examples:
    python tools/visualize.py --checkpoint runs/syn --data-dir .cache/synthetic --out vis/
    python tools/visualize.py --checkpoint runs/cub_r50 --images a.jpg b.jpg --out vis/
    python tools/visualize.py --net resnet18 --num-classes 8 --input-size 256 --att-size 64 \
        --sample-size 64 --images a.jpg --out vis/          # an untrained net

Per image: the input, the structure map and up to --num-details of its distinct detail maps
over it, their row and column profiles, and the structure- and details-preserved samples; one
PNG per image. From --data-dir: the first val image of each class.
"""
import sys

from tasn_gluon import cli
from tasn_gluon.cli import non_negative_int, positive_int
from tasn_gluon.engine import get_contexts
from tasn_gluon.reports.visualize import run_visualize


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('--checkpoint', default=None, help='run directory or epoch-NNNN.params (default: an '
                                         'untrained network built from the flags below)')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--data-dir', default=None, help="take images from this folder's val.rec")
    source.add_argument('--images', nargs='+', default=None, help='image files instead')
    a('--num-images', type=positive_int, default=None,
      help='the first N val images of --data-dir (default: the first of each class)')
    a('--out', required=True, help='output folder for the PNGs')
    a('--num-details', type=non_negative_int, default=3,
      help='detail maps drawn per image, at most its distinct ones (default 3)')
    a('--gpus', default='', help='GPU id ("0") or empty (default) for CPU')
    a('--seed', type=non_negative_int, default=0, help='seed of an untrained network (default 0)')
    cli.add_checkpoint_flags(p, input_size=False)
    cli.add_network_flags(p, 'untrained network (default resnet18), or a .params file without '
                             'configuration', with_method=False)
    return p.parse_args(argv)


def work(args):
    paths = run_visualize(args.out, checkpoint=args.checkpoint, data_dir=args.data_dir,
                          image_files=args.images, num_images=args.num_images,
                          one_per_class=args.num_images is None, num_details=args.num_details,
                          ctx=get_contexts(args.gpus)[:1], seed=args.seed,
                          overrides=cli.network_overrides(args), last_good=args.last_good)
    for p in paths:
        print(p)


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
