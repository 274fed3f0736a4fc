"""What the command lines in tools/ share: argument groups, the log set-up, and errors reported
as one line.

Every tool's ``main`` returns an exit status: 0 done, 2 a bad input (a path, a flag, a file that
does not fit; the message names it), 3 a run that diverged. A tool never prints a traceback for
those.
"""
import argparse
import contextlib
import logging
import sys

from .data import DatasetError
from .engine.checkpoint import CheckpointError
from .engine.config import RECIPES, recipe_config
from .engine.devices import DeviceError
from .engine.evaluation import EvaluationError
from .engine.logs import console
from .engine.training import TrainingDiverged
from .model_zoo import WeightsError, backbone_names

__all__ = ['EXIT_BAD_INPUT', 'EXIT_DIVERGED', 'parser', 'add_network_flags', 'network_overrides',
           'recipe_help', 'reporting_errors', 'setup_console']

EXIT_BAD_INPUT, EXIT_DIVERGED = 2, 3
# What a bad input raises anywhere in the package (OSError: a path that cannot be used).
BAD_INPUT = (ValueError, OSError, DatasetError, CheckpointError, EvaluationError, WeightsError,
             DeviceError)


def parser(doc, **kwargs):
    """An ArgumentParser whose description is the first line of the tool's docstring and whose
    epilog is the rest (the examples)."""
    first, _, rest = doc.strip().partition('\n')
    return argparse.ArgumentParser(description=first, epilog=rest.strip() or None,
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   **kwargs)


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
    it (eval, export, visualize, predict). Unset flags stay None."""
    group = p.add_argument_group(title)
    if with_method:
        group.add_argument('--method', choices=['tasn', 'baseline'], default=None)
    group.add_argument('--net', choices=backbone_names(), default=None)
    for name in ('num-classes', 'input-size', 'att-size', 'sample-size'):
        group.add_argument('--' + name, type=int, default=None)
    group.add_argument('--legacy-sampler', action='store_const', const=True, default=None)
    return group


NETWORK_FLAGS = ('method', 'net', 'num_classes', 'input_size', 'att_size', 'sample_size',
                 'legacy_sampler')


def network_overrides(args):
    """The network flags given on the command line, as the engine's ``overrides`` dict."""
    return {name: getattr(args, name) for name in NETWORK_FLAGS
            if getattr(args, name, None) is not None}


def setup_console(level=logging.INFO):
    """The package's log records on stdout (the library itself installs no handler)."""
    return console(level)


@contextlib.contextmanager
def reporting_errors(status):
    """Turns the package's bad-input errors into one ``error: ...`` line on stderr, setting
    ``status[0]`` to the exit status (2, or 3 for a diverged run)."""
    try:
        yield
    except TrainingDiverged as e:
        print('error: %s' % e, file=sys.stderr)
        status[0] = EXIT_DIVERGED
    except BAD_INPUT as e:
        print('error: %s' % _message(e), file=sys.stderr)
        status[0] = EXIT_BAD_INPUT


def _message(e):
    if isinstance(e, OSError) and e.filename and e.strerror:
        return '%s: %s' % (e.filename, e.strerror)
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__

