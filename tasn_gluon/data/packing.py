"""Packing a DatasetSplits into the folder the trainer reads: train/val .lst, .rec, .idx,
.crc32 and dataset.json. Images are decoded, checked, resized and re-encoded by N threads
(OpenCV releases the GIL) and written in list order by one writer through MXNet's
MXIndexedRecordIO. Every file is written under a temporary name and all appear together only
when both splits succeeded (``files.StagedFiles``). dataset.json, written last, holds the size
and SHA-256 of every file and ``<split>.crc32`` the CRC32 of every record, which the iterators
verify (records.check_split)."""
import collections
import concurrent.futures
import logging
import os
import zlib

from ..errors import DatasetError, first_few
from ..files import StagedFiles, atomic_write_text
from ..logs import progress_bar
from .images import BadImage, load_for_record
from .info import FORMAT, INFO_NAME, write_dataset_info
from .records import CRC_SUFFIX, checksum_entry, write_crcs
from .splits import write_lst

LOG = logging.getLogger(__name__)
BAD_IMAGES = 'bad_images.txt'


def default_num_threads():
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
               else (os.cpu_count() or 1))


def _ordered_results(func, items, num_threads):
    """func(item) for each item, yielded in input order, at most 4 * num_threads in flight."""
    window = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        it = iter(items)
        for item in it:
            window.append(pool.submit(func, item))
            if len(window) >= 4 * num_threads:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def pack_records(entries, root, rec_path, idx_path, resize=512, quality=95, num_threads=None,
                 skip_bad=False, progress=False, desc=None):
    """Writes ``entries`` (list of Entry under ``root``) to an indexed RecordIO pair.

    Record i holds header (flag 0, label, id i) and the JPEG bytes; i counts the written
    records, so ids are contiguous even when bad images are skipped.

    Returns (kept entries in record order, list of (path, reason) of skipped images, CRC32
    of each kept record's bytes). A bad image raises DatasetError unless ``skip_bad``.
    """
    import mxnet as mx  # late: packing list files alone should not need MXNet loaded
    num_threads = num_threads or default_num_threads()

    def work(entry):
        try:
            return entry, load_for_record(os.path.join(root, entry.path), resize, quality), None
        except BadImage as exc:
            return entry, None, str(exc)

    kept, bad, crcs = [], [], []
    bar = progress_bar(progress, len(entries), desc, 'img')
    writer = mx.recordio.MXIndexedRecordIO(idx_path, rec_path, 'w')
    try:
        for entry, data, reason in _ordered_results(work, entries, num_threads):
            if bar is not None:
                bar.update(1)
            if reason is not None:
                if not skip_bad:
                    raise DatasetError('bad image %s: %s (use --skip-bad / skip_bad=True to '
                                       'skip such images and list them in a report)'
                                       % (os.path.join(root, entry.path), reason))
                bad.append((entry.path, reason))
                continue
            header = mx.recordio.IRHeader(0, float(entry.label), len(kept), 0)
            record = mx.recordio.pack(header, data)
            writer.write_idx(len(kept), record)
            crcs.append(zlib.crc32(record))
            kept.append(entry)
    finally:
        writer.close()
        if bar is not None:
            bar.close()
    return kept, bad, crcs


def check_output_folder(out_dir):
    """DatasetError in one line, before anything is written, when ``out_dir`` cannot be the
    output folder: it is a file, a file is in the way of its path, or the folder it would be
    made in is read-only. (Places where only trying tells, such as /proc, fail in
    make_output_folder.)"""
    if os.path.lexists(out_dir) and not os.path.isdir(out_dir):
        raise DatasetError('output folder %s is an existing file, not a folder' % out_dir)
    parent = os.path.abspath(out_dir)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise DatasetError('cannot create output folder %s: %s is a file, not a folder'
                           % (out_dir, parent))
    if os.statvfs(parent).f_flag & os.ST_RDONLY:
        raise DatasetError('cannot write output folder %s: %s is on a read-only file system'
                           % (out_dir, parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DatasetError('cannot write output folder %s: no permission to write in %s'
                           % (out_dir, parent))


def make_output_folder(out_dir):
    """Creates ``out_dir`` and its missing parents; returns the folders it created (deepest
    last), so that a failed run can remove them again. DatasetError in one line when that is
    impossible."""
    check_output_folder(out_dir)
    created, path = [], os.path.abspath(out_dir)
    while not os.path.lexists(path):
        created.insert(0, path)
        path = os.path.dirname(path)
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        _remove_folders(created)
        raise DatasetError('cannot create output folder %s: %s' % (out_dir, exc.strerror or exc))
    # An existing folder may still refuse files (root ignores permission bits, not read-only
    # mounts or virtual file systems): try one.
    probe = os.path.join(out_dir, '.write-test.tmp-%d' % os.getpid())
    try:
        open(probe, 'wb').close()
        os.remove(probe)
    except OSError as exc:
        _remove_folders(created)
        raise DatasetError('cannot write in output folder %s: %s' % (out_dir, exc.strerror or exc))
    return created


def _remove_folders(folders):
    """Removes the folders a failed run created, deepest first, if they are still empty."""
    for d in reversed(folders):
        try:
            os.rmdir(d)
        except OSError:
            return


def _class_counts(entries, num_classes):
    counts = [0] * num_classes
    for e in entries:
        counts[e.label] += 1
    return counts


def pack_dataset(splits, out_dir, resize=512, quality=95, num_threads=None, skip_bad=False,
                 progress=None, layout=None, extra_info=None):
    """Validates ``splits`` (a DatasetSplits) and writes the packed dataset folder ``out_dir``:
    ``train.lst``, ``val.lst``, ``train.rec/.idx``, ``val.rec/.idx``, ``train.crc32``,
    ``val.crc32``, dataset.json and, when images were skipped, ``bad_images.txt``. Returns the
    dataset.json contents. A failed run leaves no file of its own behind (and removes the
    folders it created)."""
    if not 1 <= int(quality) <= 100:
        raise DatasetError('JPEG quality must be in 1..100, got %r' % (quality,))
    if int(resize) < 0:
        raise DatasetError('resize must be >= 0 (0 keeps the original size), got %r' % (resize,))
    splits.validate(check_files=True)
    created = make_output_folder(out_dir)
    kept, bad = {}, {}
    try:
        # nothing of a previous dataset stays under the final names: its report and info go
        with StagedFiles(out_dir, replaced=(BAD_IMAGES, INFO_NAME)) as staged:
            for which in ('train', 'val'):
                kept[which], bad[which] = _pack_split(splits, which, staged, resize, quality,
                                                      num_threads, skip_bad, progress)
            # hashed under the temporary names, right after writing (still in the page cache)
            checksums = {n: checksum_entry(staged.path(n)) for n in staged.names()}
    except BaseException:
        _remove_folders(created)
        raise
    report = _bad_images_report(splits, out_dir, bad)
    info = {
        'format': FORMAT,
        'version': 2,
        'name': splits.name,
        'layout': layout,
        'num_classes': splits.num_classes,
        'class_names': splits.class_names,
        'num_train': len(kept['train']),
        'num_val': len(kept['val']),
        'class_counts': {w: _class_counts(kept[w], splits.num_classes) for w in kept},
        'packing': {'resize': int(resize), 'quality': int(quality), 'encoding': 'jpeg',
                    'skip_bad': bool(skip_bad),
                    'interpolation': 'area when shrinking, linear when enlarging'},
        'skipped': {w: len(bad[w]) for w in bad},
        'bad_images_report': report,
        'source': {'train_root': splits.train_root, 'val_root': splits.val_root},
        # version 2: sizes and SHA-256 of the files, and per-record CRC32 in <split>.crc32
        'checksums': {
            'files': checksums,
            'records': {w: {'file': w + CRC_SUFFIX, 'algorithm': 'crc32 (zlib) of each record '
                            'as MXNet reads it, little-endian uint32 in .idx order'}
                        for w in ('train', 'val')},
        },
    }
    info.update(extra_info or {})
    write_dataset_info(out_dir, info)
    return info


def _pack_split(splits, which, staged, resize, quality, num_threads, skip_bad, progress):
    """One split into its staged .rec, .idx, .lst and .crc32; returns (kept entries, bad)."""
    entries, root = splits.split(which)
    kept, bad, crcs = pack_records(
        entries, root, staged.path(which + '.rec'), staged.path(which + '.idx'), resize=resize,
        quality=quality, num_threads=num_threads, skip_bad=skip_bad, progress=progress,
        desc='%s %s' % (splits.name, which))
    if not kept:
        raise DatasetError('%s: every image of the %s split was bad' % (splits.name, which))
    write_lst(staged.path(which + '.lst'), kept)
    write_crcs(staged.path(which + CRC_SUFFIX), crcs)
    return kept, bad


def _bad_images_report(splits, out_dir, bad):
    """Writes bad_images.txt when images were skipped; returns its name or None."""
    if not (bad['train'] or bad['val']):
        return None
    lines = ['%s\t%s\t%s\n' % (which, os.path.join(splits.split(which)[1], path), reason)
             for which in ('train', 'val') for path, reason in bad[which]]
    atomic_write_text(os.path.join(out_dir, BAD_IMAGES), ''.join(lines))
    LOG.warning('%s: skipped %d train and %d val bad image(s), listed in %s: %s',
                splits.name, len(bad['train']), len(bad['val']),
                os.path.join(out_dir, BAD_IMAGES), first_few([p for p, _ in bad['train'] +
                                                              bad['val']]))
    return BAD_IMAGES
