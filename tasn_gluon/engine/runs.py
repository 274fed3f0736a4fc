"""A run folder is owned by one process at a time.

Two trainings into the same ``--out`` would mix their checkpoints, metrics and logs, so the
process that writes a run folder holds an exclusive lock on ``RUN/.run.lock`` (``flock``) while
it works. The kernel drops the lock when the process ends, however it ends (``kill -9``
included), so a dead process never leaves a run locked. The file keeps the owner's process id,
host, start time and command line, which a second start names when it is refused. The file
itself stays in the folder (a lock file that is removed and made anew lets two processes hold
locks on two different files).

A start that fails after taking the lock leaves no folder behind that it created itself.
"""
import fcntl
import json
import logging
import os
import shutil
import socket
import sys
import time

from ..errors import ConfigError

__all__ = ['LOCK_NAME', 'RunLock']

logger = logging.getLogger(__name__)

LOCK_NAME = '.run.lock'


class RunLock:
    """The lock of the run folder ``run_dir`` for this process: :meth:`acquire` (or ``with``)
    takes it or raises ConfigError naming the owner; :meth:`release` drops it."""

    def __init__(self, run_dir):
        self.run_dir = os.path.abspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK_NAME)
        self._fd = None
        self._created = False

    def acquire(self):
        self._created = not os.path.isdir(self.run_dir)
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise ConfigError('%s is in use by another run: %s; wait for it to end or choose '
                              'another --out' % (self.run_dir, owner))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(),
                                     started=time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                                     command=' '.join(sys.argv))).encode())
        self._fd = fd
        return self

    def release(self, remove_if_empty=False):
        """Drops the lock. ``remove_if_empty``: a failed start removes the folder it created
        when nothing but the lock is in it."""
        if self._fd is None:
            return
        if remove_if_empty and self._created and os.listdir(self.run_dir) == [LOCK_NAME]:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        os.close(self._fd)
        self._fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, kind, value, tb):
        self.release(remove_if_empty=kind is not None)
        return False


def _read_owner(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        owner = json.loads(os.read(fd, 1 << 16).decode() or '{}')
    except (OSError, ValueError):
        owner = {}
    if not owner:
        return 'a process that is starting'
    return 'process %s on %s, started %s (%s)' % (owner.get('pid'), owner.get('host'),
                                                   owner.get('started'), owner.get('command'))
