"""Loss and metric curves written to a PNG while training runs."""

import keras

from kerasrecipes.callbacks.base import ConfigurableCallback
from kerasrecipes.callbacks.phases import phase_marks


@keras.saving.register_keras_serializable(package="kerasrecipes")
class TrainingCurves(ConfigurableCallback):
    """After every epoch, redraw the training and validation curves into `path` (PNG).

    One panel per quantity (loss, then each metric, then the learning rate
    when it is logged), training solid and validation dashed, epochs counted
    from 1. Phase changes (`kr.callbacks.mark_phase`, recorded by
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
        names = []
        for logs in self.epochs.values():
            for name in logs:
                base = name[4:] if name.startswith("val_") else name
                if base not in names and (self.metrics is None or base in self.metrics):
                    names.append(base)
        # Loss first, rates last.
        return sorted(names, key=lambda n: (n != "loss", "learning_rate" in n or "lr/" in n))

    def draw(self, path=None):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = self.quantities()
        if not names:
            return None
        epochs = sorted(self.epochs)
        marks = phase_marks(self.model) if self.model is not None else {}
        figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.4), squeeze=False)
        for axis, name in zip(axes[0], names):
            for key, style in ((name, "-"), (f"val_{name}", "--")):
                points = [(e + 1, self.epochs[e][key]) for e in epochs if key in self.epochs[e]]
                if points:
                    xs, ys = zip(*points)
                    axis.plot(
                        xs,
                        ys,
                        style,
                        marker="o",
                        markersize=3,
                        label="validation" if key.startswith("val_") else "training",
                    )
            for epoch, label in marks.items():
                axis.axvline(epoch + 0.5, color="grey", linestyle=":")
                axis.annotate(
                    label,
                    (epoch + 0.5, 1.0),
                    xycoords=("data", "axes fraction"),
                    rotation=90,
                    va="top",
                    ha="right",
                    fontsize=7,
                    color="grey",
                )
            if "learning_rate" in name or name.startswith("lr/"):
                axis.set_yscale("log")
            axis.set_title(name)
            axis.set_xlabel("epoch")
            axis.grid(alpha=0.3)
            axis.legend(fontsize=7)
        if self.title:
            figure.suptitle(self.title)
        figure.tight_layout()
        figure.savefig(path or self.path, dpi=100)
        plt.close(figure)
        return path or self.path


def _is_number(value):
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True
