"""Phase marks: where a run changes what it trains, for curves and histories."""

import weakref

_MARKS = weakref.WeakKeyDictionary()


def mark_phase(model, epoch, label):
    """Record that a new phase (e.g. "unfreeze backbone") starts at `epoch` (0-based) of `model`.

    `TrainingCurves` draws a line there; `UnfreezeBackbone` marks the epochs
    it unfreezes at. Marking an epoch again replaces its label.
    """
    marks = _MARKS.setdefault(model, {})
    marks[int(epoch)] = str(label)


def phase_marks(model):
    """`{epoch: label}` recorded for `model`, in epoch order."""
    return dict(sorted(_MARKS.get(model, {}).items()))
