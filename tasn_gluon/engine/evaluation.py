"""Evaluating a saved model on a packed val set: the five accuracies (top-1, top-5), the KD
loss and the counts, as the eval JSON (``results``). The model is loaded by ``models.load_model``
and scored by ``validation.validate``; the data is checked to be the model's (classes) and
counted whole (every image once)."""
import os

from ..data import read_dataset_info
from ..errors import DatasetError
from . import builders, precision
from .models import check_classes, load_model
from .results import result_dict, write_result_json
from .validation import validate

__all__ = ['evaluate_checkpoint']


def evaluate_checkpoint(checkpoint, data_dir, ctx, batch_size=None, out=None, overrides=None,
                        num_threads=None, verify='full', amp=False, last_good=False,
                        input_size=None, dataset=None):
    """Evaluates a checkpoint on ``data_dir``'s val set (its record files checked first as
    ``verify`` says: 'full', 'headers' or 'none'); returns (and optionally writes) the eval JSON
    dict. ``amp``, ``last_good``, ``input_size``: see ``models.load_model``; the JSON's ``amp``
    is then the low-precision dtype, else None (float32), and ``trained_input_size`` the input
    size the model was trained at when another was asked for. ``dataset``: the dataset key the
    JSON records for compare.py (default: the run's)."""
    ds = read_dataset_info(data_dir)
    model = load_model(checkpoint, ctx, overrides, amp=amp, last_good=last_good,
                       input_size=input_size)
    check_classes(model, ds['num_classes'], ds['class_names'], data_dir)
    bs = int(batch_size or model.cfg.eval_batch_size or model.cfg.batch_size)
    bs = max(len(ctx), bs - bs % len(ctx))
    val_iter = builders.val_loader(model.cfg.replace(num_data_threads=num_threads,
                                                     verify_data=verify), data_dir, bs)
    exported = model.kind == 'exported'
    res = validate(model.net, val_iter, ctx,
                   loss_fn=None if exported else builders.build_loss(model.cfg),
                   temperature=model.cfg.temperature)
    if res['num_images'] != int(ds['num_val']):
        raise DatasetError('evaluated %d images but %s says the val set has %d'
                           % (res['num_images'], data_dir, int(ds['num_val'])))
    cfg = model.cfg
    result = result_dict(res, method=cfg.method, model_format='exported' if exported else
                         'checkpoint', net=cfg.net, dataset=dataset or cfg.dataset,
                         dataset_name=ds.get('name'), data_dir=os.path.abspath(data_dir),
                         num_classes=int(ds['num_classes']), num_train=ds.get('num_train'),
                         num_val=int(ds['num_val']), sample_size=cfg.sample_size,
                         input_size=cfg.input_size, trained_input_size=model.trained_input_size,
                         legacy_sampler=cfg.legacy_sampler, uniform_sampler=cfg.uniform_sampler,
                         kd_weight=cfg.kd_weight,
                         amp=precision.amp_dtype() if cfg.amp else None, **model.source)
    if out:
        write_result_json(out, result)
    return result
