"""tools/launch.py: a parameter-server job on 127.0.0.1 with bounded time, and nothing left
running afterwards, whether the job succeeds, fails or times out."""
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from jobs import ROOT, assert_group_gone

WORKER = textwrap.dedent('''
    import os, sys, time
    import mxnet as mx
    mode = sys.argv[1]
    kv = mx.kv.create('dist_sync')
    if mode == 'fail' and kv.rank == 1:
        os._exit(3)  # a crash: sys.exit would wait in ps-lite's shutdown for its peers
    if mode == 'hang' and kv.rank == 1:
        time.sleep(600)
    kv.init(7, mx.nd.zeros((4,)))
    kv.push(7, mx.nd.ones((4,)) * (kv.rank + 1))
    out = mx.nd.zeros((4,))
    kv.pull(7, out=out)
    print('rank %d of %d pulled %s host %s' % (kv.rank, kv.num_workers, out.asnumpy().tolist(),
          os.environ['DMLC_PS_ROOT_URI']), flush=True)
''')


def run_job(tmp_path, mode, timeout):
    script = tmp_path / 'worker.py'
    script.write_text(WORKER)
    cmd = [sys.executable, os.path.join(ROOT, 'tools', 'launch.py'), '-n', '2', '-s', '1',
           '--host', '127.0.0.1', '--timeout', str(timeout), '--',
           sys.executable, str(script), mode]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout + 60)
    finally:
        try:  # whatever happened, nothing of the job may outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, output, proc.pid


@pytest.mark.multiprocess
def test_dist_sync_job_on_loopback(tmp_path):
    code, output, pgid = run_job(tmp_path, 'ok', timeout=90)
    assert code == 0, output
    # The workers share one pipe, so their lines may interleave: match the reports anywhere.
    # The host is matched as digits and dots, so a report glued to it is not swallowed.
    reports = re.findall(r'rank (\d) of 2 pulled \[([^\]]*)\] host ([\d.]+)', output)
    assert sorted(r[0] for r in reports) == ['0', '1'], output
    assert all(r[1] == '3.0, 3.0, 3.0, 3.0' and r[2] == '127.0.0.1' for r in reports), output
    assert_group_gone(pgid)


@pytest.mark.multiprocess
def test_failing_worker_stops_the_job(tmp_path):
    """A worker that fails ends the whole job, whose exit status is that worker's."""
    start = time.time()
    code, output, pgid = run_job(tmp_path, 'fail', timeout=90)
    assert code == 3, output
    assert 'exited with code 3' in output
    assert time.time() - start < 80
    assert_group_gone(pgid)


@pytest.mark.multiprocess
def test_timeout_stops_a_hanging_job(tmp_path):
    code, output, pgid = run_job(tmp_path, 'hang', timeout=20)
    assert code != 0
    assert 'did not finish within 20 s' in output
    assert_group_gone(pgid)


def test_launcher_rejects_a_missing_command():
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'tools', 'launch.py'), '-n', '2'],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and 'give the command' in result.stderr
