"""Name -> reader of each supported dataset layout, and the one call that packs a dataset."""
from .cars import list_cars
from .cub import list_cub
from .errors import DatasetError
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


def prepare_dataset(layout, root, out_dir, resize=512, quality=95, num_threads=None,
                    skip_bad=False, progress=False, **options):
    """Reads the split files of ``root`` and packs the dataset folder ``out_dir``; returns the
    dataset.json contents. This is what ``tools/im2rec.py`` runs."""
    check_output_folder(out_dir)          # before the (possibly long) reading of the splits
    splits = list_dataset(layout, root, **options)
    return pack_dataset(splits, out_dir, resize=resize, quality=quality,
                        num_threads=num_threads, skip_bad=skip_bad, progress=progress,
                        layout=layout)
