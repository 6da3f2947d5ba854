"""Learning-rate schedules and the linear scaling rule."""

import math

import keras
import numpy as np
import pytest

import kerasrecipes as kr
from kerasrecipes.schedules import (
    OneCycle,
    WarmupCosine,
    WarmupStepDecay,
    plot_schedule,
    scale_learning_rate,
)


def curve(schedule, steps):
    return np.array([float(schedule(step)) for step in steps])


def test_warmup_cosine_follows_the_formula():
    schedule = WarmupCosine(peak_lr=0.1, total_steps=1000, warmup_steps=100, final_lr=0.001)
    steps = np.arange(0, 1001, 50)
    expected = np.where(
        steps < 100,
        0.1 * steps / 100,
        0.001 + 0.5 * (0.1 - 0.001) * (1 + np.cos(math.pi * (steps - 100) / 900)),
    )
    np.testing.assert_allclose(curve(schedule, steps), expected, rtol=1e-5, atol=1e-7)
    no_warmup = WarmupCosine(peak_lr=0.1, total_steps=10)
    assert float(no_warmup(0)) == pytest.approx(0.1)


def test_warmup_step_decay_reproduces_the_resnet_schedule():
    # He et al. 2016 on CIFAR-10: 0.1, /10 at 32k and 48k iterations.
    schedule = WarmupStepDecay(0.1, boundaries=[32000, 48000])
    np.testing.assert_allclose(
        curve(schedule, [0, 31999, 32000, 47999, 48000, 64000]),
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001],
        rtol=1e-5,
    )
    warm = WarmupStepDecay(0.4, boundaries=[50], warmup_steps=10, warmup_start_lr=0.1)
    np.testing.assert_allclose(
        curve(warm, [0, 5, 10, 49, 50]), [0.1, 0.25, 0.4, 0.4, 0.04], rtol=1e-5
    )


def test_one_cycle_rises_then_falls():
    schedule = OneCycle(max_lr=0.5, total_steps=200, pct_start=0.3)
    values = curve(schedule, range(201))
    peak = int(np.argmax(values))
    assert peak == 60
    assert values[0] == pytest.approx(0.5 / 25)
    assert values[-1] == pytest.approx(0.5 / 25 / 1e4, rel=1e-3)
    assert np.all(np.diff(values[: peak + 1]) >= 0) and np.all(np.diff(values[peak:]) <= 0)


@pytest.mark.parametrize(
    "schedule",
    [
        WarmupCosine(0.1, total_steps=100, warmup_steps=10, final_lr=1e-4),
        WarmupStepDecay(0.1, [30, 60], decay_factor=0.2, warmup_steps=5),
        OneCycle(0.3, total_steps=50, pct_start=0.4),
    ],
    ids=lambda s: type(s).__name__,
)
def test_schedules_serialize_alone_and_inside_an_optimizer(schedule, tmp_path):
    restored = keras.optimizers.schedules.deserialize(
        keras.optimizers.schedules.serialize(schedule)
    )
    steps = [0, 3, 7, 20, 45, 80]
    np.testing.assert_allclose(curve(restored, steps), curve(schedule, steps), rtol=1e-6)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(schedule), loss="mse")
    model.fit(np.ones((4, 2)), np.ones((4, 1)), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.optimizer._learning_rate) is type(schedule)
    np.testing.assert_allclose(
        float(loaded.optimizer.learning_rate), float(model.optimizer.learning_rate), rtol=1e-6
    )


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupCosine(0.1, total_steps=10, warmup_steps=10)
    with pytest.raises(ValueError, match="boundaries must increase"):
        WarmupStepDecay(0.1, [20, 10])
    with pytest.raises(ValueError, match="inside the warmup"):
        WarmupStepDecay(0.1, [5], warmup_steps=10)
    with pytest.raises(ValueError, match="pct_start"):
        OneCycle(0.1, total_steps=10, pct_start=1.0)
    with pytest.raises(ValueError, match="batch sizes"):
        scale_learning_rate(0.1, global_batch_size=0)


def test_linear_scaling_rule():
    assert kr.schedules.scale_learning_rate(
        0.1, global_batch_size=1024, base_batch_size=256
    ) == pytest.approx(0.4)
    assert scale_learning_rate(0.1, global_batch_size=128) == pytest.approx(0.05)


def test_plot_schedule_writes_a_png(tmp_path):
    path = plot_schedule(WarmupCosine(0.1, 100, 10), 100, tmp_path / "s.png")
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
