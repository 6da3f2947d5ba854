"""The learning-rate range test as a Keras callback."""

import math

import keras
import numpy as np
from keras import ops

from kerasrecipes import _compat
from kerasrecipes.callbacks.base import ConfigurableCallback, strategy_scope
from kerasrecipes.optimizers.decay import _innermost, _multiplier_wrapper


@keras.saving.register_keras_serializable(package="kerasrecipes")
class LRFinder(ConfigurableCallback):
    """Sweep the learning rate exponentially over a few hundred steps and suggest one.

    Smith 2017, "Cyclical Learning Rates for Training Neural Networks"
    (arXiv:1506.01186), Sec. 3.3, in the form of fastai's `lr_find`: the rate
    goes from `start_lr` to `end_lr` geometrically over `num_steps` batches,
    the loss is smoothed with a debiased exponential average, the sweep stops
    when the smoothed loss exceeds `divergence` times its minimum (or is not
    finite), and afterwards the model's weights, the optimizer's state and its
    learning rate (or schedule) are put back as they were.

    With per-layer multipliers (`kr.optimizers.with_lr_multipliers`) the sweep
    moves the base rate and every group follows with its multiplier, which is
    what fine-tuning needs. It runs under `MirroredStrategy` like any callback.

    Use it with `fit` on enough batches; it stops training itself:

        finder = kr.callbacks.LRFinder(num_steps=200, plot_path="lr_find.png")
        model.fit(train_ds, epochs=100, callbacks=[finder], verbose=0)
        finder.suggested_lr

    Attributes after the run: `learning_rates`, `losses` (raw),
    `smoothed_losses`, `suggested_lr` (the steepest descent of the smoothed
    loss before its minimum, the first tenth of the sweep skipped; a tenth of
    the minimum's rate when the minimum comes that early), `min_loss_lr`.

    Args:
        start_lr, end_lr: the range of the base rate.
        num_steps: sweep length in batches.
        smoothing: the exponential average's beta.
        divergence: stop when the smoothed loss exceeds this times its minimum.
        plot_path: optional PNG path for loss against rate (log scale).
    """

    def __init__(
        self,
        start_lr=1e-7,
        end_lr=10.0,
        num_steps=200,
        smoothing=0.98,
        divergence=4.0,
        plot_path=None,
    ):
        super().__init__()
        if not 0 < start_lr < end_lr:
            raise ValueError(f"LRFinder: need 0 < start_lr < end_lr, got {start_lr}, {end_lr}.")
        if num_steps < 2:
            raise ValueError(f"LRFinder: num_steps must be at least 2, got {num_steps}.")
        self.start_lr = float(start_lr)
        self.end_lr = float(end_lr)
        self.num_steps = int(num_steps)
        self.smoothing = float(smoothing)
        self.divergence = float(divergence)
        self.plot_path = plot_path
        self.learning_rates, self.losses, self.smoothed_losses = [], [], []
        self.suggested_lr = self.min_loss_lr = None

    def get_config(self):
        return {
            "start_lr": self.start_lr,
            "end_lr": self.end_lr,
            "num_steps": self.num_steps,
            "smoothing": self.smoothing,
            "divergence": self.divergence,
            "plot_path": self.plot_path,
        }

    def _rate_at(self, step):
        return self.start_lr * (self.end_lr / self.start_lr) ** (step / (self.num_steps - 1))

    def on_train_begin(self, logs=None):
        model = self.model
        optimizer = model.optimizer
        with strategy_scope(model):
            if not optimizer.built:
                optimizer.build(model.trainable_variables)
            self._rate = keras.Variable(
                self.start_lr, dtype="float32", trainable=False, name="lr_finder_rate"
            )
        self._saved_weights = [ops.convert_to_numpy(v) for v in model.weights]
        self._saved_optimizer = [ops.convert_to_numpy(v) for v in optimizer.variables]
        # Drive the innermost optimizer's rate through a callable, which works whether it had a
        # float rate or a schedule; the multipliers' rescaling of a schedule is paused.
        self._inner = _innermost(optimizer)
        self._saved_rate = _compat.learning_rate_source(self._inner)
        _compat.set_learning_rate_source(self._inner, lambda: self._rate)
        self._wrapper = _multiplier_wrapper(optimizer)
        if self._wrapper is not None:
            self._saved_scale = float(ops.convert_to_numpy(self._wrapper._lr_scale))
            self._wrapper._lr_scale.assign(1.0)
        self.learning_rates, self.losses, self.smoothed_losses = [], [], []
        self._average, self._best, self._step = 0.0, math.inf, 0
        model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        self._rate.assign(self._rate_at(self._step))
        # Per-batch losses: Keras logs the running mean over the epoch.
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        rate = self._rate_at(self._step)
        self._step += 1
        self.learning_rates.append(rate)
        self.losses.append(loss)
        self._average = self.smoothing * self._average + (1 - self.smoothing) * loss
        smoothed = self._average / (1 - self.smoothing**self._step)
        self.smoothed_losses.append(smoothed)
        if math.isfinite(smoothed):
            self._best = min(self._best, smoothed)
        if (
            not math.isfinite(smoothed)
            or smoothed > self.divergence * self._best
            or self._step >= self.num_steps
        ):
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        model = self.model
        for variable, value in zip(model.weights, self._saved_weights):
            variable.assign(value)
        for variable, value in zip(model.optimizer.variables, self._saved_optimizer):
            variable.assign(value)
        _compat.set_learning_rate_source(self._inner, self._saved_rate)
        if self._wrapper is not None:
            self._wrapper._lr_scale.assign(self._saved_scale)
        model.train_function = None
        self._suggest()
        if self.plot_path:
            self.plot(self.plot_path)

    def _suggest(self):
        rates = np.array(self.learning_rates)
        smoothed = np.array(self.smoothed_losses)
        finite = np.isfinite(smoothed)
        if finite.sum() < 3:
            return
        rates, smoothed = rates[finite], smoothed[finite]
        lowest = int(np.argmin(smoothed))
        self.min_loss_lr = float(rates[lowest])
        # The first tenth is skipped, as fastai does: the debiased average is still noisy there.
        skip = max(1, len(rates) // 10)
        if lowest - skip < 2:
            self.suggested_lr = self.min_loss_lr / 10
            return
        slopes = np.gradient(smoothed[skip : lowest + 1], np.log(rates[skip : lowest + 1]))
        self.suggested_lr = float(rates[skip + int(np.argmin(slopes))])

    def plot(self, path):
        """Save the loss against the learning rate, with the suggestion marked."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(6, 4))
        axis.plot(self.learning_rates, self.losses, alpha=0.3, label="loss")
        axis.plot(self.learning_rates, self.smoothed_losses, label="smoothed")
        if self.suggested_lr:
            axis.axvline(
                self.suggested_lr,
                color="red",
                linestyle="--",
                label=f"suggested {self.suggested_lr:.2g}",
            )
        finite = [v for v in self.smoothed_losses if math.isfinite(v)]
        if finite:
            axis.set_ylim(min(finite) * 0.9, min(max(finite), 4 * min(finite)) * 1.1)
        axis.set_xscale("log")
        axis.set_xlabel("base learning rate")
        axis.set_ylabel("training loss")
        axis.legend()
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)
        return path
