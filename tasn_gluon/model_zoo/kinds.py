"""What every kind of model answers, so that training, validation, prediction and the pictures
ask the model instead of testing its name: TASN, the baseline and an exported inference graph.
"""

__all__ = ['ModelKind', 'DISTINCT_MAPS']

# the name of validation's extra output of TASN: the number of distinct attention maps per image
DISTINCT_MAPS = 'distinct_maps'


class ModelKind:
    """The questions every kind of model answers (a mixin of the model's block).

    Attributes
    ----------
    method : str
        What was trained: ``'tasn'`` or ``'baseline'``.
    has_attention : bool
        Whether the model has attention maps to draw (``explain()``).
    validation_outputs : tuple of str
        The names of the outputs of :meth:`validation_net`, in order: heads (scored as
        accuracies) and, for TASN, :data:`DISTINCT_MAPS`.
    reported_head : str
        The head whose accuracy is the model's reported accuracy (TASN: ``master_aux``, the
        shared fc on the structure-preserved image).
    """
    method = None
    has_attention = False
    validation_outputs = ()
    reported_head = None

    def reported(self, outputs):
        """The reported logits among the outputs of a training-mode forward."""
        raise NotImplementedError

    def inference_net(self):
        """The block whose one output is the reported logits (prediction, export)."""
        return self

    def validation_net(self):
        """The block whose outputs are :attr:`validation_outputs`."""
        return self
