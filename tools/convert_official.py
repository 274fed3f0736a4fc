#!/usr/bin/env python
"""Convert an official TASN checkpoint (Module format) into this project's run directory.

Examples:
    python tools/convert_official.py tasn-0300.params --out runs/official_cub_224
    python tools/convert_official.py cub_336-0300.params --sample-size 336 \\
        --out runs/official_cub_336
    python tools/eval.py --checkpoint runs/official_cub_224 --data-dir /data/cub_rec --gpus 0

Every name of the file must map to a parameter of the network and every parameter must be
filled; otherwise nothing is written and the offending names are printed. The official sampler
arithmetic (--legacy-sampler) is the default, so the converted model predicts what the official
graph predicts; --no-legacy-sampler records this project's corrected sampler instead.
"""
import argparse
import sys

from tasn_gluon import cli
from tasn_gluon.cli import non_negative_int, positive_int
from tasn_gluon.convert import convert_official
from tasn_gluon.engine.recipes import RECIPES
from tasn_gluon.model_zoo import backbone_names


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('params', help='official checkpoint, e.g. tasn-0300.params (arg:/aux: names)')
    a('--out', required=True, help='run directory to create (new or empty)')
    a('--num-classes', type=positive_int, default=None,
      help='classes (default: from the shared fc, fullyconnected2_weight)')
    a('--sample-size', type=positive_int, default=224,
      help='sampled image side: 224 (default) or 336')
    a('--input-size', type=positive_int, default=512, help='input side (default 512)')
    a('--att-size', type=positive_int, default=224, help='attention-net input side (default 224)')
    a('--net', default='resnet50', choices=backbone_names(), help='backbone (default resnet50)')
    a('--dataset', default='cub', choices=sorted(RECIPES),
      help='recipe recorded in the run configuration (default cub)')
    a('--epoch', type=non_negative_int, default=None,
      help='epoch number of the checkpoint (default: from the file name, else 0)')
    a('--legacy-sampler', action=argparse.BooleanOptionalAction, default=True,
      help="the official sampler's arithmetic (default); --no-legacy-sampler records this "
           "project's sampler instead")
    return p.parse_args(argv)


def work(args):
    record = convert_official(args.params, args.out, num_classes=args.num_classes,
                              sample_size=args.sample_size, legacy_sampler=args.legacy_sampler,
                              dataset=args.dataset, epoch=args.epoch,
                              input_size=args.input_size, att_size=args.att_size, net=args.net)
    print('wrote %s' % record)


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
