"""The mixed-precision jobs of tests/test_amp.py, each run in a process of its own
(``python tests/amp_jobs.py JOB ARGS_JSON``): ``amp.init`` patches MXNet for the whole process
and cannot be undone, so no AMP case may run inside the test process. A job prints one JSON
line (its findings) last; the tests assert on it. ``one_step`` also runs in float32 in the test
process itself. This module holds no tests."""
import json
import os
import sys

import mxnet as mx
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the operator inventory of the graph: what AMP made of each kind (see job_graph)
WATCHED = ('Convolution', 'FullyConnected', 'AttSampler', 'softmax', 'batch_dot',
           'broadcast_equal', 'sort')


def run_job(name, args, env=None, timeout=600):
    """Runs job ``name`` in a new process; returns (its JSON findings, CompletedProcess)."""
    import subprocess
    done = subprocess.run([sys.executable, os.path.abspath(__file__), name, json.dumps(args)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env=dict(os.environ, **(env or {})))
    lines = done.stdout.strip().splitlines()
    found = json.loads(lines[-1]) if done.returncode == 0 and lines else None
    return found, done


def _tiny_cfg(**kw):
    from tasn_gluon.engine.config import resolve_config
    cfg = dict(dataset='synthetic', net='resnet18', method='tasn', input_size=64, att_size=32,
               sample_size=32, num_classes=4, batch_size=4, lr=0.1, momentum=0.9,
               from_scratch=True)
    cfg.update(kw)
    return resolve_config(cfg)


# ------------------------------------------------------------------------------ jobs

def job_api(args):
    """enable_amp's rules, and the loss scaler through an overflow and a save/restore."""
    from mxnet import autograd, gluon
    from tasn_gluon.engine import precision
    from tasn_gluon.engine.preparation import make_trainer
    from tasn_gluon import ops
    out = dict(before=precision.amp_dtype(), sampler_before=hasattr(mx.nd, 'AttSampler'))
    out['dtype'] = precision.enable_amp([mx.cpu(0), mx.cpu(1)])
    out['sampler_after'] = hasattr(mx.nd, 'AttSampler')   # loaded before amp.init
    ops.load()                                            # a no-op now: the patches stay
    out['patched_after_load'] = precision._patched()
    out['again'] = precision.enable_amp([mx.cpu()])
    try:
        precision.enable_amp([mx.gpu(0)])
        out['other_dtype_error'] = None
    except precision.AMPError as e:
        out['other_dtype_error'] = str(e)

    # a trainer as the engine makes it, on a net of two Dense layers
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(8, activation='relu'), gluon.nn.Dense(3))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()
    cfg = _tiny_cfg(amp=True)
    trainer = make_trainer(net, cfg, 'local')
    x, y = mx.nd.ones((4, 5)), mx.nd.array([0, 1, 2, 0])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    out['multi_precision'] = trainer._optimizer.multi_precision
    out['param_dtypes'] = sorted({np.dtype(p.dtype).name
                                  for p in net.collect_params().values()})

    def step(poison=False):
        with autograd.record():
            heads = precision.scale_losses([loss_fn(net(x), y)], trainer)
        autograd.backward(heads)
        if poison:  # what a float16 overflow leaves in a gradient
            g = next(iter(net.collect_params().values())).grad()
            g[0, 0] = float('inf')
        before = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
        trainer.step(4)
        moved = any(not np.array_equal(before[k], p.data().asnumpy())
                    for k, p in net.collect_params().items())
        return dict(skipped=precision.step_skipped(trainer), moved=moved,
                    state=precision.scaler_state(trainer))
    out['clean'] = step()
    out['overflow'] = step(poison=True)
    out['after_overflow'] = step()
    saved = json.loads(json.dumps(precision.scaler_state(trainer)))
    fresh = make_trainer(net, cfg, 'local')
    out['fresh'] = precision.scaler_state(fresh)
    precision.restore_scaler(fresh, saved)
    out['restored'] = precision.scaler_state(fresh)
    out['saved'] = saved
    # multi-precision SGD keeps no float32 master copies of float32 weights: each momentum
    # state is one NDArray, not a (master weight, momentum) pair
    out['state_kinds'] = sorted({type(s).__name__ for s in trainer._updaters[0].states.values()})
    return out


def _amp_init(dtype):
    """AMP on as ``precision.enable_amp`` turns it on (the operator library first), but for
    either dtype on this CPU and without its bfloat16 probe: float16 is the GPU dtype, whose
    graphs and casts can be checked here without a GPU."""
    from mxnet.contrib import amp
    from tasn_gluon import ops
    ops.load()
    amp.init(target_dtype=dtype)


def job_casts(args):
    """Under AMP, features in float16/bfloat16 (what AMP's convolutions give) are cast to
    float32 before the attention, the distinct-map comparisons and the profiles, and images
    before the sampler: the results against those of the same values given in float32."""
    from mxnet.contrib.amp.amp import bfloat16
    from tasn_gluon import model_zoo as mz
    from tasn_gluon.attention import TrilinearAttention
    from tasn_gluon.maps import sampler_inputs
    _amp_init(args['dtype'])
    low = bfloat16 if args['dtype'] == 'bfloat16' else np.float16
    rs = np.random.RandomState(0)
    feats = np.maximum(rs.normal(size=(2, 16, 4, 4)), 0).astype(np.float32)
    feats[:, 3:7] = 0                              # zero channels: tied maps, as in TASN
    x_low = mx.nd.amp_cast(mx.nd.array(feats), dtype=low)
    x_32 = mx.nd.amp_cast(x_low, dtype='float32')  # the same values in float32
    att = TrilinearAttention()
    outs = []
    for x in (x_low, x_32):
        mx.random.seed(4)   # the detail draw
        outs.append(list(sampler_inputs(mx.nd, x, 32, att)) + [att(x)])
    net = mz.get_tasn('resnet18', 3, 64, 32, 32)
    img = mx.nd.amp_cast(mx.nd.array(rs.uniform(-100, 100, (2, 3, 64, 64))), dtype=low)
    dy, dx = outs[0][0], outs[0][1]
    sampled = net._sample(mx.nd, img, dy, dx)
    ref = net._sample(mx.nd, mx.nd.amp_cast(img, dtype='float32'), dy, dx)
    return dict(input_dtype=_dtype_name(x_low.dtype),
                dtypes=[_dtype_name(a.dtype) for a in outs[0]],
                equal=[bool(np.array_equal(a.asnumpy(), b.asnumpy())) for a, b in zip(*outs)],
                num_distinct=outs[0][6].asnumpy().sum(axis=1).tolist(),
                sampled_dtype=_dtype_name(sampled.dtype),
                sampled_equal=bool(np.array_equal(sampled.asnumpy(), ref.asnumpy())))


def _dtype_name(t):
    return None if t is None else ('bfloat16' if np.dtype(t).itemsize == 2 and
                                   np.dtype(t).kind == 'V' else np.dtype(t).name)


def job_graph(args):
    """The dtypes AMP gives the inputs of each watched operator in TASN's training graph (and
    its outputs), built as Symbols on the CPU: float16 (the GPU case) needs no GPU here."""
    from tasn_gluon.engine.builders import build_net
    _amp_init(args['dtype'])
    net = build_net(_tiny_cfg(method=args.get('method', 'tasn')), [mx.cpu()])
    block = net.with_attention_stats() if args.get('method', 'tasn') == 'tasn' else net
    outs = block(mx.sym.var('data'))
    sym = mx.sym.Group(list(outs)) if isinstance(outs, (list, tuple)) else outs
    internals = sym.get_internals()
    _, types, _ = internals.infer_type(data='float32')
    dtype_of = dict(zip(internals.list_outputs(), map(_dtype_name, types)))
    nodes = json.loads(sym.tojson(remove_amp_cast=False))['nodes']  # default drops the casts

    def name(i, j):
        n = nodes[i]
        if n['op'] == 'null':
            return n['name']
        single = n['name'] + '_output'
        return single if single in dtype_of else '%s_output%d' % (n['name'], j)
    inventory = {}
    for n in nodes:
        if n['op'] in WATCHED:
            key = '%s(%s)' % (n['op'], ','.join(str(dtype_of.get(name(i, j)))
                                                 for i, j, *_ in n['inputs']))
            inventory[key] = inventory.get(key, 0) + 1
    _, out_types, _ = sym.infer_type(data='float32')
    return dict(inventory=inventory, outputs=[_dtype_name(t) for t in out_types])


def one_step(data_dir, out, method, amp):
    """Builds a run as the engine does (``prepare``) and trains one step on the first batch
    of epoch 1. Returns the per-sample loss terms of that batch (the same random draws as the
    step), the parameters before and after, and what the trainer is."""
    from mxnet import autograd, gluon
    from conftest import real_config
    from tasn_gluon.engine import builders
    from tasn_gluon.engine.preparation import prepare
    from tasn_gluon.engine.seeds import epoch_seed, seed_everything
    from tasn_gluon.engine.training import train_step
    cfg = real_config(data_dir, out, method=method, epochs=1, batch_size=12, amp=amp)
    tr = prepare(cfg)
    params = tr.net._collect_params_with_prefix()
    w0 = {k: p.data().asnumpy() for k, p in params.items()}
    seed = epoch_seed(tr.cfg.seed, 0)
    seed_everything(seed)
    batch = next(iter(builders.train_loader(tr.cfg, tr.cfg.data_dir, seed)))
    x, y = batch.data[0], batch.label[0]
    xs, ys = x.as_in_context(tr.ctx[0]), y.as_in_context(tr.ctx[0])   # the step splits x, y itself
    mx.random.seed(seed + 1)
    with autograd.record():  # train mode, not differentiated: the step below repeats it
        outs = tr.net(xs)
    terms = tr.loss_fn.terms(outs, ys) if method == 'tasn' else \
        dict(total=gluon.loss.SoftmaxCrossEntropyLoss()(outs, ys))
    terms = {k: v.asnumpy() for k, v in terms.items()}
    logits = (outs[0] if method == 'tasn' else outs).asnumpy()
    mx.random.seed(seed + 1)
    values, _ = train_step(tr.net, tr.trainer, tr.loss_fn, x, y, tr.ctx, tr.step_size)
    w1 = {k: p.data().asnumpy() for k, p in params.items()}
    grad_req = {k: p.grad_req for k, p in params.items()}
    return dict(terms=terms, values=values, logits=logits, w0=w0, w1=w1, grad_req=grad_req,
                param_dtypes=sorted({np.dtype(v.dtype).name for v in w1.values()}))


def job_step(args):
    """``one_step`` under AMP for each method; the arrays go to an .npz file."""
    arrays = {}
    for method in args['methods']:
        r = one_step(args['data_dir'], os.path.join(args['out'], method), method, True)
        for k, v in r['terms'].items():
            arrays['%s/term/%s' % (method, k)] = v
        arrays['%s/values' % method] = r['values']
        arrays['%s/logits' % method] = r['logits']
        for k in r['w0']:
            arrays['%s/w0/%s' % (method, k)] = r['w0'][k]
            arrays['%s/w1/%s' % (method, k)] = r['w1'][k]
    np.savez(args['npz'], **arrays)
    return dict(npz=args['npz'])


def job_train(args):
    """``engine.run`` of each configuration of ``args['cfgs']`` (JSON; a resume too) in turn, in
    this one process; returns per run the history and what its last checkpoint recorded."""
    from tasn_gluon.engine import load_checkpoint, run
    from tasn_gluon.logs import run_log
    results = []
    for cfg in args['cfgs']:
        out = cfg.get('out') or cfg.get('resume')
        with run_log(out):
            hist = run(cfg)
        rec = load_checkpoint(out)
        results.append(dict(history=hist, amp_loss_scaler=rec.get('amp_loss_scaler'),
                            epoch=rec['epoch'], param_dtypes=sorted(
                                {np.dtype(v.dtype).name
                                 for v in mx.nd.load(rec['params_path']).values()})))
    return results


JOBS = dict(api=job_api, casts=job_casts, graph=job_graph, step=job_step, train=job_train)

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    result = JOBS[sys.argv[1]](json.loads(sys.argv[2]))
    print(json.dumps(result, default=str))
