"""Training on several devices or machines: the default strategy and the linear scaling rule.

`fine_tune(strategy=...)` takes any `tf.distribute` strategy. Without one it
uses `MirroredStrategy` when more than one GPU is visible, and TensorFlow's
default (single-device) strategy otherwise. `docs/distributed.md` shows the
multi-machine setup with `MultiWorkerMirroredStrategy` and `TF_CONFIG`.
"""

import contextlib
import json

import keras
import tensorflow as tf

from kerasrecipes import _compat


def default_strategy():
    """`MirroredStrategy` over every visible GPU when there are two or more, else the default.

    >>> default_strategy().num_replicas_in_sync >= 1
    True
    """
    if keras.backend.backend() != "tensorflow":  # tf.distribute drives TensorFlow only
        return tf.distribute.get_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy):
    """Whether `strategy` spans several processes (`MultiWorkerMirroredStrategy`)."""
    return _compat.in_multi_worker_mode(strategy)


def is_chief(strategy):
    """Whether this process writes the run's files: always, except on a non-chief worker.

    Under `MultiWorkerMirroredStrategy` the chief is the `chief` task, or worker
    0 when the cluster has none (`TF_CONFIG`); the others train the same steps
    but must not write where the chief writes.
    """
    if strategy is None or not is_multi_worker(strategy):
        return True
    return bool(strategy.extended.should_checkpoint)


def chief_values(strategy, values):
    """`values` (numbers) as the chief has them, on every worker; also a barrier.

    Outside multi-worker training it returns `values` as floats.
    """
    values = [float(value) for value in values]
    return worker_sum(strategy, values if is_chief(strategy) else [0.0] * len(values))


def worker_sum(strategy, values):
    """The sum of `values` (numbers) over the workers, on every worker; also a barrier.

    An all-reduce: every worker waits in it until all have reached it.
    Outside multi-worker training it returns `values` as floats.
    """
    values = [float(value) for value in values]
    if strategy is None or not is_multi_worker(strategy):
        return values
    share = [value / len(strategy.extended.worker_devices) for value in values]
    per_replica = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(share, tf.float64)
    )
    total = strategy.reduce("SUM", per_replica, axis=None)
    return [round(float(value), 6) for value in total.numpy()]


def batch_size_of(dataset):
    """The batch size of a batched dataset: static if known, else the size of its first batch."""
    spec = dataset.element_spec
    first = spec[0] if isinstance(spec, tuple) else spec
    if isinstance(first, dict):
        first = next(iter(first.values()))
    if first.shape.rank is None or first.shape.rank < 1:
        raise ValueError(
            "Expected a batched dataset of (images, labels); this one yields elements of "
            f"shape {first.shape}. Call dataset.batch(batch_size) first."
        )
    if first.shape[0] is not None:
        return int(first.shape[0])
    element = next(iter(dataset.take(1)))
    first = element[0] if isinstance(element, tuple) else element
    if isinstance(first, dict):
        first = next(iter(first.values()))
    return int(first.shape[0])


def scale_for_replicas(dataset, learning_rate, num_replicas):
    """The linear scaling rule: the global batch and the learning rate grow with the replicas.

    Goyal et al. 2017, "Accurate, Large Minibatch SGD" (arXiv:1706.02677),
    Sec. 2.1: when the minibatch grows k times, multiply the learning rate
    by k. `tf.distribute` splits each batch of the dataset across the
    replicas, so to keep the per-replica batch the batch the data pipeline
    was built with, the dataset is re-batched to `batch x num_replicas`.

    Args:
        dataset: a batched `tf.data.Dataset`, or None.
        learning_rate: a float.
        num_replicas: int >= 1.

    Returns:
        `(dataset, learning_rate)`, both unchanged when `num_replicas == 1`.
    """
    if num_replicas == 1 or dataset is None:
        return dataset, learning_rate * num_replicas
    batch = batch_size_of(dataset)
    return dataset.rebatch(batch * num_replicas), learning_rate * num_replicas


def shard_by_data(dataset):
    """Shard `dataset` by element across workers (needed for in-memory or cached datasets).

    The default policy shards by input file, which needs at least one file per
    worker and falls back to data sharding with a warning otherwise.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


@contextlib.contextmanager
def keras_multi_worker_fixes(model, dataset):
    """Makes Keras 3's `fit` run under `MultiWorkerMirroredStrategy`, for the duration of a block.

    Keras 3.15's TensorFlow trainer fails there twice (keras-team/keras#20585,
    tensorflow/tensorflow#72388, open): it builds the model from the first
    batch after averaging the distributed batch with `strategy.reduce`, which
    raises "Attempt to convert a value (PerReplica...)", and it averages each
    step's scalar logs with `strategy.reduce("MEAN", value, axis=0)`, which
    raises "Invalid reduction dimension 0 for input with 0 dimensions".
    Inside this block the model is built from the dataset's `element_spec`
    (only shapes and dtypes are needed) and scalar logs are averaged over
    all replicas with `axis=None`. Gradients are all-reduced by the strategy
    as before. Both patches touch Keras' private trainer (through
    `kerasrecipes._compat`) and are undone on exit; drop this once Keras
    fixes the issue.
    """
    original_reduce = _compat.trainer_reduce_per_replica()

    def build_from_spec(iterator=None, data_batch=None):
        _compat.build_before_fit(model, dataset)

    def reduce_per_replica(values, strategy, reduction):
        if reduction not in ("auto", "mean") or not is_multi_worker(strategy):
            return original_reduce(values, strategy, reduction)

        def mean(value):
            if not isinstance(value, tf.distribute.DistributedValues):
                return value
            return strategy.reduce("MEAN", value, axis=None)

        return tf.nest.map_structure(mean, values)

    with (
        _compat.symbolic_build_hook(model, build_from_spec),
        _compat.replaced_trainer_reduce_per_replica(reduce_per_replica),
    ):
        yield


def tf_config(workers, index, task_type="worker"):
    """The `TF_CONFIG` value of one worker, as a JSON string.

    Every worker runs the same script with the same `workers` list and its
    own `index` (0 is the chief, which also writes checkpoints and logs).

    >>> json.loads(tf_config(["10.0.0.1:12345", "10.0.0.2:12345"], index=1))["task"]
    {'type': 'worker', 'index': 1}
    """
    return json.dumps(
        {"cluster": {task_type: list(workers)}, "task": {"type": task_type, "index": int(index)}}
    )
