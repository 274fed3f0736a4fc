"""The installed set equals the lock: every package `make setup` installed, direct or indirect,
at the version constraints.txt pins (so that a fresh clone in a year installs the same set)."""
import os
import subprocess
import sys

from conftest import ROOT

# Pinned for `make setup HOROVOD=1` only.
HOROVOD_ONLY = {'horovod', 'cloudpickle', 'psutil'}


def _pins(lines):
    out = {}
    for line in lines:
        line = line.split('#', 1)[0].strip()
        if line:
            name, version = line.split('==')
            out[name.lower().replace('_', '-')] = version
    return out


def test_installed_packages_are_the_lock():
    with open(os.path.join(ROOT, 'constraints.txt')) as f:
        lock = _pins(f)
    frozen = subprocess.run([sys.executable, '-m', 'pip', 'freeze', '--all', '--exclude-editable'],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    installed = _pins(frozen)
    mxnet_builds = {n for n in installed if n.startswith('mxnet')}
    assert len(mxnet_builds) == 1, mxnet_builds          # one MXNet build (mxnet, mxnet-cu112)
    installed.pop(mxnet_builds.pop())
    lock.pop('mxnet')
    unpinned = sorted(set(installed) - set(lock))
    assert unpinned == [], 'installed but not in the lock (run make lock): %s' % unpinned
    wrong = {n: (v, lock[n]) for n, v in installed.items() if lock[n] != v}
    assert wrong == {}, 'installed version differs from the lock: %s' % wrong
    missing = sorted(set(lock) - set(installed) - HOROVOD_ONLY)
    assert missing == [], 'in the lock but not installed: %s' % missing
    assert lock['numpy'] == '1.23.5'   # MXNet 1.9.1 does not import with NumPy >= 1.24
