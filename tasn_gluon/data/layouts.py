"""Name -> reader of each supported dataset layout (how a dataset lies on disk as distributed),
and the one call that packs a dataset."""
import os

from ..errors import DatasetError
from ..files import is_within
from .cars import list_cars
from .cub import list_cub
from .folders import list_folders
from .inat import list_inat
from .packing import check_output_folder, pack_dataset

LAYOUTS = {
    'cub': list_cub,
    'cars': list_cars,
    'inat': list_inat,
    'folders': list_folders,
}


def list_dataset(layout, root, **options):
    """DatasetSplits of the dataset at ``root`` in ``layout`` (one of LAYOUTS); ``options`` go
    to the reader (folders: ``val_root``, ``val_fraction``, ``split_seed``; inat:
    ``image_root``)."""
    if layout not in LAYOUTS:
        raise DatasetError('unknown dataset layout %r; choose one of %s'
                           % (layout, ', '.join(sorted(LAYOUTS))))
    return LAYOUTS[layout](root, **options)


def check_out_of_image_tree(splits, out_dir, layout):
    """DatasetError when ``out_dir`` is a split's root or lies in a folder that holds the
    dataset's images (the packed files would land among them; in the folders layout, anywhere
    under a root, where a next run would take the output for a class)."""
    roots = {splits.train_root, splits.val_root}
    if any(is_within(out_dir, r) if layout == 'folders' else
           os.path.realpath(out_dir) == os.path.realpath(r) for r in roots):
        raise DatasetError('--out %s lies in the dataset\'s own folder (--root/--val-root): '
                           'choose an output folder outside it' % out_dir)
    folders = set()
    for which in ('train', 'val'):
        entries, root = splits.split(which)
        folders.update(os.path.dirname(os.path.join(root, e.path)) for e in entries)
    inside = sorted(f for f in folders if is_within(out_dir, f))
    if inside:
        raise DatasetError('--out %s lies in %s, a folder of the dataset\'s images: choose an '
                           'output folder outside the image tree' % (out_dir, inside[0]))


def prepare_dataset(layout, root, out_dir, resize=512, quality=95, num_threads=None,
                    skip_bad=False, progress=None, **options):
    """Reads the split files of ``root`` and packs the dataset folder ``out_dir``; returns the
    dataset.json contents. This is what ``tools/im2rec.py`` runs."""
    check_output_folder(out_dir)          # before the (possibly long) reading of the splits
    splits = list_dataset(layout, root, **options)
    check_out_of_image_tree(splits, out_dir, layout)
    return pack_dataset(splits, out_dir, resize=resize, quality=quality,
                        num_threads=num_threads, skip_bad=skip_bad, progress=progress,
                        layout=layout)
