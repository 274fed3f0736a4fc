#!/usr/bin/env python
"""Print our eval results beside the published numbers as a Markdown table.

Example:
    python tools/compare.py cub_r50.json cub_r50_336.json [--published data/published_results.csv]

Published values come from data/published_results.csv, each with its source; empty slots stay
empty. The difference column is ours minus published, in points. A result whose data is not
the published dataset (other classes or image counts) is listed under "custom data".
"""
import sys

from tasn_gluon import cli
from tasn_gluon.files import atomic_write_text
from tasn_gluon.reports import compare


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument('results', nargs='+', help='eval JSON files written by tools/eval.py --out')
    p.add_argument('--published', default=None,
                   help='published table (default: data/published_results.csv)')
    p.add_argument('--all', action='store_true',
                   help='also list the published datasets we have no result for')
    p.add_argument('--out', default=None, help='also write the table to this Markdown file')
    return p.parse_args(argv)


def work(args):
    results = [compare.read_eval_json(p) for p in args.results]
    table = compare.compare_table(results, compare.read_published(args.published),
                                  all_datasets=args.all)
    print(table)
    if args.out:
        atomic_write_text(args.out, table + '\n')


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
