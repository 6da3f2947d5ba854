"""Loss and metric curves written to a PNG while training runs."""

import keras

from kerasrecipes.callbacks.base import ConfigurableCallback
from kerasrecipes.callbacks.phases import phase_marks
from kerasrecipes.plots import save_figure

GROUP_RATES = "lr/*"


@keras.saving.register_keras_serializable(package="kerasrecipes")
class TrainingCurves(ConfigurableCallback):
    """After every epoch, redraw the training and validation curves into `path` (PNG).

    One panel per quantity (loss, then each metric, then the learning rate
    when it is logged, on a linear axis so a rate of 0 shows), training
    solid and validation dashed, epochs counted from 1; NaN values leave gaps. Phase changes (`kr.callbacks.mark_phase`, recorded by
    `UnfreezeBackbone` or by a script between two `fit` calls) are drawn as vertical lines with
    their labels. One instance can follow several `fit` calls on the same
    model (e.g. head phase, then fine-tuning with `initial_epoch`): epochs are
    keyed by number, so a resumed run overwrites rather than duplicates.

    Keras' `History` keeps the numbers; this only draws them, since Keras has
    no callback that plots.

    Args:
        path: the PNG file to write.
        metrics: optional list of the logged names to draw (default: all).
        title: optional figure title.
    """

    def __init__(self, path="curves.png", metrics=None, title=None):
        super().__init__()
        self.path = str(path)
        self.metrics = list(metrics) if metrics else None
        self.title = title
        self.epochs = {}

    def get_config(self):
        return {"path": self.path, "metrics": self.metrics, "title": self.title}

    def on_epoch_end(self, epoch, logs=None):
        self.epochs[int(epoch)] = {k: float(v) for k, v in (logs or {}).items() if _is_number(v)}
        self.draw()

    def quantities(self):
        """The panels: loss first, then the metrics, then the learning rates.

        The per-group rates `lr/<group>` share one panel, `"lr/*"`, which
        replaces `learning_rate` (the head's rate, also `lr/head`).
        """
        names = []
        for logs in self.epochs.values():
            for name in logs:
                base = name[4:] if name.startswith("val_") else name
                base = GROUP_RATES if base.startswith("lr/") else base
                if base not in names and (self.metrics is None or base in self.metrics):
                    names.append(base)
        if GROUP_RATES in names and "learning_rate" in names:
            names.remove("learning_rate")
        return sorted(names, key=lambda n: (n != "loss", "learning_rate" in n or n == GROUP_RATES))

    def _series(self, name, epochs):
        """`(label, style, points)` for each line of the panel `name`."""
        if name == GROUP_RATES:
            keys = sorted({k for e in epochs for k in self.epochs[e] if k.startswith("lr/")})
            return [(k[3:], "-", self._points(k, epochs)) for k in keys]
        return [
            ("training", "-", self._points(name, epochs)),
            ("validation", "--", self._points(f"val_{name}", epochs)),
        ]

    def _points(self, key, epochs):
        return [(e + 1, self.epochs[e][key]) for e in epochs if key in self.epochs[e]]

    def draw(self, path=None, marks=None):
        """Writes the figure to `path` (default: `self.path`); `marks` overrides the phase marks
        (`{epoch: label}`, default `kr.callbacks.phase_marks(model)`)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = self.quantities()
        if not names:
            return None
        epochs = sorted(self.epochs)
        if marks is None:
            marks = phase_marks(self.model) if self.model is not None else {}
        figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
        for axis, name in zip(axes[0], names):
            series = self._series(name, epochs)
            for label, style, points in series[:8]:
                if points:
                    xs, ys = zip(*points)
                    axis.plot(xs, ys, style, marker="o", markersize=3, label=label)
            _draw_phase_marks(axis, marks, epochs)
            if epochs:
                axis.set_xlim(min(epochs) + 0.5, max(epochs) + 1.5)
            # A linear axis for the rates too: a log one would drop the rate 0 a cosine ends at.
            axis.set_title("learning rate by group" if name == GROUP_RATES else name)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        if self.title:
            figure.suptitle(self.title)
        figure.tight_layout()
        return save_figure(figure, path or self.path)


def _draw_phase_marks(axis, marks, epochs):
    """A dotted line before each phase's first epoch, its label boxed at the top left of it."""
    for epoch, label in marks.items():
        if epoch > min(epochs, default=0):
            axis.axvline(epoch + 0.5, color="grey", linestyle=":")
        axis.annotate(
            label,
            (epoch + 0.6, 0.98),
            xycoords=("data", "axes fraction"),
            va="top",
            ha="left",
            fontsize=7,
            color="dimgrey",
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none"},
        )


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
