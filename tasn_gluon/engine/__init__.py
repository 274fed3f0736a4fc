"""Training and evaluation: the run configuration and recipes, the builders of a run's network,
objective and data, the training loop, checkpoints, metrics and evaluation.

``tools/train.py`` and ``tools/eval.py`` are thin command lines over this package; the reports
(``tasn_gluon.reports``: comparison, pictures, the demo) sit above it.
"""
from .devices import DeviceError, get_contexts, parse_gpus, per_device_batch_size
from .config import RECIPES, RunConfig, lr_at_epoch, lr_schedule, resolve_config
from .checkpoint import (CheckpointError, atomic_write, find_checkpoint, load_checkpoint,
                         save_checkpoint)
from .metrics import CSV_COLUMNS, plot_curves, read_metrics_csv, write_metrics_csv
from .builders import build_loss, build_net
from .evaluation import (EvaluationError, LoadedModel, evaluate_checkpoint, load_model,
                         validate, write_result_json)
from .training import TrainingDiverged, prepare, run, train, train_step
from .prediction import Prediction, PredictionResults, Predictor, Skipped
from .precision import AMPError, enable_amp

__all__ = ['DeviceError', 'get_contexts', 'parse_gpus', 'per_device_batch_size', 'RECIPES',
           'RunConfig', 'lr_at_epoch', 'lr_schedule', 'resolve_config', 'CheckpointError',
           'atomic_write', 'find_checkpoint', 'load_checkpoint', 'save_checkpoint', 'CSV_COLUMNS',
           'plot_curves', 'read_metrics_csv', 'write_metrics_csv', 'build_loss', 'build_net',
           'EvaluationError', 'LoadedModel', 'evaluate_checkpoint', 'load_model', 'validate',
           'write_result_json', 'TrainingDiverged', 'prepare', 'run', 'train', 'train_step',
           'Prediction', 'PredictionResults', 'Predictor', 'Skipped', 'AMPError', 'enable_amp']
