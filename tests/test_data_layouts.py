"""Reading each official dataset layout into train/val lists, and every bad-input error."""
import json
import os

import numpy as np
import pytest
import scipy.io

from tasn_gluon.data import (DatasetError, list_cars, list_cub, list_dataset, list_folders,
                             list_inat, read_lst, write_lst, Entry)
import fake_datasets as fake


def _labels(entries):
    return [e.label for e in entries]


def test_cub_layout(tmp_path):
    root = fake.make_fake_cub(str(tmp_path), num_classes=3, per_class=4)
    s = list_cub(str(tmp_path)).validate()          # the parent folder is accepted too
    assert s.name == 'cub'
    assert s.class_names == ['001.Bird_1', '002.Bird_2', '003.Bird_3']
    assert (len(s.train), len(s.val)) == (6, 6)
    assert _labels(s.train) == [0, 0, 1, 1, 2, 2]
    assert s.train[0].path == 'images/001.Bird_1/Bird_1_0000.jpg'
    assert s.train_root == root


@pytest.mark.parametrize('layout', ['annos', 'devkit'])
def test_cars_layouts(tmp_path, layout):
    root = fake.make_fake_cars(str(tmp_path), layout=layout, num_classes=3, per_class=4)
    s = list_cars(root).validate()
    assert s.class_names == ['Make1 Model1 2001', 'Make2 Model2 2002', 'Make3 Model3 2003']
    assert (len(s.train), len(s.val)) == (6, 6)
    assert _labels(s.train) == [0, 0, 1, 1, 2, 2] and _labels(s.val) == [0, 0, 1, 1, 2, 2]
    prefix = {'annos': 'car_ims/', 'devkit': 'cars_train/'}[layout]
    assert all(e.path.startswith(prefix) for e in s.train)


def test_cars_devkit_nested_image_folder(tmp_path):
    root = fake.make_fake_cars(str(tmp_path), layout='devkit')
    for which in ('cars_train', 'cars_test'):
        os.rename(os.path.join(root, which), os.path.join(root, which + '_x'))
        os.makedirs(os.path.join(root, which))
        os.rename(os.path.join(root, which + '_x'), os.path.join(root, which, which))
    s = list_cars(root).validate()
    assert s.train[0].path == 'cars_train/cars_train/00001.jpg'


def test_inat_layout_maps_category_ids(tmp_path):
    root = fake.make_fake_inat(str(tmp_path), num_classes=3, per_class=4, first_category_id=10)
    s = list_inat(root).validate()
    assert s.name == 'inat2017'
    assert s.class_names == ['Species 0', 'Species 1', 'Species 2']
    assert _labels(s.train) == [0, 0, 1, 1, 2, 2]
    assert (len(s.train), len(s.val)) == (6, 6)


def test_folders_split_fraction_is_seeded(tmp_path):
    root = fake.make_fake_folders(str(tmp_path / 'f'), num_classes=3, per_class=10)
    a = list_folders(root, val_fraction=0.3, split_seed=1).validate()
    b = list_folders(root, val_fraction=0.3, split_seed=1)
    c = list_folders(root, val_fraction=0.3, split_seed=2)
    assert a.class_names == ['class_0', 'class_1', 'class_2']
    assert (len(a.train), len(a.val)) == (21, 9)
    assert a.val == b.val and a.val != c.val
    assert sorted(e.path for e in a.train + a.val) == sorted(e.path for e in c.train + c.val)


def test_folders_val_root_and_mismatch(tmp_path):
    train = fake.make_fake_folders(str(tmp_path / 'train'), num_classes=2, per_class=3)
    val = fake.make_fake_folders(str(tmp_path / 'val'), num_classes=2, per_class=1)
    s = list_dataset('folders', train, val_root=val).validate()
    assert (len(s.train), len(s.val)) == (6, 2) and s.val_root == val
    os.makedirs(os.path.join(val, 'class_9'))
    fake.write_image(os.path.join(val, 'class_9', 'x.jpg'), np.random.RandomState(0))
    with pytest.raises(DatasetError, match='different class folders.*class_9'):
        list_folders(train, val_root=val)


def test_folders_errors(tmp_path):
    with pytest.raises(DatasetError, match='no class sub-folders'):
        list_folders(str(tmp_path))
    os.makedirs(str(tmp_path / 'empty_class'))
    with pytest.raises(DatasetError, match='hold no images.*empty_class'):
        list_folders(str(tmp_path))
    root = fake.make_fake_folders(str(tmp_path / 'ok'), num_classes=2, per_class=3)
    with pytest.raises(DatasetError, match='val fraction'):
        list_folders(root, val_fraction=1.5)


def test_unknown_layout():
    with pytest.raises(DatasetError, match='unknown dataset layout.*cub'):
        list_dataset('imagenet', '/nowhere')


# ---- bad input -------------------------------------------------------------------------------

def test_cub_missing_split_files_are_named(tmp_path):
    root = fake.make_fake_cub(str(tmp_path))
    os.remove(os.path.join(root, 'train_test_split.txt'))
    os.remove(os.path.join(root, 'classes.txt'))
    with pytest.raises(DatasetError, match='train_test_split.txt, classes.txt'):
        list_cub(root)


def test_cub_label_out_of_range(tmp_path):
    root = fake.make_fake_cub(str(tmp_path), num_classes=3)
    path = os.path.join(root, 'image_class_labels.txt')
    lines = open(path).read().splitlines()
    lines[0] = '1 7'
    open(path, 'w').write('\n'.join(lines) + '\n')
    with pytest.raises(DatasetError, match='out of range 1..3.*image 1 -> 7'):
        list_cub(root)


def test_cub_duplicate_ids(tmp_path):
    root = fake.make_fake_cub(str(tmp_path))
    path = os.path.join(root, 'images.txt')
    lines = open(path).read().splitlines()
    open(path, 'w').write('\n'.join(lines + [lines[2]]) + '\n')
    with pytest.raises(DatasetError, match='duplicate id.*3'):
        list_cub(root)


def test_cub_malformed_line(tmp_path):
    root = fake.make_fake_cub(str(tmp_path))
    with open(os.path.join(root, 'train_test_split.txt'), 'a') as f:
        f.write('oops\n')
    with pytest.raises(DatasetError, match='train_test_split.txt line 13'):
        list_cub(root)


def test_missing_images_are_counted_and_named(tmp_path):
    root = fake.make_fake_cub(str(tmp_path), num_classes=2, per_class=4)
    os.remove(os.path.join(root, 'images', '001.Bird_1', 'Bird_1_0000.jpg'))
    os.remove(os.path.join(root, 'images', '002.Bird_2', 'Bird_2_0001.jpg'))
    with pytest.raises(DatasetError, match=r'2 of 4 train image\(s\).*missing.*Bird_1_0000.jpg'):
        list_cub(root).validate()


def test_cars_missing_files_and_bad_labels(tmp_path):
    with pytest.raises(DatasetError, match='cars_annos.mat'):
        list_cars(str(tmp_path))
    root = fake.make_fake_cars(str(tmp_path / 'dk'), layout='devkit')
    os.remove(os.path.join(root, 'cars_test_annos_withlabels.mat'))
    scipy.io.savemat(os.path.join(root, 'devkit', 'cars_test_annos.mat'), {'annotations': 0})
    with pytest.raises(DatasetError, match='cars_test_annos_withlabels.mat.*has no labels'):
        list_cars(root)
    root = fake.make_fake_cars(str(tmp_path / 'an'), layout='annos', num_classes=3)
    path = os.path.join(root, 'cars_annos.mat')
    mat = scipy.io.loadmat(path)
    mat['annotations'][0, 0]['class'] = np.array([[9]], np.uint8)
    scipy.io.savemat(path, {k: v for k, v in mat.items() if not k.startswith('__')})
    with pytest.raises(DatasetError, match='out of range 1..3.*9'):
        list_cars(root)


def test_cars_mat_without_variable(tmp_path):
    scipy.io.savemat(str(tmp_path / 'cars_annos.mat'), {'something': 1})
    with pytest.raises(DatasetError, match="no variable 'class_names'"):
        list_cars(str(tmp_path))


def test_inat_errors(tmp_path):
    with pytest.raises(DatasetError, match='train2017.json, val2017.json'):
        list_inat(str(tmp_path))
    root = fake.make_fake_inat(str(tmp_path / 'a'))
    path = os.path.join(root, 'val2017.json')
    doc = json.load(open(path))
    doc['annotations'][0]['category_id'] = 12345
    json.dump(doc, open(path, 'w'))
    with pytest.raises(DatasetError, match='label out of range: category id 12345'):
        list_inat(root)
    doc['annotations'][0]['category_id'] = 10
    doc['images'].append(dict(doc['images'][0]))
    json.dump(doc, open(path, 'w'))
    with pytest.raises(DatasetError, match='duplicate image id'):
        list_inat(root)
    open(path, 'w').write('{not json')
    with pytest.raises(DatasetError, match='not valid JSON'):
        list_inat(root)


def test_splits_validate_duplicates_and_overlap(tmp_path):
    from tasn_gluon.data import DatasetSplits
    root = fake.make_fake_folders(str(tmp_path), num_classes=2, per_class=2)
    a, b = Entry('class_0/img_00.jpg', 0), Entry('class_1/img_00.jpg', 1)
    with pytest.raises(DatasetError, match='listed twice'):
        DatasetSplits('t', ['x', 'y'], [a, a], [b], root).validate()
    with pytest.raises(DatasetError, match='in both train and val'):
        DatasetSplits('t', ['x', 'y'], [a, b], [b], root).validate()
    with pytest.raises(DatasetError, match='out of range'):
        DatasetSplits('t', ['x'], [a], [b], root).validate()
    with pytest.raises(DatasetError, match='duplicate class names'):
        DatasetSplits('t', ['x', 'x'], [a], [b], root).validate()


def test_lst_round_trip(tmp_path):
    entries = [Entry('a/b c.jpg', 3), Entry('d.png', 0)]
    path = str(tmp_path / 'x.lst')
    write_lst(path, entries)
    assert open(path).read() == '0\t3\ta/b c.jpg\n1\t0\td.png\n'
    assert read_lst(path) == entries
    open(path, 'w').write('0\tx\ty.jpg\n')
    with pytest.raises(DatasetError, match='line 1.*not a number'):
        read_lst(path)
