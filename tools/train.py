#!/usr/bin/env python
"""Train TASN (or the plain-backbone baseline) on a packed dataset.

Examples:
    python tools/train.py --dataset cub --data-dir /data/cub_rec --gpus 0-7 --out runs/cub_r50 \
        --pretrained resnet-50-0000.params --att-pretrained resnet-18-0000.params
    python tools/train.py --dataset cub --data-dir /data/cub_rec --net vgg19 ... --out runs/vgg
    python tools/train.py ... --net resnet50_v1d --pretrained zoo     # GluonCV's file, ~/.mxnet
    python tools/train.py ... --lr-mode cosine --warmup-epochs 5      # GluonCV's schedulers
    python tools/train.py --resume runs/cub_r50            # continue, into runs/cub_r50
    python tools/train.py --dataset synthetic --out runs/syn  # CPU, the built-in set

Every setting left unset comes from the --dataset recipe (cub: the official recipe; the
defaults shown are that recipe's: `--dataset cars --help` shows another's). The resolved
configuration is logged at start and saved as OUT/config.json. A run folder is used by one
process at a time.
"""
import argparse
import gc
import sys

from tasn_gluon import cli
from tasn_gluon.cli import non_negative_float, non_negative_int, positive_float, positive_int
from tasn_gluon.data import TRAIN_LAST_BATCH, VERIFY_LEVELS
from tasn_gluon.engine import training
from tasn_gluon.engine.config import KVSTORES, LR_MODES
from tasn_gluon.engine.recipes import RECIPES
from tasn_gluon.logs import run_log
from tasn_gluon.model_zoo import backbone_names


def parse_args(argv=None):
    dataset, d = cli.recipe_help(argv)
    p = cli.parser(__doc__)

    def a(flag, text, **kw):
        default = getattr(d, flag[2:].replace('-', '_'), None)
        shown = '' if kw.get('action') or default in (None, '') else \
            ' (default for --dataset %s: %s)' % (dataset, default)
        p.add_argument(flag, default=None, help=text + shown, **kw)
    a('--dataset', 'recipe: cub (official), cars, inat, synthetic (the built-in set, generated '
      'on first use)', choices=sorted(RECIPES))
    a('--method', 'tasn, or baseline (the backbone on the image resized to --sample-size)',
      choices=['tasn', 'baseline'])
    a('--net', 'backbone', choices=backbone_names())
    a('--data-dir', 'folder with train.rec, val.rec and dataset.json (tools/im2rec.py)')
    a('--out', 'run directory: checkpoints, train.log, metrics.csv, curves.png')
    a('--resume', 'continue the run in RUN_DIR from its last complete checkpoint (the newest '
      'intact one when that is damaged), into RUN_DIR', metavar='RUN_DIR')
    a('--pretrained', 'backbone ImageNet weights: MXNet resnet-50-0000.params, a Gluon or '
      'GluonCV .params, or zoo: the --net\'s GluonCV file in --model-root (never downloaded)')
    a('--att-pretrained', 'attention-net ImageNet weights (ResNet-18), same formats')
    a('--model-root', 'model-zoo folder for zoo (default $MXNET_HOME/models or ~/.mxnet/models)')
    a('--from-scratch', 'train a real dataset from random initialisation (no ImageNet start)',
      action='store_const', const=True)
    a('--gpus', 'GPU ids: "0-7", "0,2,5"; empty for CPU')
    a('--kvstore', 'local, device (default on several GPUs), nccl, dist_sync (under '
      'tools/launch.py), dist_device_sync, dist_async, horovod', choices=KVSTORES)
    a('--batch-size', 'images per step over the devices of a worker', type=positive_int)
    a('--lr', 'learning rate', type=non_negative_float)
    a('--lr-steps', 'epochs at which lr is multiplied by --lr-factor, "100,200"')
    a('--lr-factor', 'lr decay factor at each step', type=non_negative_float)
    a('--lr-mode', 'step (--lr-steps) or cosine (per iteration, to 0)', choices=LR_MODES)
    a('--warmup-epochs', 'linear warm-up from 0 to --lr over these epochs', type=non_negative_int)
    a('--epochs', 'number of epochs', type=positive_int)
    a('--momentum', 'SGD momentum', type=non_negative_float)
    a('--wd', 'weight decay', type=non_negative_float)
    a('--input-size', 'input crop', type=positive_int)
    a('--att-size', 'attention-net input size', type=positive_int)
    a('--sample-size', 'sampled image size (224 or 336)', type=positive_int)
    a('--legacy-sampler', "the official code's arithmetic (sampler grid, structure-map mask)",
      action='store_const', const=True)
    a('--detach-teacher', 'stop the gradient through the KD teacher soft targets',
      action='store_const', const=True)
    a('--temperature', 'distillation temperature', type=positive_float)
    a('--kd-weight', 'weight of the KD term (0: ablation)', type=non_negative_float)
    a('--uniform-sampler', 'ablation: sample with uniform profiles (no attention)',
      action='store_const', const=True)
    a('--amp', 'mixed precision (mxnet.contrib.amp): float16 on GPUs, bfloat16 on CPUs; '
      'parameters, sampler and losses stay float32 (a resumed run keeps its setting unless '
      'given)', action=argparse.BooleanOptionalAction)
    a('--cpu-augment', 'all augmentation in the record iterator, also when training on GPUs',
      dest='augment_on_device', action='store_const', const=False)
    a('--verify-data', 'check of the record files before use: full (structure and checksums), '
      'headers (structure only) or none', choices=VERIFY_LEVELS)
    a('--last-batch', 'a short last training batch: wrap (completed with the first images, as '
      'the official iterator) or discard', choices=TRAIN_LAST_BATCH)
    a('--seed', 'random seed', type=non_negative_int)
    a('--log-interval', 'batches between log lines', type=positive_int)
    a('--eval-batch-size', 'validation batch (default --batch-size)', type=positive_int)
    a('--num-data-threads', 'decoding threads per iterator (default: all cores)',
      type=positive_int)
    a('--keep-checkpoints', 'epoch checkpoints kept (0: all)', type=non_negative_int)
    a('--max-batches-per-epoch', 'debugging: cut epochs short', type=positive_int)
    a('--no-progress', 'no progress bar (default: one when stderr is a terminal)',
      dest='progress', action='store_const', const=False)
    return p.parse_args(argv)


def work(args):
    with training.prepare(vars(args)) as run, run_log(run.out, rank=run.rank):
        training.train(run)


def main(argv=None):
    status = cli.run(parse_args, work, argv)
    # A distributed kvstore must be freed before the interpreter exits (ps-lite aborts the
    # process otherwise); the trainer and its parameters refer to each other, so only a
    # collection frees it, and when one last ran depends on what else was allocated.
    gc.collect()
    return status


if __name__ == '__main__':
    sys.exit(main())
