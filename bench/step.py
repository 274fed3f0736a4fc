"""TASN's training step against the sum of its parts run alone, and its inference cost.

Measured side by side in one process, same batch, interleaved repeats, medians:

* ``tasn``      one training step of TASN: forward (resize, attention net, trilinear attention,
                maps, two sampler calls, backbone on 2B images, heads), TASNLoss, backward;
* ``att``       the attention net alone: forward + CE + backward on B images at att_size;
* ``backbone``  the backbone alone (+ shared fc): forward + CE + backward on 2B images at
                sample_size;
* ratio 1: tasn / (att + backbone); the target is <= 1.05 (attention, maps, sampler and losses
  cost under 5%);
* ratio 2: TASNPredictor inference (attention net + structure map + sampler + backbone + fc on
  B images) against the plain backbone + fc at sample_size (the baseline's inference), and
  against attention net + backbone inference run alone (the overhead of maps and sampler);
* ratio 3: the cost of telling the attention maps apart in the default mode (float64 relation
  and keys, ``tasn_gluon.maps``) over the same block with the float32 relation and exact
  equality (legacy mode's arithmetic, the default of the release before), as a fraction of
  the training step: ``maps`` and ``maps_exact`` are the maps -> profiles block alone, in
  training mode (the draw included), on the attention net's features of the batch; the
  target is < 0.01.

No optimizer update is timed (it is the same parameters in both). Every block is hybridized
with static allocation. Each case reports the median wall time and the median CPU time of the
process (all threads): on a machine shared with other jobs the wall time is inflated by waiting
for a core while the CPU time is not, so the CPU-time ratios are the robust ones there (use
``--threads 1`` for them); on a dedicated machine both agree. On a GPU (``--gpu``) only the
wall-time ratios mean anything. Record the printed ratios in docs/benchmarks.md.

Mixed precision: ``--precision both`` (the default) measures every case in float32 and under
AMP (``mxnet.contrib.amp``: bfloat16 on a CPU, float16 on a GPU) and prints the AMP / float32
ratio of each. ``amp.init`` patches MXNet for the whole process, so each precision runs in
child processes of its own, alternated ``--rounds`` times so that a change of the machine's
load hits both; each child warms up, then times ``--repeats`` interleaved repeats. Where AMP
cannot run (a CPU without bfloat16 kernels) the reason is printed and float32 alone reported.

    .venv/bin/python bench/step.py                       # CPU, batch 2, resnet50 and resnet18
    .venv/bin/python bench/step.py --threads 1 --repeats 7
    .venv/bin/python bench/step.py --nets resnet18 --repeats 10 --gpu 0
    .venv/bin/python bench/step.py --precision float32   # one process, float32 only
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

mx = autograd = ops = mz = TASNLoss = MapsToProfiles = None  # imported in main(), after
# OMP_NUM_THREADS is set


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--nets', default='resnet50,resnet18', help='comma-separated backbones')
    p.add_argument('--batch-size', type=int, default=2, help='images per step (B)')
    p.add_argument('--num-classes', type=int, default=200)
    p.add_argument('--input-size', type=int, default=512)
    p.add_argument('--att-size', type=int, default=224)
    p.add_argument('--sample-size', type=int, default=224)
    p.add_argument('--repeats', type=int, default=5, help='timed repeats of each measurement')
    p.add_argument('--warmup', type=int, default=2, help='untimed runs of each measurement')
    p.add_argument('--gpu', type=int, default=None, help='GPU id (default: CPU)')
    p.add_argument('--threads', type=int, default=None,
                   help='OMP_NUM_THREADS for MXNet (default: as the environment says)')
    p.add_argument('--precision', choices=['both', 'float32', 'amp'], default='both',
                   help='float32, AMP, or both side by side (default; child processes)')
    p.add_argument('--rounds', type=int, default=2,
                   help='with --precision both: child processes per precision, alternated')
    p.add_argument('--json', default=None, help=argparse.SUPPRESS)  # a child's raw timings
    return p.parse_args()


def timed(fn):
    """(wall seconds, process CPU seconds) of one call."""
    mx.nd.waitall()
    t, c = time.perf_counter(), time.process_time()
    fn()
    mx.nd.waitall()
    return time.perf_counter() - t, time.process_time() - c


def train_step(net, loss_fn, x, y):
    def run():
        with autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
    return run


def in_train_mode(block, x):
    """A forward in training mode, not recorded (the maps carry no gradient)."""
    def run():
        with autograd.train_mode():
            out = block(x)
        out[0].wait_to_read()
    return run


def infer(net, x):
    def run():
        out = net(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
    return run


def _blocks():
    class BackboneHead(mx.gluon.HybridBlock):
        """Backbone + shared fc: the part of TASN that sees the sampled images."""

        def __init__(self, backbone, fc, **kwargs):
            super().__init__(**kwargs)
            self.backbone, self.fc = backbone, fc

        def hybrid_forward(self, F, x):
            return self.fc(self.backbone(x))

    class AttInference(mx.gluon.HybridBlock):
        """Attention-net features alone (no maps, no sampler)."""

        def __init__(self, att_net, **kwargs):
            super().__init__(**kwargs)
            self.body, self.conv1, self.conv2 = att_net.body, att_net.conv1, att_net.conv2

        def hybrid_forward(self, F, x):
            return self.conv2(self.conv1(self.body(x)))

    return BackboneHead, AttInference


def bench_net(name, args, ctx):
    _BackboneHead, _AttInference = _blocks()
    b = args.batch_size
    rng = np.random.RandomState(0)
    mx.random.seed(0)
    tasn = mz.get_tasn(name, args.num_classes, args.input_size, args.att_size,
                       args.sample_size, ctx=ctx)
    # the parts are TASN's own blocks (same parameters, same layout)
    att = tasn.att_net
    part = _BackboneHead(tasn.backbone, tasn.fc)
    pred = tasn.predictor()
    att_inf = _AttInference(tasn.att_net)
    for blk in (tasn, att, part, pred, att_inf):
        blk.hybridize(static_alloc=True, static_shape=True)

    def img(n, size):
        return mx.nd.array(rng.uniform(-120, 130, (n, 3, size, size)), ctx=ctx)

    x, x_att, x_smp = img(b, args.input_size), img(b, args.att_size), img(2 * b, args.sample_size)
    x_smp_b = img(b, args.sample_size)
    y = mx.nd.array(rng.randint(0, args.num_classes, b), ctx=ctx)
    y2 = mx.nd.array(rng.randint(0, args.num_classes, 2 * b), ctx=ctx)
    ce = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    tasn_loss = TASNLoss()

    feats = att_inf(x_att)
    grouping = {k: MapsToProfiles(args.input_size, tasn.attention, official_mask=exact)
                for k, exact in (('maps', False), ('maps_exact', True))}
    for blk in grouping.values():
        blk.hybridize(static_alloc=True, static_shape=True)

    cases = {
        'tasn': train_step(tasn, tasn_loss, x, y),
        'maps': in_train_mode(grouping['maps'], feats),
        'maps_exact': in_train_mode(grouping['maps_exact'], feats),
        'att': train_step(att, lambda out, lab: ce(out[0], lab), x_att, y),
        'backbone': train_step(part, ce, x_smp, y2),
        'predictor': infer(pred, x),
        'baseline': infer(part, x_smp_b),
        'att_infer': infer(att_inf, x_att),
    }
    for fn in cases.values():
        for _ in range(args.warmup):
            fn()
    wall = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    for _ in range(args.repeats):  # interleaved, so that load changes hit every case alike
        for k, fn in cases.items():
            w, c = timed(fn)
            wall[k].append(w)
            cpu[k].append(c)
    print('\n== %s, batch %d (%d sampled images), input %d, attention %d, sampled %d, %s, %s =='
          % (name, b, 2 * b, args.input_size, args.att_size, args.sample_size, ctx,
             args.precision_label))
    print('  %-10s %12s %12s %12s' % ('case', 'wall median', 'wall min', 'cpu median'))
    for k in cases:
        print('  %-10s %9.1f ms %9.1f ms %9.1f ms' % (k, 1e3 * np.median(wall[k]),
                                                      1e3 * min(wall[k]), 1e3 * np.median(cpu[k])))
    for label, t in (('wall', wall), ('cpu', cpu)):
        med = {k: float(np.median(v)) for k, v in t.items()}
        print('  [%s] ratio 1  train step  tasn / (att + backbone)     = %.3f  (target <= 1.05)'
              % (label, med['tasn'] / (med['att'] + med['backbone'])))
        print('  [%s] ratio 2  inference   predictor / plain backbone   = %.3f'
              % (label, med['predictor'] / med['baseline']))
        print('  [%s]          inference   predictor / (att + backbone) = %.3f'
              % (label, med['predictor'] / (med['att_infer'] + med['baseline'])))
        print('  [%s] ratio 3  maps groups (maps - maps_exact) / tasn = %.4f  (target < 0.01)'
              % (label, (med['maps'] - med['maps_exact']) / med['tasn']))
    return wall, cpu


def _child(args, precision, out):
    """This script in a new process for one precision; returns its timings or None (printed
    reason) when it failed."""
    argv = [sys.executable, os.path.abspath(__file__), '--precision', precision, '--json', out,
            '--nets', args.nets, '--batch-size', str(args.batch_size), '--num-classes',
            str(args.num_classes), '--input-size', str(args.input_size), '--att-size',
            str(args.att_size), '--sample-size', str(args.sample_size), '--repeats',
            str(args.repeats), '--warmup', str(args.warmup)]
    argv += ['--gpu', str(args.gpu)] if args.gpu is not None else []
    argv += ['--threads', str(args.threads)] if args.threads is not None else []
    done = subprocess.run(argv, capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()
        print('  %s: the child process failed: %s' % (precision, err[-1] if err else
                                                       'exit %d' % done.returncode))
        return None
    with open(out) as f:
        return json.load(f)


def compare(args):
    """float32 and AMP children alternated; pooled medians and spreads, AMP / float32."""
    pooled = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for precision in ('float32', 'amp'):
                if pooled.get(precision, True) is None:
                    continue  # AMP failed once: it will fail again
                got = _child(args, precision, os.path.join(tmp, '%s-%d.json' % (precision, r)))
                if got is None:
                    pooled[precision] = None
                    continue
                into = pooled.setdefault(precision, dict(label=got['label'], nets={}))
                for net, kinds in got['nets'].items():
                    for kind, cases in kinds.items():
                        for case, times in cases.items():
                            into['nets'].setdefault(net, {}).setdefault(kind, {}) \
                                .setdefault(case, []).extend(times)
    f32, amp = pooled.get('float32'), pooled.get('amp')
    if not f32 or not amp:
        print('\nno AMP / float32 comparison: %s did not run' % ('AMP' if f32 else 'float32'))
        return
    print('\n== AMP (%s) against float32, %d rounds x %d repeats each, pooled ==' % (
        amp['label'], args.rounds, args.repeats))
    print('  %-9s %-10s %-5s %24s %24s %8s' % ('net', 'case', 'time', 'float32 median [min-max]',
                                               'AMP median [min-max]', 'AMP/f32'))
    for net in f32['nets']:
        for case in f32['nets'][net]['wall']:
            for kind in ('wall', 'cpu'):
                a, b = f32['nets'][net][kind][case], amp['nets'][net][kind][case]
                print('  %-9s %-10s %-5s %9.1f [%5.1f-%5.1f] ms %9.1f [%5.1f-%5.1f] ms %8.3f' % (
                    net, case, kind, 1e3 * np.median(a), 1e3 * min(a), 1e3 * max(a),
                    1e3 * np.median(b), 1e3 * min(b), 1e3 * max(b),
                    np.median(b) / np.median(a)))


def main():
    global mx, autograd, ops, mz, TASNLoss, MapsToProfiles
    args = parse_args()
    if args.threads is not None:
        os.environ['OMP_NUM_THREADS'] = str(args.threads)
    if args.precision == 'both':
        from tasn_gluon.engine.precision import cpu_model
        print('step benchmark, float32 and AMP; %s; python %s' % (
            cpu_model() if args.gpu is None else 'GPU %d' % args.gpu, sys.version.split()[0]))
        return compare(args)
    import mxnet
    from mxnet import autograd as _autograd
    from tasn_gluon import ops as _ops, model_zoo as _mz
    from tasn_gluon.losses import TASNLoss as _TASNLoss
    from tasn_gluon.maps import MapsToProfiles as _MapsToProfiles
    mx, autograd, ops, mz, TASNLoss = mxnet, _autograd, _ops, _mz, _TASNLoss
    MapsToProfiles = _MapsToProfiles
    ops.load()
    ctx = mx.gpu(args.gpu) if args.gpu is not None else mx.cpu()
    args.precision_label = 'float32'
    if args.precision == 'amp':  # before any network is built
        from tasn_gluon.engine.precision import enable_amp
        args.precision_label = enable_amp([ctx]) + ' AMP'
    print('mxnet %s, OMP_NUM_THREADS=%s, repeats %d, warmup %d'
          % (mx.__version__, os.environ.get('OMP_NUM_THREADS', 'default'), args.repeats,
             args.warmup))
    nets = {}
    for name in args.nets.split(','):
        wall, cpu = bench_net(name.strip(), args, ctx)
        nets[name.strip()] = dict(wall=wall, cpu=cpu)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(label=args.precision_label, nets=nets), f)


if __name__ == '__main__':
    main()
