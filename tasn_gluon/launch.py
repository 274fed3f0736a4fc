"""Starts MXNet parameter-server jobs (scheduler, servers, workers) through the dmlc_tracker
that ships with MXNet, with what breaks there mended:

* ``Thread.isAlive`` was removed in Python 3.9; the tracker still calls it.
* The tracker binds the scheduler to the machine's own address (found by resolving the host
  name, or by a UDP "connect" towards a private address); here the address is chosen by the
  caller (``127.0.0.1`` for a one-machine job) and every process is told to use it.
* Its local launcher leaves the job hanging when a worker fails (the scheduler waits for it
  forever); here the first failing worker, or a timeout, ends the whole job.

:func:`launch` returns the job's exit status: 0 when every worker succeeded, else the status of
the first worker that failed (the tools' own: 2 a bad input, 3 a diverged run ...), or
:data:`EXIT_TIMEOUT` when the job ran past its timeout.
"""
import logging
import os
import shlex
import signal
import subprocess
import threading
import time

from .errors import ConfigError

__all__ = ['EXIT_TIMEOUT', 'launch', 'patch_dmlc_tracker']

log = logging.getLogger(__name__)

EXIT_TIMEOUT = 124     # as coreutils' timeout


def patch_dmlc_tracker(host):
    """Makes the bundled tracker usable on Python 3.11 and pins the scheduler's address."""
    from dmlc_tracker import tracker
    if not hasattr(threading.Thread, 'isAlive'):
        threading.Thread.isAlive = threading.Thread.is_alive

    def chosen_host_ip(host_ip=None):
        return host if host_ip in (None, 'auto', 'ip', 'dns') else host_ip
    tracker.get_host_ip = chosen_host_ip
    return tracker


class LocalJob:
    """Runs the servers and workers of a one-machine job as child processes and watches them."""

    def __init__(self, command, host, interface, extra_env):
        self.command = command
        self.host = host
        self.interface = interface
        self.extra_env = dict(extra_env)
        self.procs = []  # (role, task id, Popen)
        self.failed = threading.Event()
        self.failed_status = None          # the exit status of the worker that failed
        self.workers_done = threading.Event()

    def _env(self, role, task_id, tracker_env):
        env = dict(os.environ)
        env.update({k: str(v) for k, v in tracker_env.items()})
        env.update(self.extra_env)
        env.update(DMLC_ROLE=role, DMLC_TASK_ID=str(task_id), DMLC_JOB_CLUSTER='local',
                   DMLC_NODE_HOST=self.host)
        if self.interface:
            env['DMLC_INTERFACE'] = self.interface
        return env

    def submit(self, num_workers, num_servers, tracker_env):
        """The tracker's fun_submit: called once the scheduler is up."""
        for task_id in range(num_workers + num_servers):
            role = 'worker' if task_id < num_workers else 'server'
            proc = subprocess.Popen(self.command, shell=True, executable='/bin/bash',
                                    env=self._env(role, task_id, tracker_env))
            self.procs.append((role, task_id, proc))
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self):
        while True:
            workers = [(t, p.poll()) for r, t, p in self.procs if r == 'worker']
            bad = [(t, code) for t, code in workers if code not in (None, 0)]
            if bad:
                log.error('worker (task %d) exited with code %d: stopping the job', *bad[0])
                self.failed_status = bad[0][1]
                self.failed.set()
                return
            if all(code == 0 for _, code in workers):
                self.workers_done.set()
                return
            time.sleep(0.2)


def _kill_group():
    """Ends this process group: the scheduler, servers and workers all belong to it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.killpg(os.getpgrp(), signal.SIGTERM)


def launch(command, num_workers, num_servers=None, launcher='local', host='127.0.0.1',
           interface=None, hostfile=None, sync_dst_dir=None, env=None, timeout=None):
    """Runs ``command`` (a shell string or a list) as a distributed MXNet job.

    Parameters
    ----------
    command : str or list of str
        The training command; every worker, server and the scheduler run it (servers and the
        scheduler stop inside ``import mxnet``, as MXNet's kvstore server does).
    num_workers, num_servers : int
        Servers default to the number of workers.
    launcher : 'local' or 'ssh'
        ssh needs ``hostfile`` (one ``host[:port]`` a line) and MXNet installed on every host.
    host : str
        Address the scheduler binds to and that every process is told to use; for ssh, an
        address of this machine that the other hosts reach.
    interface : str, optional
        Network interface for ps-lite (DMLC_INTERFACE), e.g. ``lo`` or ``eth0``.
    env : dict, optional
        Extra environment variables for every process.
    timeout : float, optional
        Seconds after which the whole job is stopped (local launcher).

    Returns
    -------
    int: the job's exit status (module docstring).
    """
    if isinstance(command, (list, tuple)):
        command = ' '.join(shlex.quote(c) for c in command)
    num_servers = num_workers if num_servers is None else num_servers
    if num_workers < 1 or num_servers < 1:
        raise ConfigError('need at least one worker and one server, got %d and %d'
                          % (num_workers, num_servers))
    if launcher not in ('local', 'ssh'):
        raise ConfigError("--launcher must be 'local' or 'ssh', not %r" % launcher)
    if os.getpgrp() != os.getpid():
        os.setpgrp()  # lead a process group, so that one signal ends the whole job
    tracker = patch_dmlc_tracker(host)
    if launcher == 'ssh':
        return _launch_ssh(tracker, command, num_workers, num_servers, host, interface, hostfile,
                           sync_dst_dir, env)
    return _launch_local(tracker, command, num_workers, num_servers, host, interface, env,
                         timeout)


def _launch_local(tracker, command, num_workers, num_servers, host, interface, env, timeout):
    job = LocalJob(command, host, interface, env or {})
    scheduler_env = {'DMLC_NODE_HOST': host}
    if interface:
        scheduler_env['DMLC_INTERFACE'] = interface
    os.environ.update(scheduler_env)  # the tracker starts the scheduler with os.environ
    threading.Thread(target=tracker.submit, daemon=True,
                     kwargs=dict(nworker=num_workers, nserver=num_servers, hostIP=host,
                                 fun_submit=job.submit, pscmd=command)).start()
    deadline = None if timeout is None else time.time() + timeout
    while not (job.workers_done.is_set() or job.failed.is_set()):
        if deadline is not None and time.time() > deadline:
            log.error('the job did not finish within %.0f s: stopping it', timeout)
            _kill_group()
            return EXIT_TIMEOUT
        time.sleep(0.2)
    if job.failed.is_set():
        _kill_group()
        return job.failed_status
    for _, _, proc in job.procs:  # servers stop once every worker has finalised
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log.error('the servers did not stop within 30 s of the workers: stopping them')
            _kill_group()
            return EXIT_TIMEOUT
    return 0


def _launch_ssh(tracker, command, num_workers, num_servers, host, interface, hostfile,
                sync_dst_dir, env):
    from dmlc_tracker import opts, ssh
    if not hostfile or not os.path.isfile(hostfile):
        raise ConfigError('the ssh launcher needs --hostfile: a file with one host a line '
                          '(got %r)' % hostfile)
    if interface:
        os.environ['DMLC_INTERFACE'] = interface  # ssh.get_env forwards it
    args = ['--cluster', 'ssh', '--num-workers', str(num_workers), '--num-servers',
            str(num_servers), '--host-file', hostfile, '--host-ip', host]
    if sync_dst_dir:
        args += ['--sync-dst-dir', sync_dst_dir]
    if env:  # the ssh launcher forwards only a few variables of its own choosing
        command = 'env %s %s' % (' '.join('%s=%s' % (k, shlex.quote(str(v)))
                                          for k, v in env.items()), command)
    ssh.submit(opts.get_opts(args + [command]))
    return 0
