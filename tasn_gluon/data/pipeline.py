"""The paper's input pipeline over a packed dataset folder (spec section 7).

Both iterators are MXNet's C++ ``ImageRecordIter`` (multi-threaded decode and augmentation),
checked option by option in tests/test_data_pipeline.py:

train: shorter side -> ``input_size``; rotation by an integer angle in [-30, 30] degrees about
  the centre with white (255) fill; random ``input_size`` square crop; horizontal flip with
  p = 0.5; brightness, contrast, saturation factors 1 + U(-0.4, 0.4); PCA lighting noise with
  std 0.1 on ImageNet's eigenvalues; mean (123.68, 116.779, 103.939) subtracted, no std.
val: shorter side -> ``input_size``, centre crop, mean subtraction.

Before either is created, :func:`~tasn_gluon.data.records.check_split` checks the record files
(``verify='full'``: structure and checksums; ``'headers'``; ``'none'``), so that a damaged
file is a DatasetError naming it, not a crash inside MXNet.

``ImageRecordIter``'s ``pad`` is unreliable (see :class:`RecordIter`), so both iterators are
wrapped in :class:`RecordIter`, which knows the shard's image count: the val iterator sets
``pad`` itself, and dropping the last ``batch.pad`` entries leaves every image of the shard
exactly once; the train iterator yields only full batches (``pad`` = 0).
"""
import os

import mxnet as mx

from ..errors import ConfigError, DatasetError
from .info import read_dataset_info
from .packing import default_num_threads
from .records import DEFAULT_VERIFY, check_split, check_verify_level, shard_range

MEAN_RGB = (123.68, 116.779, 103.939)
# ImageRecordIter's ``inter_method`` for the shorter-side resize (and the train iterator's
# rotation): 1 = bilinear, OpenCV's INTER_LINEAR (also MXNet's default). The val preprocessing of
# single images (``preprocess.val_preprocess``) resizes with the same method.
RESIZE_INTER_METHOD = 1

# The official recipe's augmentation; every key may be overridden by get_train_iter(**options).
TRAIN_AUGMENT = {
    'rand_crop': True,
    'rand_mirror': True,
    'max_rotate_angle': 30,
    'fill_value': 255,
    'brightness': 0.4,
    'contrast': 0.4,
    'saturation': 0.4,
    'pca_noise': 0.1,
    'shuffle': True,
}
COLOR_OPTIONS = ('brightness', 'contrast', 'saturation', 'pca_noise')
# What the training iterator does with a shard that batches do not divide (RecordIter).
LAST_BATCH = ('keep', 'wrap', 'discard')
TRAIN_LAST_BATCH = ('wrap', 'discard')           # get_train_iter's (keep: the val iterator's)
# Other options a caller may set: ours (color_on_device, mean_rgb) and ImageRecordIter's (names
# as MXNet spells them).
EXTRA_OPTIONS = ('color_on_device', 'inter_method', 'prefetch_buffer', 'resize', 'dtype',
                 'random_h', 'random_s', 'random_l', 'max_shear_ratio', 'pad', 'device_id',
                 'mean_rgb')


def count_shard(num_images, num_parts, part_index):
    """Images in shard ``part_index`` of ``num_parts`` (see records.shard_range)."""
    lo, hi = shard_range(num_images, num_parts, part_index)
    return hi - lo


def _check_shard(num_images, num_parts, part_index, split):
    if num_parts < 1 or not 0 <= part_index < num_parts:
        raise ConfigError('need num_parts >= 1 and 0 <= part_index < num_parts, got %r, %r'
                          % (num_parts, part_index))
    n = count_shard(num_images, num_parts, part_index)
    if n == 0:
        raise DatasetError('shard %d of %d of the %s split is empty (%d images): use fewer parts'
                           % (part_index, num_parts, split, num_images))
    return n


class RecordIter(mx.io.DataIter):
    """A DataIter over one shard of a .rec file, wrapping MXNet's ImageRecordIter.

    MXNet's own ``pad`` is unreliable (0 on a short last batch whose rows are uninitialised
    memory, and with ``round_batch`` a stale value can appear on any batch), and with
    ``round_batch`` the number of batches changes from epoch to epoch. So this wrapper ignores
    it, reads the inner iterator with ``round_batch=False`` and counts images itself:

    * ``last_batch='keep'`` (val): every image of the shard once; the last batch's ``pad``
      counts its padding rows, which are zeroed (label 0).
    * ``last_batch='wrap'`` (train, the official ``round_batch``): every image of the shard
      once per epoch; the short last batch is completed with the first images of the epoch
      (repeated in order), ``pad`` always 0.
    * ``last_batch='discard'`` (train): only full batches, ``pad`` always 0; with shuffling
      the left-out images change every epoch.

    Training epochs are reproducible for a seed when each is read to its end before
    ``reset()`` (a reset in mid-epoch races MXNet's prefetching).

    ``num_images`` is the shard's image count, ``num_batches`` the batches of every epoch.
    """

    def __init__(self, inner, num_images, batch_size, last_batch):
        super(RecordIter, self).__init__(batch_size)
        if last_batch not in LAST_BATCH:
            raise ValueError('last_batch must be one of %s, not %r' % (', '.join(LAST_BATCH),
                                                                       last_batch))
        self._inner = inner
        self.num_images = num_images
        self.last_batch = last_batch
        self._first = None  # wrap: the epoch's first images, which complete its last batch
        if last_batch in ('keep', 'wrap'):
            self.num_batches = -(-num_images // batch_size)
        else:
            self.num_batches = num_images // batch_size
            if self.num_batches == 0:
                raise DatasetError('batch size %d is larger than the %d training images of this '
                                   'shard' % (batch_size, num_images))
        self._batches = 0
        # Set by get_train_iter(color_on_device=True): a BatchColorJitter the trainer applies
        # to each batch on its device; None when the iterator did all augmentation itself.
        self.device_augment = None
        # What records.check_split verified of the files: 'full', 'headers' or 'none'.
        self.verified = None

    @property
    def provide_data(self):
        return self._inner.provide_data

    @property
    def provide_label(self):
        return self._inner.provide_label

    def reset(self):
        self._inner.reset()
        self._batches = 0
        self._first = None

    def _finish_inner_epoch(self):
        if self.last_batch != 'keep':
            # Read the inner epoch to its end: a reset while MXNet still prefetches the dropped
            # batch would leave its augmentation generators in a timing-dependent state, and
            # the next epoch would not be reproducible.
            for _ in self._inner:
                pass
            return
        # Exact evaluation relies on the shard size computed by count_shard: make sure MXNet
        # has nothing more for this shard.
        try:
            self._inner.next()
        except StopIteration:
            return
        raise DatasetError('the record iterator holds more than the %d images expected for this '
                           'shard: the .rec file and dataset.json disagree' % self.num_images)

    def next(self):
        if self._batches >= self.num_batches:
            if self._batches == self.num_batches:
                self._batches += 1
                self._finish_inner_epoch()
            raise StopIteration
        try:
            batch = self._inner.next()
        except StopIteration:
            raise DatasetError('the record iterator stopped after %d of %d batches: the .rec '
                               'file and dataset.json disagree' % (self._batches,
                                                                   self.num_batches))
        self._batches += 1
        real = min(self.batch_size, self.num_images - (self._batches - 1) * self.batch_size)
        if self.last_batch == 'wrap':
            return self._wrapped(batch, real)
        batch.pad = self.batch_size - real
        if batch.pad:
            batch.data[0][real:] = 0
            batch.label[0][real:] = 0
        return batch

    def _wrapped(self, batch, real):
        missing = self.batch_size * self.num_batches - self.num_images
        if self._batches == 1 and missing:
            keep = min(missing, real)
            self._first = (batch.data[0][:keep].copy(), batch.label[0][:keep].copy())
        if real < self.batch_size:
            data, label = self._first
            rows = mx.nd.array([i % data.shape[0] for i in range(self.batch_size - real)],
                               ctx=data.context, dtype='int32')
            batch.data[0][real:] = mx.nd.take(data, rows)
            batch.label[0][real:] = mx.nd.take(label, rows)
        batch.pad = 0
        return batch


def _check_sizes(batch_size, input_size):
    if int(batch_size) < 1:
        raise ConfigError('--batch-size must be >= 1, not %r' % (batch_size,))
    if int(input_size) < 8:
        raise ConfigError('--input-size must be >= 8 pixels, not %r' % (input_size,))


def _base_options(data_dir, split, batch_size, input_size, num_parts, part_index, num_threads,
                  mean_rgb):
    return dict(path_imgrec=os.path.join(data_dir, split + '.rec'),
                path_imgidx=os.path.join(data_dir, split + '.idx'),
                data_shape=(3, int(input_size), int(input_size)),
                batch_size=int(batch_size), resize=int(input_size), label_width=1,
                num_parts=int(num_parts), part_index=int(part_index),
                preprocess_threads=int(num_threads or default_num_threads()),
                mean_r=mean_rgb[0], mean_g=mean_rgb[1], mean_b=mean_rgb[2],
                inter_method=RESIZE_INTER_METHOD, verbose=False)


def get_train_iter(data_dir, batch_size, input_size=512, num_parts=1, part_index=0, seed=0,
                   num_threads=None, verify=DEFAULT_VERIFY, last_batch='wrap', **aug_options):
    """Training iterator over ``data_dir/train.rec`` with the paper's augmentation.

    Parameters
    ----------
    data_dir : str
        A packed dataset folder (dataset.json, train.rec/.idx).
    batch_size : int
        Images per batch (on this worker).
    input_size : int
        Shorter side before the crop, and the crop's side.
    num_parts, part_index : int
        This worker's shard (consecutive ceil(n / parts) records).
    seed : int
        Seeds shuffling and augmentation (``seed * num_parts + part_index`` for the shard):
        the same seed gives the same batches when each epoch is read to its end.
    num_threads : int or None
        Decode/augment threads (default: all cores).
    verify : 'full', 'headers' or 'none'
        What :func:`~tasn_gluon.data.records.check_split` checks of train.rec/.idx before the
        iterator is made (``'full'``: also the CRC32 of this shard's records).
        ``iterator.verified`` says what was verified.
    last_batch : 'wrap' or 'discard'
        A short last batch is completed with the epoch's first images (``'wrap'``, the
        official iterator's ``round_batch``: every image is seen each epoch) or dropped.
    **aug_options
        Overrides of TRAIN_AUGMENT (rand_crop, rand_mirror, max_rotate_angle, fill_value,
        brightness, contrast, saturation, pca_noise, shuffle) or one of EXTRA_OPTIONS
        (``resize``: shorter side before the crop, ``mean_rgb``, ``inter_method`` ...).
        ``color_on_device`` (default False: every step in the record iterator): True leaves
        brightness, contrast, saturation and PCA lighting out of the record pipeline and puts
        them in ``iterator.device_augment`` (a :class:`~tasn_gluon.data.color.BatchColorJitter`
        computing the same 8-bit arithmetic), which the trainer must apply to each batch after
        moving it to its device: a third less CPU work per image.
    """
    check_verify_level(verify)
    if last_batch not in TRAIN_LAST_BATCH:
        raise ConfigError("--last-batch must be 'wrap' or 'discard', not %r" % (last_batch,))
    _check_sizes(batch_size, input_size)
    info = read_dataset_info(data_dir)
    n = _check_shard(info['num_train'], num_parts, part_index, 'train')
    # One seed per shard, so that workers do not draw the same crops for their i-th images.
    shard_seed = int(seed) * int(num_parts) + int(part_index)
    options, mean_rgb, device_augment = _train_options(aug_options, shard_seed)
    kwargs = _base_options(data_dir, 'train', batch_size, input_size, num_parts, part_index,
                           num_threads, mean_rgb)
    kwargs.update(options)
    kwargs['round_batch'] = False
    if kwargs['resize'] < input_size:
        raise ConfigError('resize (%d) must be >= --input-size (%d): the crop is taken from the '
                          'resized image' % (kwargs['resize'], input_size))
    verified = check_split(data_dir, 'train', info, verify, num_parts, part_index)
    # seed: shuffling order. seed_aug: MXNet reseeds the augmentation generator of each record
    # with its place in the batch + seed_aug, so the i-th images of all batches of an epoch get
    # the same draws (rotation, crop, flip, colour); the trainer's per-epoch seed varies them
    # from epoch to epoch, and color_on_device draws the colour steps per image.
    kwargs.update(seed=shard_seed, seed_aug=shard_seed)
    it = RecordIter(mx.io.ImageRecordIter(**kwargs), n, int(batch_size), last_batch)
    it.device_augment = device_augment
    it.verified = verified
    return it


def _train_options(aug_options, shard_seed):
    """(ImageRecordIter's augmentation options, mean RGB, the device colour jitter or None) of
    :func:`get_train_iter`'s ``**aug_options``."""
    unknown = sorted(set(aug_options) - set(TRAIN_AUGMENT) - set(EXTRA_OPTIONS))
    if unknown:
        raise ConfigError('unknown augmentation option(s) %s; valid: %s' % (
            ', '.join(unknown), ', '.join(sorted(set(TRAIN_AUGMENT) | set(EXTRA_OPTIONS)))))
    options = dict(TRAIN_AUGMENT)
    options.update(aug_options)
    mean_rgb = options.pop('mean_rgb', MEAN_RGB)
    if not options.pop('color_on_device', False):
        return options, mean_rgb, None
    if options.get('dtype', 'float32') != 'float32':
        raise ConfigError('color_on_device needs the float32 output of the record iterator, '
                          'not dtype=%r' % (options['dtype'],))
    from .color import BatchColorJitter
    jitter = BatchColorJitter(mean_rgb, seed=shard_seed, **{k: options[k] for k in COLOR_OPTIONS})
    options.update({k: 0 for k in COLOR_OPTIONS})
    return options, mean_rgb, jitter


def get_val_iter(data_dir, batch_size, input_size=512, num_parts=1, part_index=0,
                 num_threads=None, resize=None, mean_rgb=MEAN_RGB, verify=DEFAULT_VERIFY):
    """Evaluation iterator over ``data_dir/val.rec``: shorter side -> ``resize`` (default
    ``input_size``), centre crop ``input_size``, mean subtraction; in file order, every image of
    the shard exactly once once the last batch's ``pad`` rows are dropped. ``verify`` as for
    :func:`get_train_iter` (val.rec/.idx; ``'full'``: the CRC32 of this shard's records).
    :func:`~tasn_gluon.data.preprocess.val_preprocess` computes the same for one decoded image
    (bit for bit: tests/test_data_preprocess.py)."""
    check_verify_level(verify)
    _check_sizes(batch_size, input_size)
    info = read_dataset_info(data_dir)
    n = _check_shard(info['num_val'], num_parts, part_index, 'val')
    kwargs = _base_options(data_dir, 'val', batch_size, input_size, num_parts, part_index,
                           num_threads, mean_rgb)
    if resize is not None:
        if resize < input_size:
            raise ConfigError('resize (%d) must be >= --input-size (%d)' % (resize, input_size))
        kwargs['resize'] = int(resize)
    kwargs.update(rand_crop=False, rand_mirror=False, shuffle=False, round_batch=False)
    verified = check_split(data_dir, 'val', info, verify, num_parts, part_index)
    it = RecordIter(mx.io.ImageRecordIter(**kwargs), n, int(batch_size), 'keep')
    it.verified = verified
    return it
