"""Record files are checked before MXNet reads them: every damage is a DatasetError naming the
file, the record and the offset, never a crash; checksums catch overwritten bytes."""
import json
import logging
import os
import shutil
import subprocess
import sys
import zlib

import cv2
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.data import (DatasetError, check_split, get_train_iter, get_val_iter,
                             prepare_dataset, read_dataset_info)
from tasn_gluon.data import records
from tasn_gluon.errors import ConfigError

from conftest import raw_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAGIC = (0xced7230a).to_bytes(4, 'little')


@pytest.fixture(scope='module')
def packed(tmp_path_factory):
    """A packed folders set: 2 classes x 12 train and 3 val noisy 64 px JPEGs (~6 KB each)."""
    base = tmp_path_factory.mktemp('records')
    rng = np.random.RandomState(0)
    for split, n in (('train', 12), ('val', 3)):
        for c in range(2):
            for i in range(n):
                path = str(base / split / ('c%d' % c) / ('%02d.png' % i))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                cv2.imwrite(path, rng.randint(0, 256, (64, 64, 3)).astype(np.uint8))
    out = str(base / 'packed')
    prepare_dataset('folders', str(base / 'train'), out, resize=0, quality=95, num_threads=1,
                    val_root=str(base / 'val'))
    return out


@pytest.fixture
def data(packed, tmp_path):
    """A fresh copy of the packed set for one test to damage."""
    out = str(tmp_path / 'set')
    shutil.copytree(packed, out)
    return out


def offsets(data_dir, split):
    return records.read_index(os.path.join(data_dir, split + '.idx'))[1]


def truncate(path, size):
    with open(path, 'r+b') as f:
        f.truncate(size)


def overwrite(path, start, count, seed=0):
    junk = np.random.RandomState(seed).randint(0, 256, count).astype(np.uint8).tobytes()
    with open(path, 'r+b') as f:
        f.seek(start)
        f.write(junk)


def make(split, data_dir, verify='full', **kw):
    fn = get_train_iter if split == 'train' else get_val_iter
    return fn(data_dir, batch_size=4, input_size=32, num_threads=1, verify=verify, **kw)


def check(split, data_dir, verify):
    """The check alone: an iterator over undetected damage may crash in MXNet's prefetching
    threads (a SIGFPE decoding junk, seen here), so the tests make none over such files."""
    return check_split(data_dir, split, read_dataset_info(data_dir), verify)


# ---- the good set -----------------------------------------------------------------------------

def test_good_set_is_verified(packed):
    info = read_dataset_info(packed)
    assert set(info['checksums']['files']) == {s + e for s in ('train', 'val')
                                               for e in ('.rec', '.idx', '.lst', '.crc32')}
    for split in ('train', 'val'):
        it = make(split, packed)
        assert it.verified == 'full'
        assert sum(b.data[0].shape[0] - b.pad for b in it) == (24 if split == 'train' else 6)
        assert make(split, packed, verify='headers').verified == 'headers'
        assert make(split, packed, verify='none').verified == 'none'
    with pytest.raises(ConfigError, match="--verify-data must be one of full, headers, none"):
        make('train', packed, verify='yes')


def test_record_crcs_are_of_what_mxnet_reads(packed):
    """The stored CRC32 of record i is zlib.crc32 of MXIndexedRecordIO.read_idx(i)."""
    for split in ('train', 'val'):
        want = [zlib.crc32(r) for r in raw_records(packed, split)]
        stored = np.fromfile(os.path.join(packed, split + '.crc32'), '<u4').tolist()
        assert stored == want


# ---- damage, in process ------------------------------------------------------------------------

@pytest.mark.parametrize('split,cut,message', [
    ('train', 'half', 'train.rec is shorter than its index .*train.idx says: 12 of 24 records '
                      r'\(the first: record 12 \(key 12, .idx line 13\) at offset \d+\) lie '
                      'beyond its end'),
    ('train', 'unaligned', r'train.rec is shorter than its index .*: 11 of 24 records \(the '
                           r'first: record 13 '),
    ('train', 'last-3', 'train.rec is truncated: record 23'),
    ('val', 'half', 'val.rec is shorter than its index'),
    ('val', 'empty', 'val.rec is shorter than its index .*: 6 of 6 records'),
])
def test_truncated_files(data, split, cut, message):
    rec = os.path.join(data, split + '.rec')
    offs = offsets(data, split)
    size = os.path.getsize(rec)
    at = {'half': int(offs[len(offs) // 2]), 'unaligned': int(offs[len(offs) // 2]) + 101,
          'last-3': size - 3, 'empty': 0}[cut]
    truncate(rec, at)
    for verify in ('full', 'headers'):
        with pytest.raises(DatasetError, match=message):
            make(split, data, verify=verify)


def test_4000_bytes_overwritten_in_the_middle(data):
    """Where they cover a record header, the framing check names it; inside records' data only
    the CRC32s can see the damage."""
    rec = os.path.join(data, 'train.rec')
    offs = offsets(data, 'train')
    start = os.path.getsize(rec) // 2 - 2000
    overwrite(rec, start, 4000)
    first = int(np.searchsorted(offs, start, 'right') - 1)
    hits_header = bool(((offs > start) & (offs < start + 4000)).any())
    with pytest.raises(DatasetError, match=r'train.rec: record %d \(key %d, .idx line %d\) at '
                       r'offset %d (starts with|fails its CRC32)'
                       % ((first + 1, first + 1, first + 2, offs[first + 1]) if hits_header else
                          (first, first, first + 1, offs[first]))):
        make('train', data)


def test_overwrite_inside_one_record(data):
    rec = os.path.join(data, 'train.rec')
    offs = offsets(data, 'train')
    start = int(offs[5]) + 64
    assert offs[6] - offs[5] > 4000 + 64
    overwrite(rec, start, 4000)
    assert check('train', data, 'headers') == 'headers'                    # framing intact
    with pytest.raises(DatasetError, match=r'train.rec: record 5 .* fails its CRC32 check '
                                           r'\(1 of the 24 records checked: 5\)'):
        make('train', data)


def test_damaged_headers(data):
    rec = os.path.join(data, 'train.rec')
    offs = offsets(data, 'train')
    overwrite(rec, int(offs[7]), 4, seed=1)                     # the magic of record 7
    with pytest.raises(DatasetError, match=r"train.rec: record 7 \(key 7, .idx line 8\) at "
                                           r"offset %d starts with 0x[0-9a-f]{8}, not "
                                           r"RecordIO's magic 0xced7230a" % offs[7]):
        make('train', data, verify='headers')


def test_damaged_length_field(data):
    rec = os.path.join(data, 'train.rec')
    offs = offsets(data, 'train')
    with open(rec, 'r+b') as f:
        f.seek(int(offs[3]) + 4)
        length = int.from_bytes(f.read(4), 'little')
        f.seek(int(offs[3]) + 4)
        f.write((length + 40).to_bytes(4, 'little'))
    with pytest.raises(DatasetError, match=r'train.rec: the length field of record 3 .* past '
                                           r'the start of the next record at %d' % offs[4]):
        make('train', data, verify='headers')
    with open(rec, 'r+b') as f:
        f.seek(int(offs[3]) + 4)
        f.write((length - 40).to_bytes(4, 'little'))
    with pytest.raises(DatasetError, match=r'train.rec: 40 byte\(s\) that no record holds '
                                           r'between the end of record 3'):
        make('train', data, verify='headers')
    with open(rec, 'r+b') as f:
        f.seek(int(offs[3]) + 4)
        f.write((length | 2 << 29).to_bytes(4, 'little'))
    with pytest.raises(DatasetError, match=r'record 3 .* begins with continuation flag 2'):
        make('train', data, verify='headers')


def test_extra_bytes_and_bad_index(data):
    rec, idx = os.path.join(data, 'val.rec'), os.path.join(data, 'val.idx')
    with open(rec, 'ab') as f:
        f.write(b'\0' * 16)
    with pytest.raises(DatasetError, match=r'val.rec: 16 byte\(s\) that no record holds .* '
                                           'the end of the file'):
        make('val', data, verify='headers')
    truncate(rec, os.path.getsize(rec) - 16)
    lines = open(idx).read().splitlines()
    good = list(lines)
    lines[2] = '2\tabc'
    open(idx, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match=r'val.idx, line 3: expected "key<TAB>offset", got '
                                           "'2\\\\tabc'"):
        make('val', data, verify='headers')
    lines = list(good)
    lines[2] = '2\t%d' % (10 ** 9)
    open(idx, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match=r'1 of 6 records \(the first: record 2 .* offset '
                                           '1000000000'):
        make('val', data, verify='headers')
    lines = list(good)
    lines[2], lines[3] = lines[3], lines[2]
    open(idx, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match=r'val.idx, line 4: offset \d+ does not increase'):
        make('val', data, verify='headers')
    lines = list(good)
    lines[3] = '2\t' + lines[3].split('\t')[1]
    open(idx, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match=r'val.idx lists key\(s\) 2 more than once'):
        make('val', data, verify='headers')
    open(idx, 'w').write('\n'.join(good[:-1]) + '\n')
    with pytest.raises(DatasetError, match='val.idx lists 5 records but dataset.json says '
                                           'num_val = 6'):
        make('val', data, verify='none')


def test_small_files_are_hashed(data):
    with open(os.path.join(data, 'train.lst'), 'a') as f:
        f.write('99\t0\textra.jpg\n')
    with pytest.raises(DatasetError, match=r'train.lst does not match its SHA-256 in '
                                           r'dataset.json \(size \d+, stored \d+\)'):
        make('train', data)
    assert check('train', data, 'headers') == 'headers'
    os.remove(os.path.join(data, 'val.crc32'))
    with pytest.raises(DatasetError, match='val.crc32 not found'):
        make('val', data)


def test_old_set_without_checksums_opens_unverified(data, caplog):
    path = os.path.join(data, 'dataset.json')
    info = json.load(open(path))
    del info['checksums']
    json.dump(info, open(path, 'w'))
    with caplog.at_level(logging.WARNING, logger='tasn_gluon.data.records'):
        it = make('train', data)
        make('val', data)
    assert it.verified == 'headers'                     # not 'full': nothing was verified
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and 'packed without checksums' in warnings[0]
    assert data in warnings[0] and 'cannot be verified' in warnings[0]
    # Damage inside a record's data then goes unseen: the level says so.
    overwrite(os.path.join(data, 'train.rec'), int(offsets(data, 'train')[5]) + 64, 1000)
    assert check('train', data, 'full') == 'headers'


def test_each_shard_verifies_its_records(data):
    rec = os.path.join(data, 'train.rec')
    offs = offsets(data, 'train')
    overwrite(rec, int(offs[3]) + 64, 100)                       # shard 0 of 2: records 0..11
    info = read_dataset_info(data)
    assert check_split(data, 'train', info, 'full', num_parts=2, part_index=1) == 'full'
    with pytest.raises(DatasetError, match=r'record 3 .* CRC32 .* \(1 of the 12 records '
                                           r'checked: 3\)'):
        make('train', data, num_parts=2, part_index=0)


def test_a_passed_check_is_remembered_until_the_file_changes(data, monkeypatch):
    calls = []
    original = records.record_crcs
    monkeypatch.setattr(records, 'record_crcs',
                        lambda *a: calls.append(a[2:]) or original(*a))
    for _ in range(3):                                          # one iterator per epoch
        make('train', data)
    assert calls == [(0, 24)]
    rec = os.path.join(data, 'train.rec')
    overwrite(rec, int(offsets(data, 'train')[2]) + 64, 8)
    st = os.stat(rec)
    os.utime(rec, ns=(st.st_atime_ns, st.st_mtime_ns + 10 ** 9))
    with pytest.raises(DatasetError, match='record 2 .* CRC32'):
        make('train', data)


def test_records_in_several_parts(tmp_path):
    """A record whose data holds the magic at a multiple of 4 bytes is written in parts; the
    check follows them and the CRC32 is of the joined bytes."""
    rec, idx = str(tmp_path / 'x.rec'), str(tmp_path / 'x.idx')
    payloads = [b'abcd' * 3, b'wxyz' + MAGIC + b'1234' + MAGIC + MAGIC + b'tail!', b'q' * 9,
                MAGIC + b'end']
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, 'w')
    for k, p in enumerate(payloads):
        writer.write_idx(k, p)
    writer.close()
    keys, offs = records.read_index(idx)
    layout = records.check_headers(rec, idx, keys, offs)
    assert sorted(layout.parts) == [1, 3] and len(layout.parts[1]) == 4
    assert records.record_crcs(rec, layout, 0, 4) == [zlib.crc32(p) for p in payloads]
    # A middle part whose flag says "first part" again.
    start, _ = layout.parts[1][1]
    with open(rec, 'r+b') as f:
        f.seek(start - 4)
        lrec = int.from_bytes(f.read(4), 'little')
        f.seek(start - 4)
        f.write(((lrec & (2 ** 29 - 1)) | 1 << 29).to_bytes(4, 'little'))
    with pytest.raises(DatasetError, match=r'x.rec: part 2 of record 1 \(key 1, .idx line 2\) '
                                           r'at offset \d+ \(at offset \d+\) has continuation '
                                           'flag 1'):
        records.check_headers(rec, idx, keys, offs)


# ---- damage, in a subprocess: a crash would be a failure here --------------------------------

RUNNER = r'''
import sys
from tasn_gluon.data import DatasetError, get_train_iter, get_val_iter
split, data_dir, verify = sys.argv[1:4]
make = get_train_iter if split == 'train' else get_val_iter
try:
    for batch in make(data_dir, batch_size=4, input_size=32, num_threads=2, verify=verify):
        pass
except DatasetError as exc:
    sys.exit('DatasetError: %s' % exc)
print('read to the end')
'''


def run_reader(split, data_dir, verify='full'):
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.run([sys.executable, '-c', RUNNER, split, data_dir, verify],
                          capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.multiprocess
@pytest.mark.parametrize('case', ['train half aligned', 'train half unaligned', 'val half',
                                  'train 4000 bytes'])
def test_damage_is_an_error_not_a_crash(data, case):
    split = case.split()[0]
    rec = os.path.join(data, split + '.rec')
    size = os.path.getsize(rec)
    if case == 'train 4000 bytes':
        overwrite(rec, size // 2 - 2000, 4000)
    else:
        truncate(rec, size // 2 // 4 * 4 + (1 if 'unaligned' in case else 0))
    done = run_reader(split, data)
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith('DatasetError: %s' % rec), done.stderr
    assert 'Traceback' not in done.stderr and 'read to the end' not in done.stdout


@pytest.mark.multiprocess
def test_good_set_reads_in_a_subprocess(packed):
    for split in ('train', 'val'):
        done = run_reader(split, packed)
        assert done.returncode == 0 and 'read to the end' in done.stdout, done.stderr


def test_many_records_headers_read_by_several_threads(tmp_path):
    rec, idx = str(tmp_path / 'x.rec'), str(tmp_path / 'x.idx')
    writer = mx.recordio.MXIndexedRecordIO(idx, rec, 'w')
    for k in range(5000):
        writer.write_idx(k, b'%d' % k * (k % 7))
    writer.close()
    keys, offs = records.read_index(idx)
    assert records.check_headers(rec, idx, keys, offs).lengths.tolist() == [
        len(b'%d' % k * (k % 7)) for k in range(5000)]
    overwrite(rec, int(offs[4321]), 4, seed=2)
    with pytest.raises(DatasetError, match=r'record 4321 \(key 4321, .idx line 4322\) at offset '
                                           r'%d starts with' % offs[4321]):
        records.check_headers(rec, idx, keys, offs)
