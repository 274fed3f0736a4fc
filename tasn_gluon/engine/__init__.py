"""Training, evaluation, checkpoints, metrics, the published-table comparison and the pictures.

``tools/train.py``, ``tools/eval.py``, ``tools/compare.py``, ``tools/visualize.py`` and
``tools/demo.py`` are thin command lines over this package.
"""
from .devices import DeviceError, get_contexts, parse_gpus, per_device_batch_size
from .recipes import RECIPES, lr_at_epoch, resolve_config
from .checkpoint import (CheckpointError, atomic_write, find_checkpoint, load_checkpoint,
                         save_checkpoint)
from .metrics import CSV_COLUMNS, HEADS, plot_curves, read_metrics_csv, write_metrics_csv
from .evaluation import EvaluationError, evaluate_checkpoint, validate, write_result_json
from .training import TrainingDiverged, build_loss, build_net, run, train, train_step

__all__ = ['DeviceError', 'get_contexts', 'parse_gpus', 'per_device_batch_size', 'RECIPES',
           'lr_at_epoch', 'resolve_config', 'CheckpointError', 'atomic_write', 'find_checkpoint',
           'load_checkpoint', 'save_checkpoint', 'CSV_COLUMNS', 'HEADS', 'plot_curves',
           'read_metrics_csv', 'write_metrics_csv', 'EvaluationError', 'evaluate_checkpoint',
           'validate', 'write_result_json', 'TrainingDiverged', 'build_loss', 'build_net', 'run',
           'train', 'train_step']
