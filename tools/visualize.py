#!/usr/bin/env python
"""Draw what TASN's attention does (the paper's Figure 4) for images of a .rec set or files.

Examples:
    python tools/visualize.py --checkpoint runs/syn --data-dir .cache/synthetic --out vis/
    python tools/visualize.py --checkpoint runs/cub_r50 --images a.jpg b.jpg --out vis/
    python tools/visualize.py --net resnet18 --num-classes 8 --input-size 256 --att-size 64 \
        --sample-size 64 --images a.jpg --out vis/          # an untrained net

Per image: the input, the structure map and --num-details detail maps over it (distinct maps),
their row and column profiles, and the structure- and details-preserved samples; one PNG per
image. From --data-dir: the first val image of each class.
"""
import sys

from tasn_gluon import cli
from tasn_gluon.engine import get_contexts
from tasn_gluon.reports.visualize import run_visualize


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('--checkpoint', default=None, help='run directory or epoch-NNNN.params (default: an '
                                         'untrained network built from the flags below)')
    a('--data-dir', default=None, help="take images from this folder's val.rec")
    a('--num-images', type=int, default=None,
      help='the first N val images of --data-dir (default: the first of each class)')
    a('--images', nargs='*', default=None, help='image files instead of --data-dir')
    a('--out', required=True, help='output folder for the PNGs')
    a('--num-details', type=int, default=3, help='detail maps drawn per image (default 3)')
    a('--gpus', default='', help='GPU id ("0") or empty (default) for CPU')
    a('--seed', type=int, default=0, help='seed of an untrained network (default 0)')
    cli.add_network_flags(p, 'untrained network (default resnet18), or a .params file without '
                             'configuration', with_method=False)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    status = [0]
    with cli.reporting_errors(status):
        paths = run_visualize(args.out, checkpoint=args.checkpoint, data_dir=args.data_dir,
                              image_files=args.images, num_images=args.num_images,
                              one_per_class=args.num_images is None,
                              num_details=args.num_details, ctx=get_contexts(args.gpus)[:1],
                              seed=args.seed, overrides=cli.network_overrides(args))
        for p in paths:
            print(p)
    return status[0]


if __name__ == '__main__':
    sys.exit(main())
