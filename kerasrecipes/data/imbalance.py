"""Class imbalance, the lecture's two options: class weights on the loss, or oversampling."""

import numpy as np
import tensorflow as tf

from kerasrecipes.distribute import batch_size_of


def _counts_array(counts):
    if isinstance(counts, dict):
        names, values = list(counts), list(counts.values())
    else:
        values = list(np.asarray(counts).ravel())
        names = [str(i) for i in range(len(values))]
    values = np.asarray(values, dtype="float64")
    if len(values) < 2:
        raise ValueError(f"counts needs at least two classes. Received: counts={counts!r}")
    empty = [name for name, value in zip(names, values) if value <= 0]
    if empty:
        raise ValueError(
            f"Classes {empty} have no samples; class weights and oversampling need at least "
            "one sample per class. Remove those classes or add samples."
        )
    return names, values


def class_weights(counts):
    """Inverse-frequency class weights for `model.fit(class_weight=...)`.

    Class `c` gets `w_c = (1 / n_c) / mean_k(1 / n_k)`: proportional to the
    inverse of its count and normalized so that the mean weight over the
    classes is 1. Each sample's loss is multiplied by its class's weight,
    so every class contributes equally to the gradient: "easy to implement
    and no computational overhead" (the lecture), at the cost of a noisier
    gradient when a rare class's few samples carry large weights.

    Args:
        counts: `{class_name: count}` (as `image_folder`'s `info.counts`, in
            label order) or a list of counts indexed by label.

    Returns:
        `{label_index: weight}`, the form `model.fit(class_weight=...)` takes.

    Example:

    >>> class_weights({"cat": 900, "dog": 100})
    {0: 0.2, 1: 1.8}
    """
    _, values = _counts_array(counts)
    inverse = 1.0 / values
    weights = inverse / inverse.mean()
    return {index: round(float(w), 12) for index, w in enumerate(weights)}


def oversample(dataset, counts, num_samples=None, seed=None, label_fn=None):
    """Balances a dataset by drawing every class equally often, with replacement.

    The dataset is split into one stream per class (`filter`); each stream
    repeats, reshuffled each pass, and `tf.data.Dataset.sample_from_datasets`
    draws from them with equal probability (the recipe of TensorFlow's
    imbalanced-data tutorial). Rare samples are seen several times per epoch,
    so combine it with augmentation ("works well in combination with data
    augmentation", the lecture). Each class stream reads the input pipeline
    on its own, so give it a cached dataset (`image_folder` caches when the
    images fit in memory) or expect one read of the data per class.

    Args:
        dataset: a `tf.data.Dataset` of `(images, labels)`, batched or not;
            labels may be class indices, one-hot, or binary `(1,)` floats.
            A batched dataset is unbatched, balanced and batched again with
            the same batch size (found from the first batch).
        counts: `{class_name: count}` in label order (`info.counts`) or a
            list of counts; its length gives the number of classes and its
            sum the default epoch length.
        num_samples: samples per epoch. Defaults to the sum of `counts`, so
            an epoch has as many steps as before.
        seed: int or None, seed of the draws. Defaults to None.
        label_fn: optional function from a label tensor to its class index,
            for other label formats.

    Returns:
        The balanced dataset, finite (`num_samples` elements) and batched as
        the input was.

    Example:

    >>> import numpy as np, tensorflow as tf
    >>> labels = np.array([0] * 95 + [1] * 5)
    >>> data = tf.data.Dataset.from_tensor_slices((np.zeros((100, 2)), labels))
    >>> balanced = oversample(data, [95, 5], num_samples=1000, seed=0)
    >>> drawn = np.array([int(y) for _, y in balanced])
    >>> bool(0.45 < drawn.mean() < 0.55)
    True
    """
    _, values = _counts_array(counts)
    num_classes = len(values)
    num_samples = int(values.sum()) if num_samples is None else int(num_samples)
    images_spec, labels_spec = dataset.element_spec[:2]
    batch_size = None
    if _is_batched(images_spec, labels_spec, num_classes):
        batch_size = batch_size_of(dataset)
        dataset = dataset.unbatch()
        labels_spec = dataset.element_spec[1]
    if label_fn is None:
        label_fn = _label_to_index(labels_spec, num_classes)
    streams = [
        dataset.filter(lambda *element, k=k: tf.equal(label_fn(element[1]), k))
        # A short buffer: the source reshuffles on every pass, this only mixes within a pass.
        .shuffle(
            int(min(values[k], 1024)),
            seed=None if seed is None else seed + k,
            reshuffle_each_iteration=True,
        )
        .repeat()
        for k in range(num_classes)
    ]
    balanced = tf.data.Dataset.sample_from_datasets(
        streams, weights=[1.0 / num_classes] * num_classes, seed=seed
    ).take(num_samples)
    if batch_size is not None:
        balanced = balanced.batch(batch_size)
    return balanced.prefetch(tf.data.AUTOTUNE)


def _is_batched(images_spec, labels_spec, num_classes):
    """A leading unknown dimension on both, or a rank-4 image: a batched dataset."""
    if images_spec.shape.rank == 4:
        return True
    return (
        (images_spec.shape.rank or 0) > 0
        and images_spec.shape[0] is None
        and (labels_spec.shape.rank or 0) > 0
        and labels_spec.shape[0] is None
    )


def _label_to_index(labels_spec, num_classes):
    rank = labels_spec.shape.rank
    if rank == 0:
        return lambda label: tf.cast(label, tf.int64)
    if rank == 1 and labels_spec.shape[0] == num_classes and num_classes > 1:
        return lambda label: tf.argmax(label, output_type=tf.int64)
    if rank == 1 and labels_spec.shape[0] == 1:
        return lambda label: tf.cast(tf.round(label[0]), tf.int64)
    raise ValueError(
        f"oversample cannot read a class from labels of shape {labels_spec.shape} for "
        f"{num_classes} classes. Pass label_fn=lambda label: <class index>."
    )
