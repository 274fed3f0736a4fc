"""Where the package's log records go. The library only logs (to loggers under ``tasn_gluon``);
the command lines decide where the records go, with these two helpers:

* :func:`console` once at start: records of INFO and above on stdout (and
  :func:`progress_bar` for live progress on stderr, only where a person watches);
* :func:`run_log` around a run: every record (DEBUG too) appended to ``RUN/train.log`` while
  the run lasts (rank 0 of a distributed job; the other workers' console lines are tagged
  ``[rank r]`` instead, since launchers mix their output).
"""
import contextlib
import logging
import os
import sys

__all__ = ['LOGGER_NAME', 'console', 'run_log', 'progress_bar']

LOGGER_NAME = 'tasn_gluon'
_FORMAT = '%(asctime)s %(levelname)s %(message)s'


def _formatter(rank=0):
    return logging.Formatter(_FORMAT if rank == 0 else
                             _FORMAT.replace('%(message)s', '[rank %d] %%(message)s' % rank))


def console(level=logging.INFO, stream=None):
    """Sends the package's records of ``level`` and above to ``stream`` (stdout)."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setLevel(level)
    handler.setFormatter(_formatter())
    logger.addHandler(handler)
    logger.propagate = False
    return handler


@contextlib.contextmanager
def run_log(run_dir, filename='train.log', rank=0):
    """Appends every record of the package to ``run_dir/filename`` while the block runs (rank 0
    only: the other workers of a distributed job write nothing, and their console lines say
    ``[rank r]`` while the block runs). Creates ``run_dir``."""
    logger = logging.getLogger(LOGGER_NAME)
    if rank != 0:
        consoles = [h for h in logger.handlers if not isinstance(h, logging.FileHandler)]
        for h in consoles:
            h.setFormatter(_formatter(rank))
        try:
            yield None
        finally:
            for h in consoles:
                h.setFormatter(_formatter())
        return
    os.makedirs(run_dir, exist_ok=True)
    logger.setLevel(logging.DEBUG)
    handler = logging.FileHandler(os.path.join(run_dir, filename))
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(_formatter())
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        handler.close()


def progress_bar(show, total, desc, unit, **kwargs):
    """A tqdm bar on stderr, or None: ``show`` None means only when stderr is a terminal (a
    bar in a log file is a stream of carriage returns); nothing to count, no bar."""
    show = sys.stderr.isatty() if show is None else show
    if not show or total == 0:
        return None
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                file=sys.stderr, **kwargs)
