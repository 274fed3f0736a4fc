#!/usr/bin/env python
"""Data pipeline benchmark: throughput of the training pipeline (full TASN augmentation at 512)
against plain decoding of the same records, on all cores, and what --skip-bad costs at pack
time. Prints ratios measured side by side in one run. Also the CPU part of the pipeline when
the colour augmentation runs on the training device (get_train_iter(color_on_device=True)).
With --checksums: what checking and verifying the record files costs (records.check_split,
whole-file and per-record SHA-256 and CRC32), warm and cold page cache, on a CUB-sized set.

    python bench/data.py                       # a generated 512-px set (about 1 minute)
    python bench/data.py --data-dir /data/cub_rec --batches 50
    python bench/data.py --checksums           # packs 6000 images at 512 px in /tmp first
    python bench/data.py --checksums --data-dir /data/cub_rec
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import cv2
import numpy as np


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


def evict(path):
    """Drops a file's pages from the page cache (clean pages; no privileges needed), so that
    the next read comes from the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def time_runs(fn, runs, cold_files=()):
    """Wall-clock seconds of ``runs`` calls of fn(), each after evicting ``cold_files``."""
    out = []
    for _ in range(runs):
        for path in cold_files:
            evict(path)
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def make_checksum_set(tmp, images, distinct, threads):
    """A CUB-sized packed set: ``distinct`` rendered 500 x 375 photos, copied to ``images``
    source files, packed at 512 px, quality 95. Returns (folder, packing seconds)."""
    src = os.path.join(tmp, 'src')
    make_source_images(src, distinct)
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(src) for f in fs)
    for i in range(distinct, images):
        shutil.copyfile(files[i % distinct], os.path.join(
            os.path.dirname(files[i % distinct]), 'copy_%05d.jpg' % i))
    from tasn_gluon.data import prepare_dataset
    out = os.path.join(tmp, 'packed')
    start = time.perf_counter()
    prepare_dataset('folders', src, out, resize=512, quality=95, num_threads=threads,
                    val_fraction=0.05)
    return out, time.perf_counter() - start


def checksum_costs(data_dir, runs):
    """Seconds (one list of runs each) of the checks and hashes of train.rec, warm and cold."""
    import hashlib
    import zlib
    from tasn_gluon.data import read_dataset_info
    from tasn_gluon.data import records
    from tasn_gluon.files import file_digest
    info = read_dataset_info(data_dir)
    rec = os.path.join(data_dir, 'train.rec')
    idx = os.path.join(data_dir, 'train.idx')
    keys, offsets = records.read_index(idx)
    spans = records.check_headers(rec, idx, keys, offsets)
    n = len(offsets)

    def check(level):
        records.forget_checks()
        records.check_split(data_dir, 'train', info, level)

    def whole(h):
        with open(rec, 'rb') as f:
            for block in iter(lambda: f.read(1 << 22), b''):
                h(block)

    def crc_file():
        crc = [0]
        whole(lambda b: crc.__setitem__(0, zlib.crc32(b, crc[0])))

    def sha_records():
        with open(rec, 'rb') as f:
            for off, length in zip(offsets.tolist(), spans.lengths.tolist()):
                f.seek(off + records.HEADER_BYTES)
                hashlib.sha256(f.read(length)).digest()

    tests = [('check_split headers', lambda: check('headers')),
             ('check_split full (CRC32 per record)', lambda: check('full')),
             ('CRC32 per record', lambda: records.record_crcs(rec, spans, 0, n)),
             ('SHA-256 per record', sha_records),
             ('CRC32 whole file', crc_file),
             ('SHA-256 whole file', lambda: file_digest(rec))]
    cold = [rec, idx, os.path.join(data_dir, 'train.crc32'), os.path.join(data_dir,
                                                                           'train.lst')]
    results = []
    for name, fn in tests:
        fn()                                                        # warm the page cache
        results.append((name, time_runs(fn, runs), time_runs(fn, runs, cold)))
    return n, os.path.getsize(rec), results


def main_checksums(args):
    from tasn_gluon.data.packing import default_num_threads
    from tasn_gluon.data import records
    from tasn_gluon.engine.precision import cpu_model
    threads = args.threads or default_num_threads()
    tmp = tempfile.mkdtemp(prefix='tasn_bench_checksums_')
    try:
        data_dir, pack_s = args.data_dir, None
        if data_dir is None:
            data_dir, pack_s = make_checksum_set(tmp, args.checksum_images, 300, threads)
        n, size, results = checksum_costs(data_dir, args.runs)
        names = sorted(split + suffix for split in ('train', 'val')
                       for suffix in records.SPLIT_FILES)
        hash_all = time_runs(lambda: [records.checksum_entry(os.path.join(data_dir, n))
                                      for n in names], args.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = cpu_model()
    print('record checks and checksums of train.rec: %d records, %.1f MB (%.1f KB per record); '
          '%s; %d runs each (median [min, max] seconds)' % (n, size / 1e6, size / n / 1e3, cpu,
                                                             args.runs))

    def fmt(ts):
        ts = sorted(ts)
        return '%7.3f [%.3f, %.3f]' % (ts[len(ts) // 2], ts[0], ts[-1])
    inat = (579184, 95986)
    # Reading headers scales with the number of records, hashing with the bytes: the iNat
    # columns assume records of this set's mean size (real photos may be larger).
    print('  %-38s %-24s %-24s %-11s %s' % ('', 'warm cache', 'cold cache', 'MB/s w/c',
                                            'iNat train / val, warm -> cold (s)'))
    for name, warm, cold in results:
        w, c = sorted(warm)[len(warm) // 2], sorted(cold)[len(cold) // 2]
        print('  %-38s %-24s %-24s %5.0f/%-5.0f %6.0f / %4.0f -> %6.0f / %4.0f'
              % (name, fmt(warm), fmt(cold), size / 1e6 / w, size / 1e6 / c,
                 w / n * inat[0], w / n * inat[1], c / n * inat[0], c / n * inat[1]))
    print('  (cold: the files evicted from the page cache with posix_fadvise before each run; '
          'storage below may still cache)')
    print('  packing-time SHA-256 of every file of the folder (warm): %s s%s'
          % (fmt(hash_all), '' if pack_s is None else
             ', packing itself took %.0f s (%d threads)' % (pack_s, threads)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--data-dir', default=None, help='a packed dataset (default: generate one)')
    p.add_argument('--images', type=int, default=240, help='images to generate')
    p.add_argument('--checksums', action='store_true',
                   help='measure the record checks and checksums instead of the pipeline')
    p.add_argument('--checksum-images', type=int, default=6000,
                   help='with --checksums: images in the generated set (default: %(default)s)')
    p.add_argument('--runs', type=int, default=5,
                   help='with --checksums: runs of each measurement (default: %(default)s)')
    p.add_argument('--input-size', type=int, default=512)
    p.add_argument('--batch-size', type=int, default=16)
    p.add_argument('--batches', type=int, default=30)
    p.add_argument('--threads', type=int, default=None, help='default: all cores')
    args = p.parse_args()
    if args.checksums:
        return main_checksums(args)

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
