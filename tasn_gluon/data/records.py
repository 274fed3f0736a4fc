"""Checks of a packed folder's record files before MXNet reads them.

MXNet's record iterator trusts its files: a ``.rec`` cut short makes it read past the end of
its buffers (a segfault), one whose bytes were overwritten is fed to the JPEG decoder as it is,
and a damaged val.rec aborts the process from a C++ thread. So the iterators call
:func:`check_split` first, which raises :class:`DatasetError` naming the file, the record and
the offset at fault.

Levels (``verify=``):

* ``'headers'``: the ``.idx`` parses; its record count matches dataset.json; every offset lies
  inside the ``.rec``; the record there starts with RecordIO's magic and a start flag, its
  parts (a record whose data holds the magic is split in parts) chain with the right flags,
  and the records tile the file exactly, each ending where the next begins and the last at the
  end of the file. Reads 8 bytes per record part, by seeking.
* ``'full'`` (the default): also the SHA-256 of the small files (``.idx``, ``.lst``,
  ``.crc32``) and the CRC32 of every record of this worker's shard, against what the packer
  stored in dataset.json and ``<split>.crc32``: reads the shard's records once. A folder packed
  without checksums passes at the ``'headers'`` level, with a warning that it cannot be
  verified.
* ``'none'``: nothing beyond dataset.json's record count (a damaged file may then crash).

A check that passed is remembered for the process (per file, size, modification time and
shard), so that an iterator made again for each epoch costs nothing after the first.

RecordIO (dmlc-core ``recordio.h``): each part is ``uint32 magic = 0xced7230a``, ``uint32
lrec`` (little-endian) with the continuation flag in its upper 3 bits (0 a whole record, 1 the
first part, 2 a middle part, 3 the last part) and the length in its lower 29 bits, then the
data padded to a multiple of 4 bytes. The reader joins the parts with the magic between them.
"""
import concurrent.futures
import logging
import mmap
import os
import struct
import zlib

import numpy as np

from ..errors import ConfigError, DatasetError, first_few
from ..files import file_digest
from .info import INFO_NAME

LOG = logging.getLogger(__name__)

MAGIC = 0xced7230a
MAGIC_BYTES = struct.pack('<I', MAGIC)
LENGTH_BITS = 29
LENGTH_MASK = (1 << LENGTH_BITS) - 1
HEADER_BYTES = 8
VERIFY_LEVELS = ('full', 'headers', 'none')
DEFAULT_VERIFY = 'full'
CRC_SUFFIX = '.crc32'
SPLIT_FILES = ('.rec', '.idx', '.lst', CRC_SUFFIX)
HEADER_READERS = 8                      # threads reading record headers of a large file

_passed = set()                         # (split, level, shard, file stamps) checked here
_warned_unverifiable = set()


def _pad4(n):
    return (n + 3) & ~3


def forget_checks():
    """Forgets the checks that passed in this process (the next check_split reads again)."""
    _passed.clear()


def check_verify_level(verify):
    if verify not in VERIFY_LEVELS:
        raise ConfigError('--verify-data must be one of %s, not %r'
                          % (', '.join(VERIFY_LEVELS), verify))
    return verify


# ---- the index ---------------------------------------------------------------------------------

def read_index(idx_path):
    """(keys, offsets) of an ``.idx`` file (one ``key<TAB>offset`` line per record) as int64
    arrays, in line order. DatasetError with the line number for a malformed line."""
    try:
        with open(idx_path, 'rb') as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise DatasetError('cannot read %s: %s' % (idx_path, exc.strerror or exc))
    keys, offsets = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 2:
                raise ValueError
            key, offset = int(fields[0]), int(fields[1])
        except ValueError:
            raise DatasetError('%s, line %d: expected "key<TAB>offset", got %r: the index is '
                               'damaged, pack the dataset again'
                               % (idx_path, number, line[:60].decode('latin-1')))
        keys.append(key)
        offsets.append(offset)
    return np.array(keys, np.int64), np.array(offsets, np.int64)


def _record_name(i, keys, offsets):
    return 'record %d (key %d, .idx line %d) at offset %d' % (i, keys[i], i + 1, offsets[i])


# ---- the headers -------------------------------------------------------------------------------

class RecordSpans(object):
    """Where each record's data lies: ``lengths`` (int64) of the one-part records, whose data
    starts at ``offsets + 8``, and ``parts`` {record index: [(data offset, length), ...]} for
    the records stored in several parts."""

    def __init__(self, keys, offsets, lengths, parts):
        self.keys, self.offsets, self.lengths, self.parts = keys, offsets, lengths, parts


def check_headers(rec_path, idx_path, keys, offsets):
    """Checks the RecordIO framing of every record listed in the index (see the module doc)
    and returns its RecordSpans."""
    n = len(offsets)
    size = os.path.getsize(rec_path)
    if n == 0:
        return RecordSpans(keys, offsets, np.zeros(0, np.int64), {})
    _check_index(rec_path, idx_path, keys, offsets, size)
    fd = os.open(rec_path, os.O_RDONLY)
    try:
        heads = np.frombuffer(_read_headers(fd, offsets), '<u4').reshape(n, 2)
        magic, lrec = heads[:, 0], heads[:, 1]
        flags, lengths = lrec >> LENGTH_BITS, (lrec & LENGTH_MASK).astype(np.int64)
        _check_starts(rec_path, keys, offsets, magic, flags)
        ends = offsets + HEADER_BYTES + ((lengths + 3) & ~3)
        parts = {}
        for i in np.flatnonzero(flags == 1).tolist():
            ends[i], parts[i] = _follow_parts(fd, rec_path, size, i, keys, offsets)
    finally:
        os.close(fd)
    _check_tiling(rec_path, keys, offsets, ends, size)
    return RecordSpans(keys, offsets, lengths, parts)


def _check_index(rec_path, idx_path, keys, offsets, size):
    """Keys unique, offsets inside the file, increasing from 0, on 4-byte boundaries."""
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) != len(keys):
        raise DatasetError('%s lists key(s) %s more than once: the index is damaged, pack the '
                           'dataset again' % (idx_path, first_few(unique[counts > 1].tolist())))
    outside = np.flatnonzero((offsets < 0) | (offsets + HEADER_BYTES > size))
    if len(outside):
        i = int(outside[0])
        raise DatasetError(
            '%s is shorter than its index %s says: %d of %d records (the first: %s) lie beyond '
            'its end at %d bytes; the file is truncated or the index belongs to another file: '
            'restore it or pack the dataset again'
            % (rec_path, idx_path, len(outside), len(keys), _record_name(i, keys, offsets),
               size))
    if offsets[0] != 0 or np.any(offsets[1:] <= offsets[:-1]):
        i = 0 if offsets[0] != 0 else int(np.flatnonzero(offsets[1:] <= offsets[:-1])[0]) + 1
        raise DatasetError('%s, line %d: offset %d %s; the index is damaged, pack the dataset '
                           'again' % (idx_path, i + 1, offsets[i],
                                      'is not 0' if i == 0 else 'does not increase'))
    misaligned = np.flatnonzero(offsets % 4)
    if len(misaligned):
        i = int(misaligned[0])
        raise DatasetError('%s: %s is not a RecordIO record boundary (a multiple of 4): the '
                           'index is damaged' % (rec_path, _record_name(i, keys, offsets)))


def _check_starts(rec_path, keys, offsets, magic, flags):
    """Every record starts with the magic and a start flag (0 or 1)."""
    bad = np.flatnonzero(magic != MAGIC)
    if len(bad):
        i = int(bad[0])
        raise DatasetError('%s: %s starts with 0x%08x, not RecordIO\'s magic 0x%08x (%d '
                           'record(s) like this): the file is damaged'
                           % (rec_path, _record_name(i, keys, offsets), magic[i], MAGIC,
                              len(bad)))
    bad = np.flatnonzero(flags > 1)
    if len(bad):
        i = int(bad[0])
        raise DatasetError('%s: %s begins with continuation flag %d (a record begins with 0 '
                           'or 1): the file or its index is damaged'
                           % (rec_path, _record_name(i, keys, offsets), flags[i]))


def _check_tiling(rec_path, keys, offsets, ends, size):
    """Each record ends where the next begins, the last at the end of the file."""
    bounds = np.append(offsets[1:], size)
    wrong = np.flatnonzero(ends != bounds)
    if not len(wrong):
        return
    i = int(wrong[0])
    where = _record_name(i, keys, offsets)
    if ends[i] > size:
        raise DatasetError('%s is truncated: %s needs %d bytes, up to offset %d, but the '
                           'file ends at %d; restore it or pack the dataset again'
                           % (rec_path, where, ends[i] - offsets[i], ends[i], size))
    if ends[i] > bounds[i]:
        raise DatasetError('%s: the length field of %s says it ends at %d, past the start '
                           'of the next record at %d: the file is damaged'
                           % (rec_path, where, ends[i], bounds[i]))
    raise DatasetError('%s: %d byte(s) that no record holds between the end of %s (at %d) '
                       'and %s: the file is damaged or its index is wrong'
                       % (rec_path, bounds[i] - ends[i], where, ends[i],
                          'the next record' if i + 1 < len(keys) else 'the end of the file'))


def _read_headers(fd, offsets):
    """The 8 header bytes at each offset, concatenated. One small read per record, not a pass
    over the file; from a cold cache each read waits for the disk, so several threads keep
    several reads in flight (pread releases the GIL): 2-3x faster cold, a little slower warm
    (bench/data.py --checksums)."""
    def read(part):
        return b''.join(os.pread(fd, HEADER_BYTES, off) for off in part.tolist())
    workers = min(HEADER_READERS, max(1, len(offsets) // 2048))
    if workers == 1:
        return read(offsets)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return b''.join(pool.map(read, np.array_split(offsets, workers)))


def _follow_parts(fd, rec_path, size, i, keys, offsets):
    """(end offset, [(data offset, length), ...]) of record ``i``, stored in parts."""
    pos, spans, expect = int(offsets[i]), [], (1,)
    while True:
        if pos + HEADER_BYTES > size:
            raise DatasetError('%s is truncated: %s continues past the end of the file (%d '
                               'bytes)' % (rec_path, _record_name(i, keys, offsets), size))
        magic, lrec = struct.unpack('<II', os.pread(fd, HEADER_BYTES, pos))
        flag, length = lrec >> LENGTH_BITS, lrec & LENGTH_MASK
        if magic != MAGIC or flag not in expect:
            raise DatasetError('%s: part %d of %s (at offset %d) has %s: the file is damaged'
                               % (rec_path, len(spans) + 1, _record_name(i, keys, offsets), pos,
                                  'no RecordIO magic' if magic != MAGIC else
                                  'continuation flag %d' % flag))
        spans.append((pos + HEADER_BYTES, length))
        pos += HEADER_BYTES + _pad4(length)
        if flag == 3:
            return pos, spans
        expect = (2, 3)


# ---- checksums ---------------------------------------------------------------------------------

def record_crcs(rec_path, spans, lo, hi):
    """CRC32 of records lo..hi-1 of the bytes MXNet reads for each (the parts of a split record
    joined with the magic, as the reader does), reading the file once in order."""
    if hi <= lo:
        return []
    out = []
    with open(rec_path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if hasattr(mm, 'madvise'):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        offsets, lengths = spans.offsets.tolist(), spans.lengths.tolist()
        with memoryview(mm) as view:
            for i in range(lo, hi):
                parts = spans.parts.get(i)
                if parts is None:
                    start = offsets[i] + HEADER_BYTES
                    with view[start:start + lengths[i]] as data:
                        out.append(zlib.crc32(data))
                else:
                    out.append(zlib.crc32(MAGIC_BYTES.join(bytes(view[o:o + n])
                                                           for o, n in parts)))
    return out


def write_crcs(path, crcs):
    """The per-record CRC32 side file: one little-endian uint32 per record, in index order."""
    np.asarray(crcs, '<u4').tofile(path)


def read_crcs(path, count):
    data = np.fromfile(path, '<u4')
    if len(data) != count:
        raise DatasetError('%s holds %d record checksums for %d records: it is damaged, pack '
                           'the dataset again' % (path, len(data), count))
    return data


def _check_crcs(rec_path, crc_path, spans, lo, hi):
    stored = read_crcs(crc_path, len(spans.offsets)).tolist()[lo:hi]
    bad = [lo + j for j, (got, want) in enumerate(zip(record_crcs(rec_path, spans, lo, hi),
                                                       stored)) if got != want]
    if bad:
        raise DatasetError('%s: %s fails its CRC32 check (%d of the %d records checked: %s): '
                           'its bytes were changed after packing; restore the file or pack the '
                           'dataset again' % (rec_path, _record_name(bad[0], spans.keys,
                                                                     spans.offsets),
                                              len(bad), hi - lo, first_few(bad)))


# ---- one split -----------------------------------------------------------------------------------

def _stamp(path):
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)


def check_split(data_dir, split, info, verify=DEFAULT_VERIFY, num_parts=1, part_index=0):
    """Checks ``data_dir/<split>.rec`` and ``.idx`` (and, with ``verify='full'``, the records of
    shard ``part_index`` of ``num_parts`` against their checksums) before an iterator reads
    them; ``info`` is dataset.json's content. Returns the level actually verified:
    ``'full'``, ``'headers'`` (also when ``'full'`` was asked of a folder packed without
    checksums) or ``'none'``. Raises DatasetError naming the file, record and offset at fault.
    """
    check_verify_level(verify)
    rec = os.path.join(data_dir, split + '.rec')
    idx = os.path.join(data_dir, split + '.idx')
    for p in (rec, idx):
        if not os.path.isfile(p):
            raise DatasetError('%s not found: pack the dataset first (tools/im2rec.py)' % p)
    expected = int(info['num_' + split])
    if verify == 'none':
        count = _count_lines(idx)
        _check_count(idx, count, split, expected)
        return 'none'
    checksums = (info.get('checksums') or {}).get('files')
    level = verify if checksums else 'headers'
    lo, hi = shard_range(expected, num_parts, part_index)
    paths = [os.path.join(data_dir, split + suffix) for suffix in SPLIT_FILES]
    key = (split, level, lo, hi) + tuple(_stamp(p) for p in paths if os.path.isfile(p))
    if key in _passed:
        return level
    if level == 'full':
        _check_small_files(data_dir, split, checksums)
    keys, offsets = read_index(idx)
    _check_count(idx, len(offsets), split, expected)
    spans = check_headers(rec, idx, keys, offsets)
    if level == 'full':
        _check_crcs(rec, paths[3], spans, lo, hi)
    elif verify == 'full' and data_dir not in _warned_unverifiable:
        _warned_unverifiable.add(data_dir)
        LOG.warning('%s was packed without checksums: its records are checked for structure '
                    'only and cannot be verified (pack it again with tools/im2rec.py to store '
                    'them)', data_dir)
    _passed.add(key)
    return level


def shard_range(num_images, num_parts, part_index):
    """Records [lo, hi) of shard ``part_index`` of ``num_parts``: ImageRecordIter (via dmlc's
    indexed RecordIO splitter) gives each part ceil(n / parts) consecutive records, the last
    ones fewer."""
    step = -(-num_images // num_parts)
    return min(step * part_index, num_images), min(step * (part_index + 1), num_images)


def _count_lines(idx):
    with open(idx, 'rb') as f:
        return sum(1 for line in f if line.strip())


def _check_count(idx, count, split, expected):
    if count != expected:
        raise DatasetError('%s lists %d records but dataset.json says num_%s = %d: the folder '
                           'is inconsistent, pack it again' % (idx, count, split, expected))


def _check_small_files(data_dir, split, checksums):
    """Size and SHA-256 of the split's .idx, .lst and .crc32 (small: hashed in full)."""
    for suffix in SPLIT_FILES[1:]:
        name = split + suffix
        want = checksums.get(name)
        path = os.path.join(data_dir, name)
        if want is None:
            raise DatasetError('%s lists no checksum of %s: the file is damaged, pack the '
                               'dataset again' % (os.path.join(data_dir, INFO_NAME), name))
        if not os.path.isfile(path):
            raise DatasetError('%s not found (dataset.json lists its checksum): restore it or '
                               'pack the dataset again' % path)
        size, digest = file_digest(path)
        if size != want['bytes'] or digest != want['sha256']:
            raise DatasetError('%s does not match its SHA-256 in dataset.json (%s): the file '
                               'was changed after packing; restore it or pack the dataset again'
                               % (path, 'size %d, stored %d' % (size, want['bytes'])
                                  if size != want['bytes'] else 'same size, other content'))


def checksum_entry(path):
    """{'bytes': size, 'sha256': hex} of a file (an entry of dataset.json's
    ``checksums.files``)."""
    size, digest = file_digest(path)
    return {'bytes': size, 'sha256': digest}
