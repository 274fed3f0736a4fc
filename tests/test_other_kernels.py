"""The numerically sensitive tests again, as other CPUs would run them.

MXNet's OpenBLAS rounds rows of a product that are equal in exact arithmetic differently by
kernel and by thread block, so a test that passes here may hang on this CPU's rounding. Other
CPUs' kernels and thread splits are reproduced on this one: ``OPENBLAS_CORETYPE=Haswell`` (the
AVX2 kernels of most AMD and older Intel CPUs; AVX-512 machines otherwise pick SkylakeX) and
``OMP_NUM_THREADS`` 1 and 4 (other row blocks). Each setting re-runs the sensitive files in a
process of its own, the three at once; a failure prints that run's report.
(``OPENBLAS_CORETYPE`` is never set empty: NumPy 1.23.5's own OpenBLAS then gives wrong float64
products on AMD CPUs.)
"""
import os
import subprocess
import sys

import pytest

from conftest import ROOT

# the official graph, maps and groups, attention, sampler, losses, export round trips, AMP casts
SENSITIVE = ('test_official_graph.py', 'test_maps.py', 'test_attention.py', 'test_sampler.py',
             'test_losses.py', 'test_export.py', 'test_amp.py')
SETTINGS = {
    'haswell': dict(OPENBLAS_CORETYPE='Haswell'),
    'threads-1': dict(OMP_NUM_THREADS='1'),
    'threads-4': dict(OMP_NUM_THREADS='4'),
}


@pytest.mark.slow
@pytest.mark.multiprocess
def test_sensitive_tests_pass_under_other_kernels_and_thread_counts():
    """All settings side by side (each run is mostly one busy core), then each one's verdict."""
    files = [os.path.join(ROOT, 'tests', f) for f in SENSITIVE]
    # 'not slow' leaves out only test_amp.py's whole trainings, which the main run covers.
    runs = {name: subprocess.Popen([sys.executable, '-m', 'pytest', '-q', '-p',
                                    'no:cacheprovider', '-m', 'not slow', *files],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, **setting), cwd=ROOT)
            for name, setting in SETTINGS.items()}
    failed = []
    for name, proc in runs.items():
        try:
            out, err = proc.communicate(timeout=1200)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        lines = out.splitlines()
        if proc.returncode != 0 or not lines or ' passed' not in lines[-1]:
            failed.append('%s %s (exit %s):\n%s' % (name, SETTINGS[name], proc.returncode,
                                                     out[-6000:] + err[-2000:]))
    assert not failed, '\n\n'.join(failed)
