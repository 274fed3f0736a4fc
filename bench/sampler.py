"""AttSampler on the CPU against OpenCV and the pure-MXNet route, side by side in one run.

Batch 12 of 3x512x512 float32 -> 224x224 (the paper's sizes), timed for:
  * AttSampler: this project's operator, grid computation included (peaked random profiles);
  * cv2.resize (INTER_LINEAR) of each HWC image to 224x224: a plain resize, the speed bar;
  * cv2.remap with per-pixel maps built from the same grid;
  * mx.nd.BilinearSampler with a (N, 2, 224, 224) grid built from the same coordinates.
Each is run single-threaded and with all cores (a child process per setting, since MXNet
fixes its OpenMP pool at import). Usage: python bench/sampler.py [--batch 12] [--repeat 10]
"""
import argparse
import json
import os
import subprocess
import sys
import time


def best_times(fns, repeat):
    """Best time of each function, measured round-robin so that all see the same machine."""
    for fn in fns.values():
        fn()  # warm-up
    best = dict.fromkeys(fns, float('inf'))
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def measure(batch, size, out, repeat, threads):
    import cv2
    import mxnet as mx
    import numpy as np
    from tasn_gluon import ops

    cv2.setNumThreads(threads)
    ops.load()
    rng = np.random.RandomState(0)
    data = rng.uniform(0, 255, (batch, 3, size, size)).astype(np.float32)
    att_y = (rng.uniform(size=(batch, size)) ** 4).astype(np.float32)
    att_x = (rng.uniform(size=(batch, size)) ** 4).astype(np.float32)
    scale = out / size
    x, ay, ax = mx.nd.array(data), mx.nd.array(att_y), mx.nd.array(att_x)
    images_hwc = [np.ascontiguousarray(d.transpose(1, 2, 0)) for d in data]
    ys, xs = [a.asnumpy() for a in ops.att_sampler_grid(ay, ax, size, size, scale)]
    maps = [(np.broadcast_to(xs[i][None, :], (out, out)).astype(np.float32).copy(),
             np.broadcast_to(ys[i][:, None], (out, out)).astype(np.float32).copy())
            for i in range(batch)]

    def operator():
        ops.att_sampler(x, ay, ax, scale=scale).wait_to_read()

    def resize():
        for image in images_hwc:
            cv2.resize(image, (out, out), interpolation=cv2.INTER_LINEAR)

    def remap():
        for image, (map_x, map_y) in zip(images_hwc, maps):
            cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def bilinear_sampler():
        gy, gx = ops.att_sampler_grid(ay, ax, size, size, scale)
        # BilinearSampler wants x, y in [-1, 1] with align corners, per output pixel.
        plane = (batch, 1, out, out)
        gx = (gx * (2.0 / (size - 1)) - 1).reshape((batch, 1, 1, out)).broadcast_to(plane)
        gy = (gy * (2.0 / (size - 1)) - 1).reshape((batch, 1, out, 1)).broadcast_to(plane)
        mx.nd.BilinearSampler(x, mx.nd.concat(gx, gy, dim=1)).wait_to_read()

    return best_times({'AttSampler': operator, 'cv2.resize': resize, 'cv2.remap': remap,
                       'BilinearSampler': bilinear_sampler}, repeat)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=12)
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--out', type=int, default=224)
    parser.add_argument('--repeat', type=int, default=30)
    parser.add_argument('--threads', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:  # child: one thread setting
        print(json.dumps(measure(args.batch, args.size, args.out, args.repeat, args.threads)))
        return
    cores = os.cpu_count()
    print('AttSampler benchmark: batch %d of 3x%dx%d float32 -> %dx%d, best of %d'
          % (args.batch, args.size, args.size, args.out, args.out, args.repeat))
    for threads in sorted({1, cores}):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_CPU_WORKER_NTHREADS='1')
        cmd = [sys.executable, __file__, '--threads', str(threads), '--batch', str(args.batch),
               '--size', str(args.size), '--out', str(args.out), '--repeat', str(args.repeat)]
        result = json.loads(subprocess.check_output(cmd, env=env).decode().strip().splitlines()[-1])
        base = result['AttSampler']
        print('\n%d thread(s):' % threads)
        print('| method | ms per batch | time / AttSampler |')
        print('|---|---|---|')
        for name, seconds in result.items():
            print('| %s | %.2f | %.2fx |' % (name, seconds * 1e3, seconds / base))
        print('AttSampler vs cv2.resize: %.2fx the time (target <= 1.0x single-threaded); '
              'BilinearSampler route / AttSampler: %.1fx (target >= 3x)'
              % (base / result['cv2.resize'], result['BilinearSampler'] / base))


if __name__ == '__main__':
    main()
