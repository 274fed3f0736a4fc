#!/usr/bin/env python
"""Launches a distributed MXNet job (scheduler, servers, workers) on this machine or over ssh.

Example, two workers and one server on this machine:
    python tools/launch.py -n 2 -s 1 --host 127.0.0.1 -- \\
        python tools/train.py --kvstore dist_sync --dataset synthetic ...
"""
import argparse
import logging
import sys

from tasn_gluon.launch import launch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('-n', '--num-workers', type=int, required=True)
    parser.add_argument('-s', '--num-servers', type=int, default=None,
                        help='default: as many as workers')
    parser.add_argument('--launcher', choices=['local', 'ssh'], default='local')
    parser.add_argument('-H', '--hostfile', default=None, help='ssh: one host[:port] a line')
    parser.add_argument('--host', default='127.0.0.1',
                        help="the scheduler's address (default 127.0.0.1: one machine)")
    parser.add_argument('--interface', default=None, help='network interface for ps-lite, e.g. lo')
    parser.add_argument('--sync-dst-dir', default=None, help='ssh: rsync this folder there first')
    parser.add_argument('--env', action='append', default=[], metavar='KEY=VALUE',
                        help='environment variable for every process (repeatable)')
    parser.add_argument('--timeout', type=float, default=None,
                        help='stop the whole job after this many seconds (local launcher)')
    parser.add_argument('command', nargs=argparse.REMAINDER, help='the command each process runs')
    args = parser.parse_args(argv)
    if args.command and args.command[0] == '--':
        args.command = args.command[1:]
    if not args.command:
        parser.error('give the command to run after the options, e.g. -- python tools/train.py ...')
    for item in args.env:
        if '=' not in item:
            parser.error('--env takes KEY=VALUE, got %r' % item)
    return args


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
    args = parse_args(argv)
    env = dict(item.split('=', 1) for item in args.env)
    return launch(args.command, args.num_workers, args.num_servers, launcher=args.launcher,
                  host=args.host, interface=args.interface, hostfile=args.hostfile,
                  sync_dst_dir=args.sync_dst_dir, env=env, timeout=args.timeout)


if __name__ == '__main__':
    sys.exit(main())
