"""Prediction: the top-k classes of images, with their names and probabilities.

::

    from tasn_gluon.engine.prediction import Predictor
    predictor = Predictor.from_checkpoint('runs/cub')      # or export/cub-symbol.json
    results = predictor.predict(['bird.jpg', 'photos/', 'more/*.png'], top_k=5)
    for p in results.predictions:
        print(p.source, p.names[0], p.probabilities[0])
    for s in results.skipped:
        print('skipped', s.source, s.reason)

A model is whatever :func:`~tasn_gluon.engine.models.load_model` loads: a run directory (a
converted official checkpoint is one), an ``epoch-NNNN.params`` file, or an exported graph.
The logits are those it reports (``LoadedModel.inference_net``: TASN's "master_aux" head, the
baseline, the exported graph's one output); probabilities are their softmax (computed in
float64). Image files and decoded images get the validation preprocessing, bit for bit as
``get_val_iter`` (:mod:`tasn_gluon.data.preprocess`), so a file predicts exactly as its record
is evaluated. A file that cannot be used is skipped with its reason; the others are still
classified.

Models with the legacy (official) sampler arithmetic, converted official checkpoints among
them, reproduce the official kernel's batch defect (spec section 5, ``C[-1]``): the first output
row and column of an image's zoomed sample depend on the image before it in the same forward
pass, so its prediction does too, slightly (as in the evaluation, which batches the same way).
``batch_size=1`` makes every image independent (each the first of its pass).
"""
import dataclasses
import logging
import glob
import os
from typing import List, Optional

import mxnet as mx
import numpy as np

from ..data import is_packed, read_dataset_info
from ..data.folders import IMAGE_EXTENSIONS, image_files
from ..data.preprocess import BadImage, load_val_image, val_preprocess
from ..errors import InputError, TrainingDiverged
from ..files import require_file
from ..logs import progress_bar
from .models import check_classes, load_model

__all__ = ['DEFAULT_TOP_K', 'DEFAULT_BATCH_SIZE', 'Prediction', 'Skipped', 'PredictionResults',
           'Predictor', 'expand_paths', 'read_class_names', 'softmax']

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 5
DEFAULT_BATCH_SIZE = 16


@dataclasses.dataclass
class Prediction:
    """The top-k classes of one image, most probable first. ``source``: the file, or
    ``array[i]`` / ``image[i]`` for arrays given in memory; ``names`` entries are None when the
    model records no class names; ``picture``: set by whoever draws one."""
    source: str
    classes: List[int]
    names: List[Optional[str]]
    probabilities: List[float]
    picture: Optional[str] = None


@dataclasses.dataclass
class Skipped:
    """An input that was not classified, and why."""
    source: str
    reason: str


@dataclasses.dataclass
class PredictionResults:
    predictions: List[Prediction]
    skipped: List[Skipped]


def softmax(logits):
    """Row-wise softmax in float64 of (N, C) logits."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def expand_paths(items, seen=None):
    """Files, folders (their image files, recursively, by extension) and glob patterns
    (``**`` included) -> ``(paths, skipped)``: the files in order, each once, and a
    :class:`Skipped` for a pattern that matches nothing or a folder without images. A path
    that does not exist is kept: reading it gives its reason. ``seen``: a set of the
    normalised paths already taken (updated), for calls that continue one list."""
    paths, skipped = [], []
    seen = set() if seen is None else seen

    def add(path):
        key = os.path.normpath(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            paths.append(path)

    def add_folder(folder, given):
        files = image_files(folder)
        if not files:
            skipped.append(Skipped(given, 'a folder without image files (%s)'
                                   % ' '.join(IMAGE_EXTENSIONS)))
        for f in files:
            add(f)

    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            add_folder(item, item)
        elif glob.has_magic(item) and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                skipped.append(Skipped(item, 'no file matches this pattern'))
            for m in matches:
                if os.path.isdir(m):
                    add_folder(m, m)
                else:
                    add(m)
        else:
            add(item)
    return paths, skipped


def read_class_names(path):
    """Class names from a packed dataset folder (its dataset.json) or a text file with one name
    per line (blank lines ignored)."""
    if os.path.isdir(path) and is_packed(path):
        names = read_dataset_info(path, check_records=False).get('class_names')
        if not names:
            raise InputError('--class-names %s: its dataset.json records no class names' % path)
        return list(names)
    if os.path.isdir(path):
        raise InputError('--class-names %s is a folder without dataset.json: give a packed '
                         'dataset folder or a text file, one name per line' % path)
    with open(require_file(path, '--class-names'), encoding='utf-8', errors='replace') as f:
        names = [line.strip() for line in f if line.strip()]
    if not names:
        raise InputError('--class-names %s holds no class names (one per line)' % path)
    return names


class Predictor:
    """A loaded model that classifies images; see the module docstring.

    Parameters
    ----------
    model : LoadedModel
        As :func:`~tasn_gluon.engine.models.load_model` returns it.
    ctx : list of Context
        Where the model lives; a batch is split over them.
    class_names : list of str, optional
        Names for a model that records none (a converted official checkpoint); a model's own
        names must agree with them.
    """

    def __init__(self, model, ctx, class_names=None):
        self.model = model
        self.ctx = list(ctx)
        self.net = model.inference_net
        self.net.hybridize(static_alloc=True)
        self.num_classes = model.num_classes
        self.class_names = list(model.class_names) if model.class_names else None
        if class_names is not None:
            self._set_names(list(class_names))

    @classmethod
    def from_checkpoint(cls, path, ctx=None, overrides=None, class_names=None, amp=False,
                        last_good=False, input_size=None):
        """Loads ``path`` (run directory, ``epoch-NNNN.params``, exported ``NAME-symbol.json``
        or its prefix) on ``ctx`` (a Context or a list; default CPU). ``overrides``: network
        settings for a ``.params`` file without a run configuration beside it; ``amp``,
        ``last_good``, ``input_size``: see ``models.load_model``."""
        ctx = ctx or [mx.cpu()]
        ctx = list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
        return cls(load_model(path, ctx, overrides, amp=amp, last_good=last_good,
                              input_size=input_size), ctx, class_names)

    @property
    def input_size(self):
        return self.model.input_size

    @property
    def legacy_sampler(self):
        """Whether the model samples with the official arithmetic (see the module docstring)."""
        return bool(self.model.cfg.legacy_sampler)

    @property
    def kind(self):
        """'tasn', 'baseline' or 'exported' (see ``LoadedModel``)."""
        return self.model.kind

    def _set_names(self, names):
        check_classes(self.model, len(names), names, 'the class list given')
        self.class_names = names

    def logits(self, x):
        """The reported logits (N, C) float32 of a preprocessed batch (N, 3, S, S)."""
        x = mx.nd.array(x, ctx=self.ctx[0]) if not isinstance(x, mx.nd.NDArray) else x
        ctx = self.ctx[:x.shape[0]]
        parts = mx.gluon.utils.split_and_load(x, ctx, even_split=False)
        out = np.concatenate([self.net(p).asnumpy() for p in parts], axis=0)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:    # a graph of another kind: a bug
            raise RuntimeError('the model gave logits of shape %s for %d images'
                               % (out.shape, x.shape[0]))
        if not np.all(np.isfinite(out)):
            raise TrainingDiverged('non-finite logits: the model has diverged or its parameters '
                                   'are corrupt (%s)' % self.model.source['checkpoint'])
        if self.num_classes is None:
            self.num_classes = out.shape[1]
        return out

    def _jobs(self, inputs):
        """[(source, load)] for every input in order, and the patterns/folders skipped."""
        size = self.input_size
        if isinstance(inputs, (str, os.PathLike)):
            inputs = [inputs]
        if isinstance(inputs, (np.ndarray, mx.nd.NDArray)):
            if inputs.ndim != 4 or tuple(inputs.shape[1:]) != (3, size, size):
                raise InputError('an array of preprocessed images must be (N, 3, %d, %d), got '
                                 '%s (decoded images: a list of (H, W, 3) uint8 arrays)'
                                 % (size, size, tuple(inputs.shape)))
            arr = inputs.asnumpy() if isinstance(inputs, mx.nd.NDArray) else inputs
            return [('array[%d]' % i, lambda i=i: np.asarray(arr[i], np.float32))
                    for i in range(len(arr))], []
        jobs, skipped, seen = [], [], set()
        for i, item in enumerate(inputs):
            if isinstance(item, (str, os.PathLike)):
                files, missing = expand_paths([item], seen)
                skipped += missing
                jobs += [(f, lambda f=f: load_val_image(f, size)) for f in files]
            elif isinstance(item, (np.ndarray, mx.nd.NDArray)) and item.ndim == 3:
                jobs.append(('image[%d]' % i, lambda img=item: val_preprocess(img, size)))
            else:
                raise InputError('input %d is a %s: give image paths, decoded (H, W, 3) uint8 '
                                 'images, or one (N, 3, %d, %d) array' % (i, type(item).__name__,
                                                                         size, size))
        return jobs, skipped

    def predict(self, inputs, top_k=DEFAULT_TOP_K, batch_size=DEFAULT_BATCH_SIZE,
                progress=None, on_batch=None):
        """Classifies ``inputs``: image paths, folders or glob patterns, and decoded (H, W, 3)
        uint8 RGB images (``mx.image.imdecode``), in a list (or one path); or one (N, 3, S, S)
        float array already preprocessed (mean-subtracted, S = ``input_size``).

        ``top_k`` classes per image (at most the number of classes), ``batch_size`` images per
        forward pass, ``progress`` a bar on stderr (None: when stderr is a terminal),
        ``on_batch(x, predictions)`` called after each batch with its preprocessed images (an
        NDArray on the first context) and their :class:`Prediction` objects.
        Returns :class:`PredictionResults`: the predictions in input order, the skipped inputs
        with their reasons.
        """
        top_k, batch_size = int(top_k), int(batch_size)
        if top_k < 1:
            raise InputError('top_k must be >= 1, not %d' % top_k)
        if batch_size < 1:
            raise InputError('batch_size must be >= 1, not %d' % batch_size)
        jobs, skipped = self._jobs(inputs)
        if self.legacy_sampler and batch_size > 1 and len(jobs) > 1:
            logger.warning('%s uses the legacy (official) sampler arithmetic: an image\'s '
                           'prediction depends slightly on the image before it in its batch '
                           '(the official kernel\'s C[-1]); batch size 1 makes each image '
                           'independent', self.model.source['checkpoint'])
        results = PredictionResults([], skipped)
        bar = progress_bar(progress, len(jobs), 'predict', 'img')
        pending = []
        try:
            for n, (source, load) in enumerate(jobs):
                try:
                    pending.append((source, load()))
                except BadImage as e:
                    results.skipped.append(Skipped(source, str(e)))
                if pending and (len(pending) == batch_size or n == len(jobs) - 1):
                    self._run_batch(pending, top_k, results, on_batch)
                    pending = []
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return results

    def _run_batch(self, pending, top_k, results, on_batch):
        x = mx.nd.array(np.stack([a for _, a in pending]), ctx=self.ctx[0])
        probs = softmax(self.logits(x))
        k = min(top_k, probs.shape[1])
        batch = []
        for (source, _), p in zip(pending, probs):
            order = np.argsort(-p, kind='stable')[:k]
            batch.append(Prediction(source, [int(c) for c in order],
                                    [self._name(int(c)) for c in order],
                                    [float(p[c]) for c in order]))
        results.predictions.extend(batch)
        if on_batch is not None:
            on_batch(x, batch)

    def _name(self, c):
        return self.class_names[c] if self.class_names and c < len(self.class_names) else None
