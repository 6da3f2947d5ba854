"""The toolkit's callbacks and LARS round-trip through Keras serialization."""

import keras
import numpy as np

import kerasrecipes as kr


def test_callbacks_round_trip_through_their_config():
    callbacks = [
        kr.callbacks.LRFinder(start_lr=1e-5, end_lr=1.0, num_steps=50, plot_path="lr.png"),
        kr.callbacks.UnfreezeBackbone("backbone", schedule={2: 1, 4: None}, lr_multiplier=0.1),
        kr.callbacks.TrainingCurves("curves.png", metrics=["loss"]),
        kr.callbacks.LogLearningRates(),
    ]
    for callback in callbacks:
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(callback)
        )
        assert type(restored) is type(callback)
        assert restored.get_config() == callback.get_config()


def test_lars_model_round_trips_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(1)])
    optimizer = kr.optimizers.exclude_from_decay(kr.optimizers.LARS(0.5, weight_decay=1e-3), model)
    model.compile(optimizer, loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    y = x.sum(axis=1, keepdims=True)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "lars.keras")
    loaded = keras.saving.load_model(tmp_path / "lars.keras")
    assert isinstance(loaded.optimizer, kr.optimizers.LARS)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
