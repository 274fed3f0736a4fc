"""The package's own errors: what a bad input raises, wherever it enters.

Every check of something a user gives (a flag, a path, a file's contents, a dataset, a
checkpoint, weights, a device) raises an :class:`InputError` whose message names the input and,
where there is one, the fix. The command lines print such an error as one ``error:`` line and
exit with status 2 (``tasn_gluon.cli``); any other exception is a bug and keeps its traceback.
A training run that diverges raises :class:`TrainingDiverged` (exit status 3).

The kinds subclass ValueError, so library callers that catch ValueError keep working.
"""

__all__ = ['InputError', 'ConfigError', 'DatasetError', 'CheckpointError', 'WeightsError',
           'DeviceError', 'ModelMismatch', 'SetupError', 'TrainingDiverged', 'first_few',
           'reason']


class InputError(ValueError):
    """A bad input: the message names it (the flag, file or entry) and the fix."""


class ConfigError(InputError):
    """A setting (a flag, or a value of a saved run configuration) out of range or in
    conflict with another."""


class DatasetError(InputError):
    """A dataset on disk (split files, images, packed records, dataset.json) is missing or
    wrong."""


class CheckpointError(InputError):
    """No usable checkpoint where one was asked for, or one that fails its checksum."""


class WeightsError(InputError):
    """A parameter file that cannot be read, or whose names or shapes do not fit the
    network."""


class DeviceError(InputError):
    """A device that cannot be used as asked (a GPU id, a CPU without the kernels asked for)."""


class ModelMismatch(InputError):
    """A model and the data, flags or class names it is used with disagree."""


class SetupError(InputError):
    """This installation lacks what was asked for (the operator library, Horovod ...); the
    message says how to set it up."""


class TrainingDiverged(RuntimeError):
    """A non-finite loss (or parameter): the run stops; the last good checkpoint is intact."""


def first_few(items, count=5):
    """'a, b, c (and 7 more)': error messages name a few offenders, never thousands."""
    items = [str(i) for i in items]
    head = ', '.join(items[:count])
    if len(items) > count:
        head += ' (and %d more)' % (len(items) - count)
    return head


def reason(exc):
    """One line saying why ``exc`` happened, for a message that wraps it: the last non-empty
    line of its text (MXNet's errors carry a C++ traceback first), without an ``MXNetError:``
    prefix and MXNet's ``Check failed: expression:`` part."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    line = lines[-1] if lines else type(exc).__name__
    for prefix in ('MXNetError:', 'Check failed:'):
        if line.startswith(prefix):
            line = line[len(prefix):].strip()
    if str(exc).find('Check failed:') >= 0 and ': ' in line:
        line = line.split(': ', 1)[1]          # the failed C++ expression, then its message
    return line
