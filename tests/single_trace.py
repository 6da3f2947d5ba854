"""Every `fit` in the tests builds before it traces, as Keras does under a `tf.distribute` strategy.

Keras 3.15's TensorFlow trainer builds the optimizer's slots and the metrics before the
first trace only when the model has a strategy (`_maybe_symbolic_build` in
keras/src/backend/tensorflow/trainer.py). Without one it makes them inside the first
trace of the train step, and `tf.function`, having seen variables made, traces the whole
step a second time. The package's own fits build first (`kr._compat.build_before_fit`);
the tests' and the docs blocks' plain `model.fit` calls get the same here, through the
default strategy, which is Keras' own path under any strategy. The same variables are
made, before the trace instead of in it. Measured on 2 cores: with AdamW, whose slots the
first trace would make, ConvNeXt-T's first `fit` at 32x32 took 28 s instead of 43 s, and
docs/optimization.md's first block 42 s instead of 66 s; with plain SGD and no metrics
(test_models.py's one training step per model) it saved nothing, the symbolic forward
pass costing what the second trace did.
"""

import keras
import tensorflow as tf
from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

KERAS_MAYBE_SYMBOLIC_BUILD = TensorFlowTrainer._maybe_symbolic_build


def _build_first(self, iterator=None, data_batch=None):
    if self._distribute_strategy is not None:
        return KERAS_MAYBE_SYMBOLIC_BUILD(self, iterator=iterator, data_batch=data_batch)
    self._distribute_strategy = tf.distribute.get_strategy()
    try:
        return KERAS_MAYBE_SYMBOLIC_BUILD(self, iterator=iterator, data_batch=data_batch)
    finally:
        self._distribute_strategy = None


def build_before_every_fit():
    """On the TensorFlow backend, every `fit` from now on builds before it traces."""
    if keras.backend.backend() == "tensorflow":
        TensorFlowTrainer._maybe_symbolic_build = _build_first
