"""Checkpoints: parameters, trainer states and a JSON record written together and atomically.

A run directory holds, per saved epoch E (1-based count of completed epochs)::

    epoch-00E.params   the network's parameters (``save_parameters``)
    epoch-00E.states   the trainer's states (``Trainer.save_states``: optimizer, momentum)
    epoch-00E.json     epoch, RNG record, metrics history, config, size and SHA-256 of both files,
                       and for a run with --amp the dynamic loss scaler's state (amp_loss_scaler)

and ``checkpoint.json``, which names the last complete checkpoint. Every file is first written
under a temporary name in the same folder, flushed to disk and then renamed over its final name
(``os.replace``), and ``checkpoint.json`` is replaced last, so a run killed at any moment leaves
the previous checkpoint intact and readable.
"""
import glob
import json
import logging
import os
import random
import re
import time

import numpy as np

from ..errors import CheckpointError
from ..files import atomic_write, atomic_write_text, file_sha256

__all__ = ['save_checkpoint', 'load_checkpoint', 'find_checkpoint', 'record_of_params',
           'drop_trainer_states', 'rng_record', 'restore_rng', 'CheckpointError',
           'CHECKPOINT_POINTER']

logger = logging.getLogger(__name__)

CHECKPOINT_POINTER = 'checkpoint.json'
_EPOCH_RE = re.compile(r'^epoch-(\d+)\.json$')


def _np_state_to_json(state):
    name, keys, pos, has_gauss, cached = state
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _np_state_from_json(s):
    return (s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4])


def rng_record(seed, epoch):
    """What resuming needs to repeat the random streams. MXNet cannot read back its generator
    state, so the trainer reseeds every generator (MXNet per device, NumPy, Python) at the start
    of every epoch from (seed, epoch), and the data order of an epoch is a function of
    (seed, epoch) too; the NumPy and Python states at save time are recorded as well."""
    pstate = random.getstate()
    return dict(scheme='reseed-per-epoch', seed=int(seed), next_epoch=int(epoch),
                numpy=_np_state_to_json(np.random.get_state()),
                python=[pstate[0], list(pstate[1]), pstate[2]])


def restore_rng(record):
    """Restores the NumPy and Python generator states saved by ``rng_record``."""
    if not record:
        return
    if record.get('numpy'):
        np.random.set_state(_np_state_from_json(record['numpy']))
    if record.get('python'):
        v, st, g = record['python']
        random.setstate((v, tuple(st), g))


def _name(epoch, ext):
    return 'epoch-%04d.%s' % (epoch, ext)


def save_checkpoint(run_dir, epoch, net, trainer=None, history=None, config=None, rng=None,
                    keep=0, extra=None):
    """Saves the state after ``epoch`` completed epochs; returns the record's path.

    ``keep`` > 0 deletes older epoch checkpoints beyond the newest ``keep`` (after the new one
    is complete).
    """
    os.makedirs(run_dir, exist_ok=True)
    params = os.path.join(run_dir, _name(epoch, 'params'))
    states = os.path.join(run_dir, _name(epoch, 'states'))
    atomic_write(params, net.save_parameters)
    files = {'params': os.path.basename(params)}
    if trainer is not None:
        atomic_write(states, trainer.save_states)
        files['states'] = os.path.basename(states)
    record = dict(epoch=int(epoch), time=time.strftime('%Y-%m-%dT%H:%M:%S%z'), files=files,
                  sha256={k: file_sha256(os.path.join(run_dir, v)) for k, v in files.items()},
                  rng=rng or {}, history=history or [], config=config or {})
    if extra:
        record.update(extra)
    meta = os.path.join(run_dir, _name(epoch, 'json'))
    text = json.dumps(record, indent=1, default=str)
    atomic_write_text(meta, text)
    atomic_write_text(os.path.join(run_dir, CHECKPOINT_POINTER),
                      json.dumps(dict(epoch=int(epoch), record=os.path.basename(meta)), indent=1))
    if keep and keep > 0:
        _prune(run_dir, keep)
    return meta


def _prune(run_dir, keep):
    epochs = sorted(_list_epochs(run_dir))
    for e in epochs[:-keep]:
        for ext in ('json', 'params', 'states'):  # the record first: no record, no checkpoint
            p = os.path.join(run_dir, _name(e, ext))
            if os.path.exists(p):
                os.remove(p)


def drop_trainer_states(run_dir):
    """Deletes the trainer states (optimizer momentum) of every checkpoint of ``run_dir`` and
    records that in each checkpoint record: the run can still be evaluated, exported and
    pictured, but no longer resumed. The demo keeps only what it needs this way."""
    for e in _list_epochs(run_dir):
        meta = os.path.join(run_dir, _name(e, 'json'))
        with open(meta) as f:
            record = json.load(f)
        states = record['files'].pop('states', None)
        if states is None:
            continue
        record.get('sha256', {}).pop('states', None)
        record['trainer_states_dropped'] = True
        atomic_write_text(meta, json.dumps(record, indent=1, default=str))
        os.remove(os.path.join(run_dir, states))


def _list_epochs(run_dir):
    out = []
    for p in glob.glob(os.path.join(run_dir, 'epoch-*.json')):
        m = _EPOCH_RE.match(os.path.basename(p))
        if m:
            out.append(int(m.group(1)))
    return out


def _read_record(run_dir, meta_name, verify=True):
    path = os.path.join(run_dir, meta_name)
    try:
        with open(path) as f:
            record = json.load(f)
        files = record['files']
        files['params']
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError('checkpoint record %s is unreadable or incomplete (%s: %s)'
                              % (path, type(e).__name__, e)) from e
    for key, fname in files.items():
        p = os.path.join(run_dir, fname)
        if not os.path.isfile(p):
            raise CheckpointError('checkpoint %s names %s, which is missing' % (path, p))
        if verify and record.get('sha256', {}).get(key) and \
                file_sha256(p) != record['sha256'][key]:
            raise CheckpointError('checkpoint file %s does not match the SHA-256 recorded in %s '
                                  '(corrupt or overwritten)' % (p, path))
    record['run_dir'] = os.path.abspath(run_dir)
    record['params_path'] = os.path.join(record['run_dir'], record['files']['params'])
    record['states_path'] = (os.path.join(record['run_dir'], record['files']['states'])
                             if 'states' in record['files'] else None)
    record['record_path'] = os.path.abspath(path)
    return record


def record_of_params(params_path):
    """The checkpoint record of an ``epoch-NNNN.params`` file of a run directory, after checking
    the file against the SHA-256 recorded there (CheckpointError when it differs); None when no
    record lies beside it (a file from elsewhere: nothing to check it against)."""
    params_path = os.path.abspath(params_path)
    run_dir, name = os.path.split(params_path)
    meta = name[:-len('.params')] + '.json' if name.endswith('.params') else None
    if meta is None or not os.path.isfile(os.path.join(run_dir, meta)):
        return None
    record = _read_record(run_dir, meta, verify=False)
    if record['files'].get('params') != name:
        return None
    expected = record.get('sha256', {}).get('params')
    if expected and file_sha256(params_path) != expected:
        raise CheckpointError('%s does not match the SHA-256 recorded in %s (corrupt or '
                              'overwritten)' % (params_path, record['record_path']))
    return record


def _candidates(run_dir):
    """Record names, newest first: the pointer's, then the epoch records by epoch."""
    names = []
    pointer = os.path.join(run_dir, CHECKPOINT_POINTER)
    if os.path.isfile(pointer):
        try:
            with open(pointer) as f:
                names.append(json.load(f)['record'])
        except (ValueError, KeyError, TypeError, OSError):
            logger.warning('%s is unreadable; looking for epoch records instead', pointer)
    for name in [_name(e, 'json') for e in sorted(_list_epochs(run_dir), reverse=True)]:
        if name not in names:
            names.append(name)
    return names


def _try_read(run_dir, name, verify):
    """(record, None) or (None, why it cannot be used)."""
    try:
        return _read_record(run_dir, name, verify=verify), None
    except CheckpointError as e:
        return None, str(e)


def find_checkpoint(run_dir, verify=True, fallback=False):
    """The newest complete checkpoint of ``run_dir`` as its record (a dict with ``epoch``,
    ``params_path``, ``states_path``, ``history``, ``config``, ``rng``), or None when the folder
    holds none.

    When the newest is damaged (a file missing or failing its SHA-256): with ``fallback`` the
    newest intact older one is used, with a warning (resume; ``--last-good``); without, a
    CheckpointError names the damaged file and the older epoch that could be used.
    """
    if not os.path.isdir(run_dir):
        return None
    damaged = None
    for name in _candidates(run_dir):
        record, why = _try_read(run_dir, name, verify)
        if record is None:
            damaged = damaged or why
            continue
        if damaged is None:
            return record
        if fallback:
            logger.warning('the newest checkpoint of %s is damaged (%s); using epoch %d, the '
                           'newest intact one', run_dir, damaged, record['epoch'])
            return record
        raise CheckpointError('%s; the newest intact checkpoint is epoch %d: give '
                              '--checkpoint %s to use it, or --last-good' % (
                                  damaged, record['epoch'], record['params_path']))
    if damaged is not None:
        raise CheckpointError('%s, and no older checkpoint of %s is intact' % (damaged, run_dir))
    return None


def load_checkpoint(run_dir, verify=True, fallback=False):
    """Like ``find_checkpoint`` but an error when there is none."""
    record = find_checkpoint(run_dir, verify=verify, fallback=fallback)
    if record is None:
        raise CheckpointError('no complete checkpoint in %s (looked for %s and epoch-NNNN.json '
                              'with their .params/.states)' % (os.path.abspath(run_dir),
                                                               CHECKPOINT_POINTER))
    return record
