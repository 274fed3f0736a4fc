#!/usr/bin/env python
"""Draw what TASN's attention does (the paper's Figure 4) for images of a .rec set or files.

Examples::

    python tools/visualize.py --checkpoint runs/syn --data-dir .cache/synthetic --out vis/
    python tools/visualize.py --checkpoint runs/cub_r50 --images a.jpg b.jpg --out vis/
    python tools/visualize.py --net resnet18 --num-classes 8 --input-size 256 --att-size 64 \\
        --sample-size 64 --images a.jpg --out vis/          # an untrained net

Per image: the input, the structure map and --num-details detail maps over it, their row and
column profiles, and the structure- and details-preserved samples; one PNG per image.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tasn_gluon.engine.cli import add_network_flags, network_overrides  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a('--checkpoint', default=None, help='run directory or epoch-NNNN.params (default: an '
                                         'untrained network built from the flags below)')
    a('--data-dir', default=None, help='take images from this folder\'s val.rec')
    a('--num-images', type=int, default=4, help='images taken from --data-dir')
    a('--images', nargs='*', default=None, help='image files instead of --data-dir')
    a('--out', required=True, help='output folder for the PNGs')
    a('--num-details', type=int, default=3, help='detail maps drawn per image')
    a('--gpus', default='', help='GPU id ("0") or empty for CPU')
    a('--seed', type=int, default=0, help='seed of an untrained network')
    add_network_flags(p, 'untrained network (or a .params file without configuration)',
                      with_method=False, net_help='backbone of an untrained network (resnet18)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from tasn_gluon.engine import get_contexts
    from tasn_gluon.engine.checkpoint import CheckpointError
    from tasn_gluon.engine.evaluation import EvaluationError
    from tasn_gluon.engine.visualize import run_visualize
    try:
        paths = run_visualize(checkpoint=args.checkpoint, data_dir=args.data_dir,
                              image_files=args.images, num_images=args.num_images,
                              out_dir=args.out, num_details=args.num_details,
                              ctx=get_contexts(args.gpus)[:1], seed=args.seed,
                              overrides=network_overrides(args))
    except (ValueError, FileNotFoundError, CheckpointError, EvaluationError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == '__main__':
    sys.exit(main())
