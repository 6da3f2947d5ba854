"""Training on several devices or machines: the default strategy and the linear scaling rule.

`fine_tune(strategy=...)` takes any `tf.distribute` strategy. Without one it
uses `MirroredStrategy` when more than one GPU is visible, and TensorFlow's
default (single-device) strategy otherwise. `docs/distributed.md` shows the
multi-machine setup with `MultiWorkerMirroredStrategy` and `TF_CONFIG`.
"""

import json

import tensorflow as tf


def default_strategy():
    """`MirroredStrategy` over every visible GPU when there are two or more, else the default.

    >>> default_strategy().num_replicas_in_sync >= 1
    True
    """
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def is_multi_worker(strategy):
    """Whether `strategy` spans several processes (`MultiWorkerMirroredStrategy`)."""
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


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
