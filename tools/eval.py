#!/usr/bin/env python
"""Evaluate a checkpoint on a packed val set: the five accuracies (top-1, top-5), KD loss, count.

Examples:
    python tools/eval.py --checkpoint runs/cub_r50 --data-dir /data/cub_rec --gpus 0 --out cub.json
    python tools/eval.py --checkpoint runs/cub_r50/epoch-0300.params --data-dir /data/cub_rec
    python tools/eval.py --checkpoint export/tasn-symbol.json --data-dir /data/cub_rec

The JSON holds att, part, master, part_aux, master_aux (top-1 as fractions), the same with a
_top5 suffix, top1/top5 (the reported accuracy: master_aux for TASN), kd_loss, distinct_maps,
num_images and the checkpoint (epoch) evaluated (the baseline and exported models fill the keys
they have). A model whose classes differ from the data's (count, or names) is refused.
"""
import sys

from tasn_gluon import cli
from tasn_gluon.cli import positive_int
from tasn_gluon.data import VERIFY_LEVELS
from tasn_gluon.engine import get_contexts
from tasn_gluon.engine.evaluation import evaluate_checkpoint
from tasn_gluon.engine.recipes import RECIPES
from tasn_gluon.engine.results import format_result, write_result_json


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('--checkpoint', required=True,
      help='run directory (its newest checkpoint), an epoch-NNNN.params file, or an exported '
           'NAME-symbol.json')
    a('--data-dir', required=True, help='folder with val.rec and dataset.json')
    a('--gpus', default='', help='GPU ids: "0", "0-3", "0,2"; empty (default) for CPU')
    a('--batch-size', type=positive_int, default=None,
      help='images per batch over all devices (default: the run\'s)')
    a('--out', default=None, help='write the result JSON here')
    a('--label', default=None, help='name of this result in compare.py tables')
    a('--dataset', default=None, choices=sorted(RECIPES),
      help="dataset key for compare.py (default: the run's)")
    a('--num-data-threads', type=positive_int, default=None,
      help='decoding threads (default: all cores)')
    a('--verify-data', choices=VERIFY_LEVELS, default='full',
      help='check of the record files before use: full (default: structure and checksums), '
           'headers (structure only) or none')
    a('--amp', action='store_true',
      help='evaluate in mixed precision (float16 on GPUs, bfloat16 on CPUs; checkpoints only)')
    cli.add_checkpoint_flags(p)
    cli.add_network_flags(p, 'network, for a .params file without a run configuration beside it')
    return p.parse_args(argv)


def work(args):
    res = evaluate_checkpoint(args.checkpoint, args.data_dir, get_contexts(args.gpus),
                              batch_size=args.batch_size, overrides=cli.network_overrides(args),
                              dataset=args.dataset,
                              num_threads=args.num_data_threads, verify=args.verify_data,
                              amp=args.amp, last_good=args.last_good,
                              input_size=args.override_input_size)
    if args.label:
        res['label'] = args.label
    if args.out:
        write_result_json(args.out, res)
    print(format_result(res))
    if args.out:
        print('wrote %s' % args.out)


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
