#!/usr/bin/env python
"""Export a trained checkpoint as an inference graph: NAME-symbol.json + NAME-0000.params.

Examples:
    python tools/export.py --checkpoint runs/cub_r50 --out export/cub_r50
    python tools/export.py --checkpoint runs/cub_r50/epoch-0300.params --out export/cub_r50

The graph holds the AttSampler operator: load tasn_gluon.ops (symbols.module_scorer does it)
before reading it. Its output is TASN's reported "master_aux" logits. NAME-info.json beside it
records the classes (count and names) and the run's configuration; eval and predict check data
against it.
"""
import sys

from symbols.export import export_checkpoint
from tasn_gluon import cli
from tasn_gluon.cli import non_negative_int


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('--checkpoint', required=True, help='run directory or epoch-NNNN.params file')
    a('--out', required=True, help='output prefix NAME (writes NAME-symbol.json, '
                                   'NAME-%%04d.params, NAME-info.json)')
    a('--epoch', type=non_negative_int, default=0,
      help='number in the .params file name (default 0)')
    cli.add_checkpoint_flags(p, input_size=False)
    cli.add_network_flags(p, 'network, for a .params file without a run configuration beside it')
    return p.parse_args(argv)


def work(args):
    written = export_checkpoint(args.checkpoint, args.out, epoch=args.epoch,
                                overrides=cli.network_overrides(args), last_good=args.last_good)
    print('wrote %s' % ', '.join(written))


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
