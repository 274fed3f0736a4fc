#!/usr/bin/env python
"""Data pipeline benchmark: throughput of the training pipeline (full TASN augmentation at 512)
against plain decoding of the same records, on all cores, and what --skip-bad costs at pack
time. Prints ratios measured side by side in one run. Also the CPU part of the pipeline when
the colour augmentation runs on the training device (get_train_iter(color_on_device=True)).

    python bench/data.py                       # a generated 512-px set (about 1 minute)
    python bench/data.py --data-dir /data/cub_rec --batches 50
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def make_source_images(folder, count, seed=0):
    """CUB-like JPEG photos (500 x 375, quality 90) of the synthetic scene, in 4 class folders."""
    from tasn_gluon.data.synthetic import class_designs, render_image
    designs = class_designs(4)
    for i in range(count):
        rng = np.random.RandomState([seed, i])
        img, _ = render_image(designs[i % 4], rng, 500)
        img = img[62:437]                                   # 500 x 375 like a CUB photo
        path = os.path.join(folder, 'class_%d' % (i % 4), '%05d.jpg' % i)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 90])


def time_pack(src, out, skip_bad, threads):
    """(images/s wall clock, images per CPU-second) of packing ``src`` at 512 px, quality 95."""
    from tasn_gluon.data import prepare_dataset
    start, cpu = time.perf_counter(), cpu_seconds()
    info = prepare_dataset('folders', src, out, resize=512, quality=95, num_threads=threads,
                           skip_bad=skip_bad, val_fraction=0.25)
    n = info['num_train'] + info['num_val']
    return n / (time.perf_counter() - start), n / (cpu_seconds() - cpu)


def time_check_only(src):
    """Images per CPU-second of the integrity check alone (read, JPEG end marker, full
    decode), one thread."""
    from tasn_gluon.data.images import decode_image
    paths = [os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs]
    cpu = cpu_seconds()
    for p in paths:
        with open(p, 'rb') as f:
            decode_image(f.read())
    return len(paths) / (cpu_seconds() - cpu)


def cpu_seconds():
    """CPU time of this process, all threads: on a shared machine images per CPU-second is the
    per-core throughput, whatever the other processes take."""
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_iter(it, batches, warmup=2):
    """(images/s wall clock, images per CPU-second) over ``batches`` batches after ``warmup``,
    cycling epochs as needed."""
    def batches_forever():
        while True:
            for b in it:
                yield b
            it.reset()
    gen = batches_forever()
    for _ in range(warmup):
        next(gen).data[0].wait_to_read()
    start, cpu = time.perf_counter(), cpu_seconds()
    n = 0
    for _ in range(batches):
        b = next(gen)
        b.data[0].wait_to_read()
        n += b.data[0].shape[0] - b.pad
    return n / (time.perf_counter() - start), n / (cpu_seconds() - cpu)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data-dir', default=None, help='a packed dataset (default: generate one)')
    p.add_argument('--images', type=int, default=240, help='images to generate')
    p.add_argument('--input-size', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--batches', type=int, default=30)
    p.add_argument('--threads', type=int, default=None, help='default: all cores')
    args = p.parse_args()

    from tasn_gluon.data import get_train_iter, get_val_iter
    from tasn_gluon.data.packing import default_num_threads
    threads = args.threads or default_num_threads()
    results = {'threads': threads, 'input_size': args.input_size}
    tmp = tempfile.mkdtemp(prefix='tasn_bench_data_')
    try:
        data_dir = args.data_dir
        if data_dir is None:
            src = os.path.join(tmp, 'src')
            make_source_images(src, args.images)
            data_dir = os.path.join(tmp, 'packed')
            time_pack(src, os.path.join(tmp, 'warm'), False, threads)   # page cache, warm-up
            results['pack_img_s'], results['pack_img_cpu_s'] = time_pack(
                src, data_dir, False, threads)
            results['pack_skip_bad_img_s'], results['pack_skip_bad_img_cpu_s'] = time_pack(
                src, os.path.join(tmp, 'packed2'), True, threads)
            results['check_only_img_cpu_s'] = time_check_only(src)
        size = args.input_size
        plain = get_val_iter(data_dir, args.batch_size, input_size=size, num_threads=threads)
        results['plain_decode_img_s'], results['plain_decode_img_cpu_s'] = time_iter(
            plain, args.batches)
        del plain
        full = get_train_iter(data_dir, args.batch_size, input_size=size, num_threads=threads)
        results['full_pipeline_img_s'], results['full_pipeline_img_cpu_s'] = time_iter(
            full, args.batches)
        del full
        geo = get_train_iter(data_dir, args.batch_size, input_size=size, num_threads=threads,
                             color_on_device=True)
        results['geometric_only_img_s'], results['geometric_only_img_cpu_s'] = time_iter(
            geo, args.batches)
        del geo
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    r = results
    print('data pipeline benchmark, %d thread(s), input %d px' % (threads, size))
    if 'pack_img_s' in r:
        print('  (per CPU-second = per busy core; wall-clock numbers suffer when the cores are '
              'shared)')
        print('  pack (resize 512, q95)          %8.1f img/s   %8.1f img per CPU-second'
              % (r['pack_img_s'], r['pack_img_cpu_s']))
        print('  pack with --skip-bad            %8.1f img/s   %8.1f img per CPU-second '
              '(ratio %.3f)' % (r['pack_skip_bad_img_s'], r['pack_skip_bad_img_cpu_s'],
                                r['pack_skip_bad_img_cpu_s'] / r['pack_img_cpu_s']))
        print('  integrity check alone                          %8.1f img per CPU-second '
              '(%.0f%% of the CPU time of packing; done with or without --skip-bad)'
              % (r['check_only_img_cpu_s'], 100.0 * r['pack_img_cpu_s']
                 / r['check_only_img_cpu_s']))
    print('  plain decode + centre crop      %8.1f img/s   %8.1f img per CPU-second'
          % (r['plain_decode_img_s'], r['plain_decode_img_cpu_s']))
    print('  full TASN augmentation on the CPU (CPU training)    %8.1f img/s   %8.1f img per '
          'CPU-second' % (r['full_pipeline_img_s'], r['full_pipeline_img_cpu_s']))
    print('  CPU part with colour on the GPU (GPU training)      %8.1f img/s   %8.1f img per '
          'CPU-second (target >= 100)' % (r['geometric_only_img_s'],
                                          r['geometric_only_img_cpu_s']))
    print('  full / plain                    %8.3f         %8.3f'
          % (r['full_pipeline_img_s'] / r['plain_decode_img_s'],
             r['full_pipeline_img_cpu_s'] / r['plain_decode_img_cpu_s']))
    print('  load average during the run     %s' % ' '.join('%.1f' % v for v in os.getloadavg()))
    print(json.dumps(r, sort_keys=True))


if __name__ == '__main__':
    main()
