#!/usr/bin/env python
"""Export a trained checkpoint as an inference graph: NAME-symbol.json + NAME-0000.params.

Examples::

    python tools/export.py --checkpoint runs/cub_r50 --out export/cub_r50
    python tools/export.py --checkpoint runs/cub_r50/epoch-0300.params --out export/cub_r50

The graph holds the AttSampler operator: load tasn_gluon.ops (symbols.module_scorer.load_module
does it) before reading it. Its output is TASN's reported "master_aux" logits.
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
    a('--checkpoint', required=True, help='run directory or epoch-NNNN.params file')
    a('--out', required=True, help='output prefix NAME (writes NAME-symbol.json, '
                                   'NAME-%%04d.params)')
    a('--epoch', type=int, default=0, help='number in the .params file name')
    add_network_flags(p, 'network, for a .params file without a run configuration beside it')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from symbols.export import export_checkpoint
    from tasn_gluon.engine import CheckpointError, EvaluationError
    overrides = network_overrides(args)
    try:
        sym, params, _ = export_checkpoint(args.checkpoint, args.out, epoch=args.epoch,
                                           overrides=overrides)
    except (ValueError, FileNotFoundError, CheckpointError, EvaluationError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    print('wrote %s and %s' % (sym, params))
    return 0


if __name__ == '__main__':
    sys.exit(main())
