"""Files on disk: the one way to write them atomically, their checksums, and checks of the
paths a user gives.

Atomic writes. A file is first written under a temporary name in its own folder
(``.NAME.tmp-PID``), flushed to disk, then renamed over its final name (``os.replace``), so a
process killed at any moment leaves either the old file or the new one, never a part.
:func:`atomic_write` does it for one file; :class:`StagedFiles` for several that must appear
together (a packed dataset): all are written under temporary names and renamed only when every
one is complete, or all removed. :func:`remove_stale_temporaries` removes the temporary files
of writes whose process no longer runs.

A failure to write (no space, no permission, a read-only file system) is raised as an
InputError naming the file: the path is the user's, not the program's.
"""
import contextlib
import hashlib
import os
import re

from .errors import InputError

__all__ = ['atomic_write', 'atomic_write_text', 'StagedFiles', 'remove_stale_temporaries',
           'file_digest', 'file_sha256', 'require_file', 'require_folder', 'is_within']

_TEMPORARY_RE = re.compile(r'^\..+\.tmp-(\d+)$')   # .NAME.tmp-PID
_BLOCK = 1 << 22                                    # 4 MiB reads when hashing


def _temporary(path):
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, '.%s.tmp-%d' % (name, os.getpid()))


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(path):
    """OSError while writing ``path`` -> InputError naming it."""
    try:
        yield
    except OSError as e:
        raise InputError('cannot write %s: %s' % (e.filename or path, e.strerror or e)) from e


def _commit(tmp, path):
    with open(tmp, 'rb+') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write(path, writer):
    """Calls ``writer(tmp_path)`` and renames the result over ``path`` once it is on disk;
    returns the absolute path. Creates the folder."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    tmp = _temporary(path)
    with _writing(path):
        os.makedirs(folder, exist_ok=True)
        try:
            writer(tmp)
            _commit(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        _fsync_dir(folder)
    return path


def atomic_write_text(path, text):
    def _write(tmp):
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
    return atomic_write(path, _write)


class StagedFiles:
    """Several files that appear together or not at all::

        with StagedFiles(folder) as staged:
            write(staged.path('train.rec'))   # a temporary name
            ...
        # every file renamed to its final name here; on an exception all removed

    ``replaced`` names (in the folder) are removed just before the renames, so that nothing of
    an older set stays under a final name.
    """

    def __init__(self, folder, replaced=()):
        self.folder = os.path.abspath(folder)
        self.replaced = list(replaced)
        self._staged = {}

    def path(self, name):
        """The temporary path the file ``name`` (in the folder) is written to (the same one
        each time it is asked for)."""
        final = os.path.join(self.folder, name)
        return self._staged.setdefault(final, _temporary(final))

    def names(self):
        """The names staged so far, in the order first asked for."""
        return [os.path.basename(final) for final in self._staged]

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            self.discard()
            return False
        with _writing(self.folder):
            for name in self.replaced:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(self.folder, name))
            for final, tmp in self._staged.items():
                _commit(tmp, final)
            _fsync_dir(self.folder)
        return False

    def discard(self):
        for tmp in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)


def _process_alive(pid):
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder):
    """Removes the temporary files of atomic writes (``.NAME.tmp-PID``) whose process no
    longer runs on this machine (a killed write); returns their paths. A file whose process is
    alive is kept: it may be another process's write in progress."""
    removed = []
    for name in sorted(os.listdir(folder)):
        m = _TEMPORARY_RE.match(name)
        if m and not _process_alive(int(m.group(1))):
            path = os.path.join(folder, name)
            os.remove(path)
            removed.append(path)
    return removed


def file_digest(path, algorithm='sha256'):
    """(size in bytes, hex digest) of a file, SHA-256 unless another ``hashlib`` algorithm is
    named."""
    h = hashlib.new(algorithm)
    size = 0
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(_BLOCK), b''):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def file_sha256(path):
    """SHA-256 hex digest of a file."""
    return file_digest(path)[1]


def require_file(path, what):
    """``path`` as a string when it is an existing file; else InputError naming ``what`` (e.g.
    '--pretrained') and what is there instead."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise InputError('%s %s is a folder, not a file' % (what, path))
    if not os.path.isfile(path):
        raise InputError('%s %s: no such file' % (what, path))
    return path


def require_folder(path, what):
    """``path`` when it is an existing folder; else InputError naming ``what``."""
    path = os.fspath(path)
    if os.path.isfile(path):
        raise InputError('%s %s is a file, not a folder' % (what, path))
    if not os.path.isdir(path):
        raise InputError('%s %s: no such folder' % (what, path))
    return path


def is_within(path, folder):
    """Whether ``path`` is ``folder`` or lies inside it (after resolving links)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)
