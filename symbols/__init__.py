"""The Symbol-API side of tasn-gluon (installed as the package ``symbols``, this folder):
``export`` (a trained checkpoint -> the inference graph NAME-symbol.json + NAME-0000.params +
NAME-info.json), ``module_scorer`` (scoring that graph with ``mx.mod.Module``) and
``official_checkpoint_params.tsv`` (every parameter of the official graph, names and shapes).
Loaders of original-format checkpoints live in ``tasn_gluon.convert`` and
``tasn_gluon.model_zoo.weights``."""
import os

TSV_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        'official_checkpoint_params.tsv')
