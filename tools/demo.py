#!/usr/bin/env python
"""The demo (make demo): build the synthetic set, train TASN and the baseline (ResNet-18, small
sizes, same budget) on CPU, evaluate both, print the comparison table, and write curves and
visualisations into --out."""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--out', default='runs/demo', help='output folder')
    p.add_argument('--data-dir', default=None,
                   help='a packed set to use instead of the built-in synthetic one')
    p.add_argument('--epochs', type=int, default=None,
                   help='epochs per method (default 3, the learning rate x0.1 for the third)')
    p.add_argument('--batch-size', type=int, default=None, help='batch size (recipe: 16)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--no-progress', action='store_true', help='no progress bars')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from tasn_gluon.engine.demo import run_demo
    run_demo(args.out, data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
             seed=args.seed, progress=not args.no_progress)
    return 0


if __name__ == '__main__':
    sys.exit(main())
