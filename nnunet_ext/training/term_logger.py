"""nnU-Net's per-epoch logger, extended with a method's loss terms and its state (DESIGN.md §5).

:class:`TermLogger` replaces the ``LocalLogger`` inside nnU-Net's ``MetaLogger`` (W&B and the other loggers stay
nnU-Net's). It

* registers the method's terms, so nnU-Net's ``logger.log(key, …)`` accepts them (one value per epoch; an epoch in
  which a method did not compute a term logs NaN, so every list keeps one entry per epoch and nnU-Net's
  ``progress.png``, which counts epochs by the shortest list, still draws);
* draws them as an extra panel of ``progress.png`` (:func:`nnunet_ext.progress.append_terms_panel`);
* carries the method state (teacher, step counter, …) in its checkpoint. nnU-Net writes
  ``checkpoint['logging'] = logger.get_checkpoint()`` in the same ``torch.save`` as the network weights, so the
  state is written in that one write — no checkpoint without it can exist on disk — and comes back through
  ``load_checkpoint`` before the trainer restores it.
"""
from typing import Any, Callable, Dict, Optional, Sequence

from nnunetv2.training.logging.nnunet_logger import LocalLogger

from nnunet_ext.progress import append_terms_panel

METHOD_STATE_KEY = "nnunet_ext_state"
"""Key of the method state inside ``checkpoint['logging']`` (checkpoints written before the multi-stream base
carry it as a top-level key instead)."""


def checkpoint_method_state(checkpoint: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The method state of a loaded checkpoint (in ``checkpoint['logging']``, or the top-level key of checkpoints
    written before the multi-stream base), ``None`` if it has none."""
    state = checkpoint.get("logging", {}).get(METHOD_STATE_KEY)
    return checkpoint.get(METHOD_STATE_KEY) if state is None else state


class TermLogger(LocalLogger):
    """``LocalLogger`` plus the keys ``terms`` and the method state that ``state_source()`` returns (``None``:
    the method has none)."""

    def __init__(self, terms: Sequence[str], state_source: Callable[[], Optional[Dict[str, Any]]],
                 verbose: bool = False) -> None:
        super().__init__(verbose)
        self.terms = tuple(terms)
        self.state_source = state_source
        self.loaded_state: Optional[Dict[str, Any]] = None
        """The method state of the checkpoint loaded last (``None`` if it had none)."""
        self._register_terms()

    def _register_terms(self) -> None:
        """Add the lists of terms the log lacks, NaN for the epochs already logged (a checkpoint written before a
        term existed)."""
        epochs = len(self.my_fantastic_logging["train_losses"])
        for key in self.terms:
            self.my_fantastic_logging.setdefault(key, [float("nan")] * epochs)

    def get_checkpoint(self) -> Dict[str, Any]:
        state = self.state_source()
        return self.my_fantastic_logging if state is None else {**self.my_fantastic_logging, METHOD_STATE_KEY: state}

    def load_checkpoint(self, checkpoint: Dict[str, Any]) -> None:
        checkpoint = dict(checkpoint)
        self.loaded_state = checkpoint.pop(METHOD_STATE_KEY, None)
        super().load_checkpoint(checkpoint)
        self._register_terms()

    def plot_progress_png(self, output_folder: str) -> None:
        """nnU-Net's figure, then the method terms as one more panel below it."""
        super().plot_progress_png(output_folder)
        append_terms_panel(output_folder, self.my_fantastic_logging, self.terms)
