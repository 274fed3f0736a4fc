"""Per-epoch metrics: the accuracy counters, ``metrics.csv`` and the curves PNG."""
import csv
import io
import math

import numpy as np

from ..losses import HEADS
from ..files import atomic_write, atomic_write_text

__all__ = ['CSV_COLUMNS', 'TopKCounter', 'write_metrics_csv', 'read_metrics_csv',
           'plot_curves', 'save_figure']

# metrics.csv: one row per epoch, the same columns for both methods (the baseline leaves the
# TASN-only cells empty). val_top1/val_top5 are the reported accuracy: master_aux for TASN, the
# only head for the baseline. val_distinct_maps: the mean number of distinct attention maps per
# val image (of 512; a collapse of the attention shows as a handful).
CSV_COLUMNS = (['epoch', 'lr', 'train_loss', 'train_top1', 'val_loss', 'val_top1', 'val_top5']
               + ['val_%s' % h for h in HEADS] + ['val_%s_top5' % h for h in HEADS]
               + ['val_kd_loss', 'val_distinct_maps', 'num_val_images', 'epoch_time_s',
                  'train_images_per_s'])


class TopKCounter:
    """Counts top-1 and top-5 hits of one head over exactly the images it is given."""

    def __init__(self):
        self.n = 0
        self.top1 = 0
        self.top5 = 0

    def update(self, logits, labels):
        """``logits`` (N, K) and ``labels`` (N,) as NumPy arrays."""
        logits = np.asarray(logits)
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if logits.shape[0] != labels.shape[0]:
            raise ValueError('%d predictions for %d labels' % (logits.shape[0], labels.shape[0]))
        if labels.size == 0:
            return
        k = min(5, logits.shape[1])
        top = np.argsort(-logits, axis=1, kind='stable')[:, :k]
        self.top1 += int((top[:, 0] == labels).sum())
        self.top5 += int((top == labels[:, None]).any(axis=1).sum())
        self.n += labels.size

    def get(self):
        if self.n == 0:
            return float('nan'), float('nan')
        return self.top1 / self.n, self.top5 / self.n


def _fmt(v):
    if v is None:
        return ''
    if isinstance(v, float):
        return '' if math.isnan(v) else '%.6g' % v
    return str(v)


def write_metrics_csv(path, rows):
    """Writes the whole history (a list of dicts) atomically; unknown keys are an error."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator='\n')
    w.writerow(CSV_COLUMNS)
    for row in rows:
        unknown = set(row) - set(CSV_COLUMNS)
        if unknown:
            raise KeyError('metrics row has columns not in metrics.csv: %s' % sorted(unknown))
        w.writerow([_fmt(row.get(c)) for c in CSV_COLUMNS])
    atomic_write_text(path, buf.getvalue())


def read_metrics_csv(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = []
    for r in rows:
        out.append({k: (float(v) if v not in ('', None) else None) for k, v in r.items()})
    return out


def save_figure(fig, path, dpi=80):
    """Writes a matplotlib figure as PNG atomically (a crash leaves the old file) and closes it."""
    import matplotlib.pyplot as plt
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format='png', dpi=dpi))
    finally:
        plt.close(fig)
    return path


def plot_curves(path, rows, title=None):
    """Loss, the five accuracies (or the baseline's one) and the learning rate per epoch."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def series(key):
        xs = [r['epoch'] for r in rows if r.get(key) is not None and not
              (isinstance(r.get(key), float) and math.isnan(r[key]))]
        ys = [r[key] for r in rows if r.get(key) is not None and not
              (isinstance(r.get(key), float) and math.isnan(r[key]))]
        return xs, ys

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    for key, label in (('train_loss', 'train loss'), ('val_loss', 'val loss'),
                       ('val_kd_loss', 'val KD loss')):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, marker='o', label=label)
    ax.set_xlabel('epoch'); ax.set_ylabel('loss'); ax.set_title('loss'); ax.legend()
    ax = axes[1]
    for key in ['val_%s' % h for h in HEADS] + ['train_top1']:
        xs, ys = series(key)
        if xs:
            ax.plot(xs, [100 * y for y in ys], marker='o', label=key.replace('val_', 'val '))
    if not any(series('val_%s' % h)[0] for h in HEADS):
        xs, ys = series('val_top1')
        if xs:
            ax.plot(xs, [100 * y for y in ys], marker='o', label='val top-1')
    ax.set_xlabel('epoch'); ax.set_ylabel('top-1 (%)'); ax.set_title('accuracy'); ax.legend()
    ax = axes[2]
    xs, ys = series('lr')
    if xs:
        ax.step(xs, ys, where='post')
    ax.set_xlabel('epoch'); ax.set_ylabel('learning rate'); ax.set_title('learning rate')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)
