#!/usr/bin/env python
"""Train TASN (or the plain-backbone baseline) on a packed dataset.

Examples::

    python tools/train.py --dataset cub --data-dir /data/cub_rec --gpus 0-7 --out runs/cub_r50
    python tools/train.py --dataset cub --data-dir /data/cub_rec --net vgg19 --gpus 0-7 --out runs/cub_vgg
    python tools/train.py --resume runs/cub_r50                  # continue after a stop
    python tools/train.py --dataset synthetic --out runs/syn     # CPU, the built-in set

Every setting left unset comes from the ``--dataset`` recipe (cub: the official recipe); the
resolved configuration is printed at start and saved as OUT/config.json.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[1],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a('--method', choices=['tasn', 'baseline'], default=None,
      help='tasn, or baseline: the plain backbone on the image resized to --sample-size')
    a('--net', choices=['resnet50', 'vgg19', 'resnet18'], default=None, help='backbone')
    a('--dataset', choices=['cub', 'cars', 'inat', 'synthetic'], default=None,
      help='recipe preset (default cub; synthetic: the built-in set, generated on first use)')
    a('--data-dir', default=None, help='folder with train.rec, val.rec and dataset.json')
    a('--gpus', default=None, help='GPU ids: "0-7", "0,2,5"; empty for CPU')
    a('--batch-size', type=int, default=None, help='images per step over all devices')
    a('--lr', type=float, default=None, help='learning rate')
    a('--lr-steps', default=None, help='epochs at which lr is multiplied by --lr-factor, "100,200"')
    a('--lr-factor', type=float, default=None, help='lr decay factor at each step')
    a('--epochs', type=int, default=None, help='number of epochs')
    a('--momentum', type=float, default=None, help='SGD momentum')
    a('--wd', type=float, default=None, help='weight decay')
    a('--input-size', type=int, default=None, help='input crop (512 in the recipe)')
    a('--att-size', type=int, default=None, help='attention-net input size (224)')
    a('--sample-size', type=int, default=None, help='sampled image size (224 or 336)')
    a('--pretrained', default=None, help='local backbone weights (.params) to start from')
    a('--att-pretrained', default=None, help='local attention-net (ResNet-18) weights')
    a('--kvstore', default=None, help='local, device (default on several GPUs), dist_sync, '
                                      'dist_device_sync, dist_async, horovod')
    a('--resume', default=None, metavar='RUN_DIR',
      help='continue the run in RUN_DIR from its last complete checkpoint')
    a('--seed', type=int, default=None, help='random seed (0)')
    a('--out', default=None, help='run directory: checkpoints, train.log, metrics.csv, curves.png')
    a('--log-interval', type=int, default=None, help='batches between log lines')
    a('--legacy-sampler', action='store_const', const=True, default=None,
      help="the official sampler's arithmetic (bit-faithful comparison)")
    a('--detach-teacher', action='store_const', const=True, default=None,
      help='stop the gradient through the teacher soft targets of the KD term')
    a('--temperature', type=float, default=None, help='distillation temperature (10)')
    a('--kd-weight', type=float, default=None, help='weight of the KD term (1; 0 = ablation)')
    a('--uniform-sampler', action='store_const', const=True, default=None,
      help='ablation: sample with uniform profiles (no attention)')
    a('--eval-batch-size', type=int, default=None, help='validation batch (default --batch-size)')
    a('--num-data-threads', type=int, default=None, help='decoding threads per iterator')
    a('--keep-checkpoints', type=int, default=None, help='epoch checkpoints kept (0: all)')
    a('--max-batches-per-epoch', type=int, default=None, help='debugging: cut epochs short')
    a('--no-progress', dest='progress', action='store_const', const=False, default=None,
      help='no progress bar')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from tasn_gluon.engine import CheckpointError, TrainingDiverged, run
    try:
        run(vars(args))
    except TrainingDiverged as e:
        print('error: %s' % e, file=sys.stderr)
        return 3
    except (ValueError, FileNotFoundError, CheckpointError) as e:
        print('error: %s' % e, file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
