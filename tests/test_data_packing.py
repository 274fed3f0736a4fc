"""Packing lists into .lst/.rec/.idx/dataset.json: contents, bad images, atomicity, the CLI."""
import hashlib
import os
import re
import subprocess
import sys
import zlib

import cv2
import mxnet as mx
import numpy as np
import pytest

from tasn_gluon.data import (DatasetError, prepare_dataset,
                             read_dataset_info, read_lst)
import fake_datasets as fake

from conftest import raw_records

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FINAL_NAMES = ['train.lst', 'val.lst', 'train.rec', 'train.idx', 'val.rec', 'val.idx',
               'train.crc32', 'val.crc32', 'dataset.json']


def _records(out, split):
    r = mx.recordio.MXIndexedRecordIO(os.path.join(out, split + '.idx'),
                                      os.path.join(out, split + '.rec'), 'r')
    try:
        return [mx.recordio.unpack_img(r.read_idx(k)) for k in sorted(r.keys)]
    finally:
        r.close()


@pytest.mark.parametrize('layout,maker,kw', [
    ('cub', fake.make_fake_cub, {}),
    ('cars', fake.make_fake_cars, {'layout': 'annos'}),
    ('cars', fake.make_fake_cars, {'layout': 'devkit'}),
    ('inat', fake.make_fake_inat, {}),
])
def test_pack_each_layout(tmp_path, layout, maker, kw):
    root = maker(str(tmp_path / 'src'), num_classes=3, per_class=4, **kw)
    out = str(tmp_path / 'out')
    info = prepare_dataset(layout, root, out, resize=32, quality=90, num_threads=2)
    assert sorted(os.listdir(out)) == sorted(FINAL_NAMES)
    assert info == read_dataset_info(out)
    assert (info['num_classes'], info['num_train'], info['num_val']) == (3, 6, 6)
    assert len(info['class_names']) == 3 and info['layout'] == layout
    assert info['packing']['resize'] == 32 and info['packing']['quality'] == 90
    assert info['class_counts'] == {'train': [2, 2, 2], 'val': [2, 2, 2]}
    for split in ('train', 'val'):
        lst = read_lst(os.path.join(out, split + '.lst'))
        recs = _records(out, split)
        assert [e.label for e in lst] == [0, 0, 1, 1, 2, 2]
        assert [h.label for h, _ in recs] == [float(e.label) for e in lst]
        assert [h.id for h, _ in recs] == list(range(6))
        for _, img in recs:                        # 40 x 56 sources, shorter side -> 32
            assert img.shape == (32, 45, 3)


def test_checksums_of_every_file_and_record(tmp_path):
    """dataset.json: size and SHA-256 of each file; <split>.crc32: zlib CRC32 of each record as
    MXNet's reader returns it, in .idx order."""
    root = fake.make_fake_folders(str(tmp_path / 'src'), num_classes=2, per_class=4)
    out = str(tmp_path / 'out')
    info = prepare_dataset('folders', root, out, resize=24, num_threads=2, val_fraction=0.5)
    assert info['version'] == 2
    files = info['checksums']['files']
    assert sorted(files) == sorted(n for n in FINAL_NAMES if n != 'dataset.json')
    for name, want in files.items():
        data = open(os.path.join(out, name), 'rb').read()
        assert want == {'bytes': len(data), 'sha256': hashlib.sha256(data).hexdigest()}
    for split in ('train', 'val'):
        want = [zlib.crc32(r) for r in raw_records(out, split)]
        assert np.fromfile(os.path.join(out, split + '.crc32'), '<u4').tolist() == want
        assert info['checksums']['records'][split]['file'] == split + '.crc32'


def test_pack_keeps_size_and_content(tmp_path):
    root = fake.make_fake_folders(str(tmp_path / 'src'), num_classes=2, per_class=3)
    out = str(tmp_path / 'out')
    prepare_dataset('folders', root, out, resize=0, quality=100, num_threads=1,
                    val_fraction=0.34)
    lst = read_lst(os.path.join(out, 'train.lst'))
    for e, (h, img) in zip(lst, _records(out, 'train')):
        src = cv2.imread(os.path.join(root, e.path))
        assert img.shape == src.shape
        assert np.abs(img.astype(int) - src).mean() < 2.0


def _corrupt(root):
    """Truncates one JPEG and replaces another with text; returns their relative paths."""
    a = os.path.join(root, 'images', '001.Bird_1', 'Bird_1_0001.jpg')
    b = os.path.join(root, 'images', '002.Bird_2', 'Bird_2_0003.jpg')
    data = open(a, 'rb').read()
    open(a, 'wb').write(data[:len(data) // 2])
    open(b, 'w').write('not an image')
    return a, b


def test_bad_image_fails_and_leaves_nothing(tmp_path):
    root = fake.make_fake_cub(str(tmp_path / 'src'), num_classes=2, per_class=4)
    out = str(tmp_path / 'out')
    prepare_dataset('cub', root, out, resize=32, num_threads=2)     # a previous good dataset
    truncated, _ = _corrupt(root)
    with pytest.raises(DatasetError, match='bad image .*Bird_1_0001.jpg: truncated JPEG.*'
                                           'skip-bad'):
        prepare_dataset('cub', root, out, resize=32, num_threads=2)
    # The previous dataset is untouched and no temporary file is left behind.
    assert sorted(os.listdir(out)) == sorted(FINAL_NAMES)
    assert read_dataset_info(out)['num_train'] == 4


def test_skip_bad_reports(tmp_path):
    root = fake.make_fake_cub(str(tmp_path / 'src'), num_classes=2, per_class=4)
    truncated, text = _corrupt(root)
    out = str(tmp_path / 'out')
    info = prepare_dataset('cub', root, out, resize=32, num_threads=2, skip_bad=True)
    assert (info['num_train'], info['num_val']) == (3, 3)
    assert info['skipped'] == {'train': 1, 'val': 1}
    report = open(os.path.join(out, info['bad_images_report'])).read().splitlines()
    assert report == ['train\t%s\ttruncated JPEG (no end-of-image marker after the last scan)'
                      % truncated, 'val\t%s\tnot a decodable image' % text]
    lst = read_lst(os.path.join(out, 'val.lst'))
    recs = _records(out, 'val')
    assert [e.label for e in lst] == [0, 0, 1] == [int(h.label) for h, _ in recs]
    assert [h.id for h, _ in recs] == [0, 1, 2]


def test_pack_rejects_bad_options(tmp_path):
    root = fake.make_fake_cub(str(tmp_path / 'src'), num_classes=2, per_class=2)
    with pytest.raises(DatasetError, match='quality'):
        prepare_dataset('cub', root, str(tmp_path / 'o'), quality=0)
    with pytest.raises(DatasetError, match='resize'):
        prepare_dataset('cub', root, str(tmp_path / 'o'), resize=-1)


def test_read_dataset_info_errors(tmp_path):
    with pytest.raises(DatasetError, match='dataset.json not found'):
        read_dataset_info(str(tmp_path))
    (tmp_path / 'dataset.json').write_text('{"name": "x"}')
    with pytest.raises(DatasetError, match='lacks num_classes'):
        read_dataset_info(str(tmp_path))
    (tmp_path / 'dataset.json').write_text(
        '{"name": "x", "num_classes": 1, "class_names": ["a"], "num_train": 1, "num_val": 1,'
        ' "packing": {}}')
    with pytest.raises(DatasetError, match='train.rec, train.idx, val.rec, val.idx missing'):
        read_dataset_info(str(tmp_path))


@pytest.mark.multiprocess
def test_cli(tmp_path):
    root = fake.make_fake_folders(str(tmp_path / 'src'), num_classes=2, per_class=3)
    out = str(tmp_path / 'out')
    cmd = [sys.executable, os.path.join(REPO, 'tools', 'im2rec.py'), '--dataset', 'folders',
           '--root', root, '--out', out, '--resize', '24', '--quality', '80',
           '--num-thread', '1', '--val-fraction', '0.34', '--split-seed', '3', '--no-progress']
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    info = read_dataset_info(out)
    assert (info['num_train'], info['num_val'], info['packing']['resize']) == (4, 2, 24)
    bad = subprocess.run(cmd[:4] + ['--root', str(tmp_path / 'nope'), '--out', out],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and 'is not a folder' in bad.stderr


def test_grey_and_png_sources_become_colour_jpeg(tmp_path):
    root = str(tmp_path / 'src')
    for c in range(2):
        for i in range(2):
            path = os.path.join(root, 'c%d' % c, '%d.png' % i)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            cv2.imwrite(path, np.full((20, 30), 60 * (c + 1), np.uint8))     # one channel
    out = str(tmp_path / 'out')
    prepare_dataset('folders', root, out, resize=10, num_threads=1, val_fraction=0.5)
    for _, img in _records(out, 'train'):
        assert img.shape == (10, 15, 3)
        assert abs(float(img.mean()) - 60) < 3 or abs(float(img.mean()) - 120) < 3


# ---- tools/im2rec.py: path errors are one line, exit status 2, nothing written --------------

def _im2rec(*args, cwd=None):
    return subprocess.run([sys.executable, os.path.join(REPO, 'tools', 'im2rec.py')] +
                          list(args), capture_output=True, text=True, cwd=cwd, timeout=300)


def _tree(path):
    return sorted(os.path.relpath(os.path.join(d, n), path)
                  for d, dirs, files in os.walk(path) for n in dirs + files)


@pytest.mark.multiprocess
@pytest.mark.parametrize('case,message', [
    ('out under a file', r'cannot create output folder .*afile/sub: .*afile is a file, not a '
                         'folder'),
    ('out is a file', r'output folder .*afile is an existing file, not a folder'),
    ('out under /proc', r'cannot create output folder /proc/tasn-gluon-test/out: No such file'),
    ('out under /sys', r'cannot (create|write) output folder /sys/tasn-gluon-test'),
    ('missing root', r'folders layout: .*nope is not a folder'),
    ('bad image', r'bad image .*img_01.jpg: not a decodable image'),
])
def test_cli_errors_are_one_line(tmp_path, case, message):
    root = fake.make_fake_folders(str(tmp_path / 'src'), num_classes=2, per_class=3)
    (tmp_path / 'afile').write_text('a regular file')
    out = {'out under a file': str(tmp_path / 'afile' / 'sub'),
           'out is a file': str(tmp_path / 'afile'),
           'out under /proc': '/proc/tasn-gluon-test/out',
           'out under /sys': '/sys/tasn-gluon-test'}.get(case, str(tmp_path / 'new' / 'out'))
    if case == 'missing root':
        root = str(tmp_path / 'nope')
    if case == 'bad image':
        (tmp_path / 'src' / 'class_0' / 'img_01.jpg').write_text('not an image')
    before = _tree(str(tmp_path))
    done = _im2rec('--dataset', 'folders', '--root', root, '--out', out, '--resize', '16',
                   '--num-thread', '1', '--no-progress', cwd=str(tmp_path))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), done.stderr
    assert re.search(message, lines[0]), lines[0]
    # Nothing written: not the output folder's parents, no temporary file, no probe.
    assert _tree(str(tmp_path)) == before
    assert not os.path.exists('/proc/tasn-gluon-test') and not os.path.exists(
        '/sys/tasn-gluon-test')


@pytest.mark.multiprocess
@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only-mode folders')
def test_cli_read_only_folder(tmp_path):
    root = fake.make_fake_folders(str(tmp_path / 'src'), num_classes=2, per_class=3)
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o555)
    try:
        done = _im2rec('--dataset', 'folders', '--root', root, '--out', str(locked / 'out'),
                       '--no-progress')
    finally:
        locked.chmod(0o755)
    assert done.returncode == 2 and 'no permission to write in' in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and os.listdir(str(locked)) == []


def test_read_only_file_system_is_refused_before_reading(tmp_path, monkeypatch):
    """A read-only mount (statvfs ST_RDONLY) fails before the splits are read."""
    real = os.statvfs

    class ReadOnly(object):
        def __init__(self, path):
            self.f_flag = real(path).f_flag | os.ST_RDONLY

    monkeypatch.setattr(os, 'statvfs', ReadOnly)
    with pytest.raises(DatasetError, match='cannot write output folder .*out: .* is on a '
                                           'read-only file system'):
        prepare_dataset('folders', str(tmp_path / 'not-read-yet'), str(tmp_path / 'out'))
    assert os.listdir(str(tmp_path)) == []


@pytest.mark.multiprocess
def test_cli_help_shows_real_defaults():
    from tasn_gluon.data.packing import default_num_threads
    done = _im2rec('--help')
    assert done.returncode == 0 and done.stderr == ''
    text = ' '.join(done.stdout.split())
    assert 'Packs a fine-grained dataset as distributed into the folder the trainer reads.' \
        in text
    for default in ('(default: 512)', '(default: 95)', '(default: 0.2)', '(default: 0)',
                    '(default: all cores, %d here)' % default_num_threads()):
        assert default in text, default
