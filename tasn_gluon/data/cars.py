"""Stanford Cars in either of its two distributed layouts:

* ``cars_annos.mat`` + ``car_ims/``: one annotation list, the ``test`` field is the split;
* the devkit: ``cars_meta.mat``, ``cars_train_annos.mat``, ``cars_test_annos_withlabels.mat``
  (in the root or in ``devkit/``) with images in ``cars_train/`` and ``cars_test/``.
"""
import os

from ..errors import DatasetError, first_few
from .splits import DatasetSplits, Entry
from .tables import as_int, find_first, load_mat_struct, mat_field

WHAT = 'Stanford Cars'


def _class_names(path, var='class_names'):
    names = [str(n).strip() for n in load_mat_struct(path, var)]
    if not names:
        raise DatasetError('%s: %s holds no class names' % (WHAT, path))
    return names


def _labels(values, path, num_classes):
    """1-based MATLAB class indices -> 0-based labels, range-checked."""
    labels = [as_int(v, path, 'class') for v in values]
    bad = [c for c in labels if not 1 <= c <= num_classes]
    if bad:
        raise DatasetError('%s: %d class index(es) out of range 1..%d in %s: %s'
                           % (WHAT, len(bad), num_classes, path, first_few(bad)))
    return [c - 1 for c in labels]


def _find_mat(root, name):
    for folder in ('', 'devkit', 'car_devkit/devkit'):
        path = os.path.join(root, folder, name)
        if os.path.isfile(path):
            return path
    return None


def list_cars_annos(root):
    """The ``cars_annos.mat`` layout (paths such as ``car_ims/000001.jpg`` relative to root)."""
    path = os.path.join(root, 'cars_annos.mat')
    names = _class_names(path)
    annos = load_mat_struct(path, 'annotations')
    paths = [str(p) for p in mat_field(annos, 'relative_im_path', path)]
    labels = _labels(mat_field(annos, 'class', path), path, len(names))
    tests = [as_int(t, path, 'test') for t in mat_field(annos, 'test', path)]
    bad = [p for p, t in zip(paths, tests) if t not in (0, 1)]
    if bad:
        raise DatasetError('%s: the test flag must be 0 or 1 in %s (images %s)'
                           % (WHAT, path, first_few(bad)))
    train = [Entry(p, c) for p, c, t in zip(paths, labels, tests) if t == 0]
    val = [Entry(p, c) for p, c, t in zip(paths, labels, tests) if t == 1]
    return DatasetSplits('cars', names, train, val, root)


def list_cars_devkit(root):
    """The devkit layout; the test labels come from ``cars_test_annos_withlabels.mat`` (the
    devkit's own ``cars_test_annos.mat`` has none)."""
    files = {}
    for key, name in (('meta', 'cars_meta.mat'), ('train', 'cars_train_annos.mat'),
                      ('test', 'cars_test_annos_withlabels.mat')):
        files[key] = _find_mat(root, name)
    missing = [n for n, k in (('cars_meta.mat', 'meta'), ('cars_train_annos.mat', 'train'),
                              ('cars_test_annos_withlabels.mat', 'test')) if files[k] is None]
    if missing:
        hint = ''
        if 'cars_test_annos_withlabels.mat' in missing and _find_mat(root, 'cars_test_annos.mat'):
            hint = (' (cars_test_annos.mat has no labels: get cars_test_annos_withlabels.mat, '
                    'see data/README.md)')
        raise DatasetError('%s: missing split file(s) %s under %s or %s/devkit%s'
                           % (WHAT, ', '.join(missing), root, root, hint))
    names = _class_names(files['meta'])
    splits = []
    for key, folder in (('train', 'cars_train'), ('test', 'cars_test')):
        path = files[key]
        # Some mirrors nest cars_train/cars_train/; use the inner folder when it is there.
        image_dir = find_first(root, [os.path.join(folder, folder), folder],
                               '%s image folder for %s' % (WHAT, os.path.basename(path)))
        prefix = os.path.relpath(image_dir, root)
        annos = load_mat_struct(path, 'annotations')
        fnames = [str(f) for f in mat_field(annos, 'fname', path)]
        labels = _labels(mat_field(annos, 'class', path), path, len(names))
        splits.append([Entry(prefix + '/' + f, c) for f, c in zip(fnames, labels)])
    return DatasetSplits('cars', names, splits[0], splits[1], root)


def list_cars(root):
    """Stanford Cars under ``root`` in whichever layout is there (cars_annos.mat preferred)."""
    if not os.path.isdir(root):
        raise DatasetError('%s: %s is not a folder' % (WHAT, root))
    if os.path.isfile(os.path.join(root, 'cars_annos.mat')):
        return list_cars_annos(root)
    if _find_mat(root, 'cars_meta.mat') or _find_mat(root, 'cars_train_annos.mat'):
        return list_cars_devkit(root)
    raise DatasetError(
        '%s: no split files under %s: expected cars_annos.mat (with car_ims/) or the devkit '
        '(cars_meta.mat, cars_train_annos.mat, cars_test_annos_withlabels.mat with cars_train/ '
        'and cars_test/)' % (WHAT, root))
