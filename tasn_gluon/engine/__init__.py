"""Training and evaluation: the run configuration (``config``) and recipes (``recipes``), the
learning-rate schedule, the builders of a run's network, objective and data, the preparation
and the loop of a training run, the run folder's lock, checkpoints, saved models, validation,
evaluation and its results, prediction, metrics and mixed precision.

``tools/train.py`` and ``tools/eval.py`` are thin command lines over this package; the reports
(``tasn_gluon.reports``: comparison, pictures, the demo) sit above it.
"""
from .devices import DeviceError, get_contexts, parse_gpus, per_device_batch_size
from .config import RunConfig, read_saved_config, resolve_config
from .recipes import RECIPES
from .schedule import lr_at_epoch, lr_schedule
from .checkpoint import CheckpointError, find_checkpoint, load_checkpoint, save_checkpoint
from .metrics import CSV_COLUMNS, plot_curves, read_metrics_csv, write_metrics_csv
from .builders import build_loss, build_net
from .models import LoadedModel, check_classes, load_model
from .validation import validate
from .results import format_result, write_result_json
from .evaluation import evaluate_checkpoint
from .preparation import TrainingRun, prepare
from .training import TrainingDiverged, run, train, train_step
from .prediction import Prediction, PredictionResults, Predictor, Skipped
from .precision import AMPError, enable_amp

__all__ = ['DeviceError', 'get_contexts', 'parse_gpus', 'per_device_batch_size', 'RunConfig',
           'read_saved_config', 'RECIPES', 'resolve_config', 'lr_at_epoch', 'lr_schedule',
           'CheckpointError', 'find_checkpoint', 'load_checkpoint', 'save_checkpoint',
           'CSV_COLUMNS', 'plot_curves', 'read_metrics_csv', 'write_metrics_csv', 'build_loss',
           'build_net', 'LoadedModel', 'check_classes', 'load_model', 'validate',
           'format_result', 'write_result_json', 'evaluate_checkpoint', 'TrainingRun',
           'prepare', 'TrainingDiverged', 'run', 'train', 'train_step', 'Prediction',
           'PredictionResults', 'Predictor', 'Skipped', 'AMPError', 'enable_amp']
