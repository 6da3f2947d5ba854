"""Learning-rate schedules: warmup then cosine, warmup then steps, one-cycle, and batch scaling.

All are `keras.optimizers.schedules.LearningRateSchedule`s: pass them as an
optimizer's `learning_rate`, save them in `.keras` files. Steps are
optimizer steps (batches), not epochs.
"""

import math

import keras
from keras import ops


def scale_learning_rate(base_lr, global_batch_size, base_batch_size=256):
    """The linear scaling rule: the rate grows with the batch size.

    Goyal et al. 2017, "Accurate, Large Minibatch SGD" (arXiv:1706.02677),
    Sec. 2.1: "when the minibatch size is multiplied by k, multiply the
    learning rate by k". Use it when `MirroredStrategy` multiplies the global
    batch by the number of replicas; pair it with warmup for large k.

    >>> scale_learning_rate(0.1, global_batch_size=1024, base_batch_size=256)
    0.4
    """
    if global_batch_size <= 0 or base_batch_size <= 0:
        raise ValueError(
            f"scale_learning_rate: batch sizes must be positive, got "
            f"global_batch_size={global_batch_size}, base_batch_size={base_batch_size}."
        )
    return base_lr * global_batch_size / base_batch_size


def _check_steps(name, total_steps, warmup_steps):
    if total_steps <= 0:
        raise ValueError(f"{name}: total_steps must be positive, got {total_steps}.")
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"{name}: warmup_steps must be in [0, total_steps={total_steps}), got {warmup_steps}."
        )


@keras.saving.register_keras_serializable(package="kerasrecipes")
class WarmupCosine(keras.optimizers.schedules.CosineDecay):
    """Linear warmup from `warmup_start_lr` to `peak_lr`, then cosine decay to `final_lr`.

    Loshchilov & Hutter 2017, "SGDR" (arXiv:1608.03983) for the cosine, Goyal
    et al. 2017 for the warmup. Keras' `CosineDecay` implements both; this
    subclass only restates its arguments in the terms a training run is
    planned in: the whole run is `total_steps` long, warmup included.

    >>> schedule = WarmupCosine(peak_lr=0.1, total_steps=100, warmup_steps=10)
    >>> [round(float(schedule(step)), 4) for step in (0, 5, 10, 55, 100)]
    [0.0, 0.05, 0.1, 0.05, 0.0]
    """

    def __init__(
        self,
        peak_lr,
        total_steps,
        warmup_steps=0,
        final_lr=0.0,
        warmup_start_lr=0.0,
        name="warmup_cosine",
    ):
        _check_steps("WarmupCosine", total_steps, warmup_steps)
        self.peak_lr = float(peak_lr)
        self.total_steps = int(total_steps)
        self.final_lr = float(final_lr)
        self.warmup_start_lr = float(warmup_start_lr)
        super().__init__(
            initial_learning_rate=self.warmup_start_lr if warmup_steps else self.peak_lr,
            decay_steps=self.total_steps - int(warmup_steps),
            alpha=self.final_lr / self.peak_lr if self.peak_lr else 0.0,
            name=name,
            warmup_target=self.peak_lr if warmup_steps else None,
            warmup_steps=int(warmup_steps),
        )

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "final_lr": self.final_lr,
            "warmup_start_lr": self.warmup_start_lr,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kerasrecipes")
class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak_lr`, then multiply by `decay_factor` at each boundary.

    The step schedule of He et al. 2016 (ResNet, arXiv:1512.03385, Sec. 4.2:
    0.1, divided by 10 at 32k and 48k iterations) and of Goyal et al. 2017
    (5 warmup epochs, then /10 at epochs 30, 60, 80). Keras'
    `PiecewiseConstantDecay` has the steps but no warmup.

    Args:
        peak_lr: the rate after warmup.
        boundaries: increasing step numbers at which the rate is multiplied.
        decay_factor: the multiplier at each boundary.
        warmup_steps: linear warmup length (0 for none).
        warmup_start_lr: the rate at step 0 of the warmup.

    >>> schedule = WarmupStepDecay(0.1, boundaries=[30, 60], warmup_steps=10)
    >>> [round(float(schedule(step)), 4) for step in (0, 5, 10, 29, 30, 60)]
    [0.0, 0.05, 0.1, 0.1, 0.01, 0.001]
    """

    def __init__(
        self,
        peak_lr,
        boundaries,
        decay_factor=0.1,
        warmup_steps=0,
        warmup_start_lr=0.0,
        name="warmup_step_decay",
    ):
        boundaries = [int(b) for b in boundaries]
        if boundaries != sorted(boundaries) or len(set(boundaries)) != len(boundaries):
            raise ValueError(f"WarmupStepDecay: boundaries must increase, got {boundaries}.")
        if boundaries and boundaries[0] < warmup_steps:
            raise ValueError(
                f"WarmupStepDecay: the first boundary {boundaries[0]} falls inside "
                f"the warmup of {warmup_steps} steps."
            )
        self.peak_lr = float(peak_lr)
        self.boundaries = boundaries
        self.decay_factor = float(decay_factor)
        self.warmup_steps = int(warmup_steps)
        self.warmup_start_lr = float(warmup_start_lr)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        passed = ops.zeros((), "float32")
        for boundary in self.boundaries:
            passed = passed + ops.cast(step >= boundary, "float32")
        rate = self.peak_lr * ops.power(self.decay_factor, passed)
        if self.warmup_steps:
            fraction = ops.minimum(step / self.warmup_steps, 1.0)
            warm = self.warmup_start_lr + fraction * (self.peak_lr - self.warmup_start_lr)
            rate = ops.where(step < self.warmup_steps, warm, rate)
        return rate

    def get_config(self):
        return {
            "peak_lr": self.peak_lr,
            "boundaries": list(self.boundaries),
            "decay_factor": self.decay_factor,
            "warmup_steps": self.warmup_steps,
            "warmup_start_lr": self.warmup_start_lr,
            "name": self.name,
        }


@keras.saving.register_keras_serializable(package="kerasrecipes")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """The one-cycle policy: up from `max_lr / div_factor` to `max_lr`, then down to near zero.

    Smith & Topin 2018, "Super-Convergence" (arXiv:1708.07120), in the
    cosine-annealed form of fastai's `fit_one_cycle` and PyTorch's
    `OneCycleLR`: a cosine rise over the first `pct_start` of the run, then a
    cosine fall to `max_lr / (div_factor * final_div_factor)`. (Momentum
    cycling is left out: Keras optimizers take a fixed momentum.)

    >>> schedule = OneCycle(max_lr=1.0, total_steps=100, pct_start=0.25)
    >>> [round(float(schedule(step)), 4) for step in (0, 25, 100)]
    [0.04, 1.0, 0.0]
    """

    def __init__(
        self,
        max_lr,
        total_steps,
        pct_start=0.25,
        div_factor=25.0,
        final_div_factor=1e4,
        name="one_cycle",
    ):
        if not 0.0 < pct_start < 1.0:
            raise ValueError(f"OneCycle: pct_start must be in (0, 1), got {pct_start}.")
        if total_steps <= 0:
            raise ValueError(f"OneCycle: total_steps must be positive, got {total_steps}.")
        self.max_lr = float(max_lr)
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)
        self.name = name

    def __call__(self, step):
        step = ops.cast(step, "float32")
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        rise_steps = max(self.pct_start * self.total_steps, 1.0)
        fall_steps = max(self.total_steps - rise_steps, 1.0)

        def anneal(low, high, fraction):  # cosine from `low` at 0 to `high` at 1
            fraction = ops.clip(fraction, 0.0, 1.0)
            return high + (low - high) * 0.5 * (1.0 + ops.cos(math.pi * fraction))

        rising = anneal(start, self.max_lr, step / rise_steps)
        falling = anneal(self.max_lr, end, (step - rise_steps) / fall_steps)
        return ops.where(step < rise_steps, rising, falling)

    def get_config(self):
        return {
            "max_lr": self.max_lr,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div_factor": self.div_factor,
            "final_div_factor": self.final_div_factor,
            "name": self.name,
        }


def plot_schedule(schedule, steps, path="schedule.png", title=None):
    """Plot `schedule` over `steps` optimizer steps and save it as a PNG. Returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = list(range(int(steps) + 1))
    ys = [float(ops.convert_to_numpy(schedule(step))) for step in xs]
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(xs, ys)
    axis.set_xlabel("step")
    axis.set_ylabel("learning rate")
    axis.set_title(title or type(schedule).__name__)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
