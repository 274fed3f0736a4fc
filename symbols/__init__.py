"""The Symbol-API side of tasn-gluon: ``symbols.export`` (a trained checkpoint -> the inference
graph NAME-symbol.json + NAME-0000.params) and ``symbols.module_scorer`` (scoring that graph with
``mx.mod.Module``). Loaders for original-format (Symbol-named) checkpoints live in
``tasn_gluon.convert``."""
