#!/usr/bin/env python
"""Classify image files with a checkpoint: the top-k classes, their names and probabilities.

Examples:
    python tools/predict.py --checkpoint runs/cub bird.jpg photos/ 'more/**/*.png'
    python tools/predict.py --checkpoint export/cub-symbol.json photos/ --out results.csv
    python tools/predict.py --checkpoint runs/official --class-names data/cub photos/ --top-k 3
    python tools/predict.py --checkpoint runs/cub photos/ --pictures pictures/ --gpus 0

IMAGES are files, folders (their image files, recursively) or glob patterns. A model is a run
directory (a converted official checkpoint is one), an epoch-NNNN.params file or an exported
NAME-symbol.json. Images get the validation preprocessing (shorter side to the input size,
centre crop, mean subtraction: bit for bit what eval sees); the probabilities are the softmax
of the reported logits (TASN: master_aux). --pictures draws, per image, the input, the structure
map and the structure-preserved (zoomed) image (TASN checkpoints only). A file that cannot be
used is listed on stderr with its reason and skipped; the others are still classified. With
the legacy (official) sampler, as in converted official checkpoints, an image's prediction
depends slightly on the image before it in its batch, as in eval (--batch-size 1: independent).

Exit status: 0 every image classified; 4 some input skipped (unreadable, not an image, no match;
the rest classified and written); 2 a bad input (a missing checkpoint, a bad flag ...).
"""
import os
import sys

from tasn_gluon import cli
from tasn_gluon.cli import positive_int
from tasn_gluon.engine import get_contexts
from tasn_gluon.engine.prediction import (DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, Predictor,
                                          read_class_names)
from tasn_gluon.errors import ConfigError, ModelMismatch
from tasn_gluon.reports.predictions import format_table, output_format, write_results
from tasn_gluon.reports.visualize import draw_predictions


def parse_args(argv=None):
    p = cli.parser(__doc__)
    a = p.add_argument
    a('images', nargs='+', metavar='IMAGES', help='image files, folders or glob patterns')
    a('--checkpoint', required=True, help='run directory, epoch-NNNN.params or exported '
                                          'NAME-symbol.json')
    a('--top-k', type=positive_int, default=DEFAULT_TOP_K,
      help='classes listed per image (default %d)' % DEFAULT_TOP_K)
    a('--batch-size', type=positive_int, default=DEFAULT_BATCH_SIZE,
      help='images per forward pass (default %d)' % DEFAULT_BATCH_SIZE)
    a('--out', default=None, help='also write the results to this .json or .csv file')
    a('--pictures', default=None, metavar='DIR',
      help='draw one PNG per image into DIR (TASN checkpoints only)')
    a('--class-names', default=None, metavar='PATH',
      help="class names for a model that records none (a converted official checkpoint): a "
           "packed dataset folder or a text file, one name per line (default: the model's)")
    a('--gpus', default='', help='GPU ids: "0", "0-3", "0,2"; empty (default) for CPU')
    a('--amp', action='store_true', help='mixed precision (float16 on GPUs, bfloat16 on CPUs; '
                                         'checkpoints only)')
    cli.add_checkpoint_flags(p)
    cli.add_network_flags(p, 'network, for a .params file without a run configuration beside it')
    return p.parse_args(argv)


def _picture_drawer(predictor, folder):
    """on_batch for Predictor.predict that draws each batch's pictures into ``folder``."""
    if not predictor.model.net.has_attention:
        what = {'exported': 'an exported graph, which keeps only the logits'}.get(
            predictor.kind, 'a %s model, which has no attention' % predictor.kind)
        raise ModelMismatch('--pictures: %s is %s: there is no attention to draw (only a TASN '
                            'checkpoint has)' % (predictor.model.source['checkpoint'], what))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ConfigError('--pictures %s is a file, not a folder' % folder)
    drawn = []

    def on_batch(x, batch):
        drawn.extend(draw_predictions(predictor.model.net, x, batch, folder,
                                      first_index=len(drawn)))
    return on_batch, drawn


def work(args):
    if args.out:
        output_format(args.out)              # a bad extension fails before any work
    names = read_class_names(args.class_names) if args.class_names else None
    predictor = Predictor.from_checkpoint(args.checkpoint, get_contexts(args.gpus),
                                          cli.network_overrides(args), names, amp=args.amp,
                                          last_good=args.last_good,
                                          input_size=args.override_input_size)
    on_batch, drawn = _picture_drawer(predictor, args.pictures) if args.pictures else (None, [])
    results = predictor.predict(args.images, top_k=args.top_k, batch_size=args.batch_size,
                                on_batch=on_batch)
    print(format_table(results))
    for s in results.skipped:
        print('skipped %s: %s' % (s.source, s.reason), file=sys.stderr)
    if args.out:
        info = dict(predictor.model.source, kind=predictor.kind, method=predictor.model.method,
                    input_size=predictor.input_size, num_classes=predictor.num_classes,
                    trained_input_size=predictor.model.trained_input_size)
        print('wrote %s' % write_results(args.out, results, info, args.top_k), file=sys.stderr)
    if args.pictures:
        print('drew %d picture(s) in %s' % (len(drawn), args.pictures), file=sys.stderr)
    if predictor.model.trained_input_size:
        print('predicted at input size %d (the model was trained at %d: --override-input-size)'
              % (predictor.input_size, predictor.model.trained_input_size), file=sys.stderr)
    if results.skipped:
        print('%d input(s) skipped, %d image(s) classified'
              % (len(results.skipped), len(results.predictions)), file=sys.stderr)
        return cli.EXIT_PARTIAL


def main(argv=None):
    return cli.run(parse_args, work, argv, log_to=sys.stderr)   # stdout: the results


if __name__ == '__main__':
    sys.exit(main())
