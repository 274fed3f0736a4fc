"""Multi-worker training through tools/train.py on 127.0.0.1: MXNet's parameter server
(scheduler + one server + two workers started by tools/launch.py, ``--kvstore dist_sync``).

Every worker runs tools/train.py inside a small wrapper (tests/jobs.py) that records what the
trainer does not write on workers other than rank 0: the labels of the training batches the
worker read and its parameters at the end. The tiny set has one training image per class, so a
label names an image. Afterwards the two workers must hold identical trainable parameters, equal
to rank 0's checkpoint and different from the initial ones, and must have read disjoint shards
that together cover the training set.

The job has a time limit (the launcher's ``--timeout``, and the test's own), uses only
127.0.0.1, runs in its own session and is killed as a group whatever happens.
"""
import pytest

from jobs import assert_trained, check_workers, run_dist_sync, train_args, write_wrapper


@pytest.mark.multiprocess
@pytest.mark.slow
def test_dist_sync_two_workers(one_image_per_class, tmp_path):
    wrapper = write_wrapper(tmp_path)
    out = str(tmp_path / 'run')
    run_dist_sync(wrapper, train_args(one_image_per_class, out, 'dist_sync'), out)
    final = check_workers(out)
    assert_trained(out, final)
