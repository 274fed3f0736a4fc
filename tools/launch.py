#!/usr/bin/env python
"""Launches a distributed MXNet job (scheduler, servers, workers) on this machine or over ssh.

Example, two workers and one server on this machine:
    python tools/launch.py -n 2 -s 1 --host 127.0.0.1 -- \\
        python tools/train.py --kvstore dist_sync --dataset synthetic ...

Exit status: the job's (0 when every worker succeeded, else the first failing worker's), 124
when it ran past --timeout, 2 for a bad flag of this tool.
"""
import argparse
import sys

from tasn_gluon import cli
from tasn_gluon.cli import positive_float, positive_int
from tasn_gluon.launch import launch


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument('-n', '--num-workers', type=positive_int, required=True)
    p.add_argument('-s', '--num-servers', type=positive_int, default=None,
                   help='default: as many as workers')
    p.add_argument('--launcher', choices=['local', 'ssh'], default='local')
    p.add_argument('-H', '--hostfile', default=None, help='ssh: one host[:port] a line')
    p.add_argument('--host', default='127.0.0.1',
                   help="the scheduler's address (default 127.0.0.1: one machine)")
    p.add_argument('--interface', default=None, help='network interface for ps-lite, e.g. lo')
    p.add_argument('--sync-dst-dir', default=None, help='ssh: rsync this folder there first')
    p.add_argument('--env', action='append', default=[], metavar='KEY=VALUE',
                   help='environment variable for every process (repeatable)')
    p.add_argument('--timeout', type=positive_float, default=None,
                   help='stop the whole job after this many seconds (local launcher)')
    p.add_argument('command', nargs=argparse.REMAINDER, help='the command each process runs')
    args = p.parse_args(argv)
    if args.command and args.command[0] == '--':
        args.command = args.command[1:]
    if not args.command:
        p.error('give the command to run after the options, e.g. -- python tools/train.py ...')
    for item in args.env:
        if '=' not in item:
            p.error('--env takes KEY=VALUE, got %r' % item)
    return args


def work(args):
    env = dict(item.split('=', 1) for item in args.env)
    return launch(args.command, args.num_workers, args.num_servers, launcher=args.launcher,
                  host=args.host, interface=args.interface, hostfile=args.hostfile,
                  sync_dst_dir=args.sync_dst_dir, env=env, timeout=args.timeout)


def main(argv=None):
    return cli.run(parse_args, work, argv)


if __name__ == '__main__':
    sys.exit(main())
