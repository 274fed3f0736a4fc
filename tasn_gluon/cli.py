"""What the command lines in tools/ share: one way to start, log and report (the error contract),
argument types that refuse a value out of range, and the flag groups several tools have.

Every tool's ``main(argv)`` is ``cli.run(parse_args, work, argv)`` and returns its exit status:

====  ============================================================================================
0     done
1     a bug: an internal error, printed with its traceback (Python's own status for an uncaught
      exception; please report it)
2     a bad input (a path, a flag, a file that does not fit): one ``error:`` line on stderr that
      names the input and the fix; argparse's own errors (an unknown flag) too
3     a training run that diverged (a non-finite loss, parameter or logit): one ``error:`` line;
      the last checkpoint is intact
4     done in part: some inputs were skipped (tools/predict.py), each listed on stderr
130   interrupted (Ctrl-C), as a shell reports it
====  ============================================================================================

Only the package's own errors (``tasn_gluon.errors``) are reported as bad input: they are
raised where an input enters (flags, files, records, checkpoints) and name it. Anything else is
a bug and keeps its traceback.
"""
import argparse
import logging
import math
import sys

from .engine.config import NETWORK_KEYS
from .engine.config import recipe_config
from .engine.recipes import RECIPES
from .errors import InputError, TrainingDiverged
from .logs import console
from .model_zoo import backbone_names

__all__ = ['EXIT_OK', 'EXIT_BUG', 'EXIT_BAD_INPUT', 'EXIT_DIVERGED', 'EXIT_PARTIAL', 'run',
           'parser', 'positive_int', 'non_negative_int', 'positive_float', 'non_negative_float',
           'add_network_flags', 'add_checkpoint_flags', 'network_overrides', 'recipe_help']

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_PARTIAL = 0, 1, 2, 3, 4


def run(parse_args, work, argv=None, log_level=logging.INFO, log_to=None):
    """Parses ``argv``, sends the package's log records to ``log_to`` (default stdout), calls
    ``work(args)`` and returns the exit status (module docstring): ``work``'s own (None: 0), 2
    for a bad input, 3 for a diverged run; any other exception propagates with its
    traceback."""
    args = parse_args(argv)
    console(log_level, log_to)
    try:
        return work(args) or EXIT_OK
    except TrainingDiverged as e:
        return _report(e, EXIT_DIVERGED)
    except InputError as e:
        return _report(e, EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


def _report(error, status):
    print('error: %s' % ' '.join(str(error).split()), file=sys.stderr, flush=True)
    return status


def parser(doc, **kwargs):
    """An ArgumentParser whose description is the first line of the tool's docstring and whose
    epilog is the rest (the examples)."""
    first, _, rest = doc.strip().partition('\n')
    return argparse.ArgumentParser(description=first, epilog=rest.strip() or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   **kwargs)


def _number(kind, low, strict, text):
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or \
            value < low or (strict and value == low):
        raise argparse.ArgumentTypeError('must be a %s %s %s, not %r' % (
            'whole number' if kind is int else 'finite number', '>' if strict else '>=', low,
            text))
    return value


def positive_int(text):
    """argparse type: a whole number >= 1."""
    return _number(int, 1, False, text)


def non_negative_int(text):
    """argparse type: a whole number >= 0."""
    return _number(int, 0, False, text)


def positive_float(text):
    """argparse type: a finite number > 0."""
    return _number(float, 0, True, text)


def non_negative_float(text):
    """argparse type: a finite number >= 0."""
    return _number(float, 0, False, text)


def recipe_help(argv):
    """``(dataset, RunConfig)`` whose values ``--help`` shows as the defaults: those of the
    ``--dataset`` given on the command line (cub, the official recipe, when none is)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument('--dataset', default='cub')
    known, _ = pre.parse_known_args(argv)
    dataset = known.dataset if known.dataset in RECIPES else 'cub'
    return dataset, recipe_config(dataset)


def add_network_flags(p, title, with_method=True):
    """Flags that describe a network, for a ``.params`` file without a run configuration beside
    it (eval, export, visualize, predict); where a model records its own, they must agree with
    it. Unset flags stay None."""
    group = p.add_argument_group(title)
    if with_method:
        group.add_argument('--method', choices=['tasn', 'baseline'], default=None)
    group.add_argument('--net', choices=backbone_names(), default=None)
    for name in ('num-classes', 'input-size', 'att-size', 'sample-size'):
        group.add_argument('--' + name, type=positive_int, default=None)
    group.add_argument('--legacy-sampler', action='store_const', const=True, default=None)
    return group


def add_checkpoint_flags(p, input_size=True):
    """``--last-good`` (and ``--override-input-size``) for the tools that read a saved model."""
    p.add_argument('--last-good', action='store_true',
                   help="a run directory's newest intact checkpoint when its newest is damaged "
                        '(default: refuse, naming the damaged file)')
    if input_size:
        p.add_argument('--override-input-size', type=positive_int, default=None, metavar='N',
                       help='evaluate at another input size than the trained one (checkpoints '
                            'only; stated in the output)')


def network_overrides(args):
    """The network flags given on the command line, as the engine's ``overrides`` dict."""
    return {name: getattr(args, name) for name in NETWORK_KEYS
            if getattr(args, name, None) is not None}
