#!/usr/bin/env python
"""The demo (make demo): TASN and the baseline on the built-in synthetic set, on the CPU.

Builds the synthetic set, trains TASN and the baseline (ResNet-18, small sizes, same budget;
the baseline in a process beside TASN), evaluates both, prints the comparison with what the
numbers mean, and writes curves and one attention picture per class into --out.
"""
import sys

from tasn_gluon import cli
from tasn_gluon.cli import non_negative_int, positive_int
from tasn_gluon.reports.demo import DEMO_EPOCHS, run_demo


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument('--out', default='runs/demo', help='output folder (default runs/demo)')
    p.add_argument('--data-dir', default=None,
                   help='a packed set to use instead of the built-in synthetic one')
    p.add_argument('--epochs', type=positive_int, default=None,
                   help='epochs per method (default %d, the learning rate x0.1 for the last)'
                   % DEMO_EPOCHS)
    p.add_argument('--batch-size', type=positive_int, default=None,
                   help='batch size (default: the synthetic recipe\'s, 16)')
    p.add_argument('--seed', type=non_negative_int, default=0, help='random seed (default 0)')
    p.add_argument('--no-progress', dest='progress', action='store_const', const=False,
                   default=None, help='no progress bars (default: on a terminal only)')
    return p.parse_args(argv)


def work(args):
    run_demo(args.out, data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
             seed=args.seed, progress=args.progress)


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
