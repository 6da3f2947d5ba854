"""Semi-supervised learning with `model.fit`: FixMatch and pseudo-labelling."""

import keras
import tensorflow as tf
from keras import ops

from kerasrecipes.data.augment import as_augmentation


@keras.saving.register_keras_serializable(package="kerasrecipes")
class FixMatch(keras.Model):
    """Trains a classifier on labelled and unlabelled data (Sohn et al. 2020, FixMatch).

    Each training batch is `((labelled_images, unlabelled_images), labels)`,
    as `semi_supervised_dataset` makes it. The model sees the labelled images
    (weakly augmented) and each unlabelled image twice, weakly and strongly
    augmented, in one forward pass. The prediction on the weak view gives a
    pseudo-label wherever its confidence reaches `threshold`; the loss is the
    compiled loss on the labelled images plus `unlabelled_weight` times the
    cross-entropy between those pseudo-labels and the predictions on the
    strong view. With `strong=weak` this is pseudo-labelling (Lee 2013).
    Validation data and `predict` are plain `(images, labels)` and `images`:
    the wrapper passes them to `model` unchanged.

    Written as a `keras.Model` with `call`, `compute_loss` and
    `compute_metrics` overridden (no custom train step), so it runs on every
    backend and under `tf.distribute` like any model. Logs `pseudo_labelled`,
    the fraction of unlabelled images above the threshold, and
    `unlabelled_loss`.

    Args:
        model: the classifier, ending in a softmax (or logits with
            `from_logits=True`).
        weak: weak augmentation: a preset name or a layer. Defaults to
            `"basic"` (crop and flip).
        strong: strong augmentation: a preset name or a layer. Defaults to
            `"randaugment"`.
        threshold: confidence above which a weak-view prediction becomes a
            pseudo-label. Defaults to 0.95, the paper's value.
        unlabelled_weight: weight of the unlabelled loss (the paper's
            lambda_u). Defaults to 1.0.
        from_logits: whether `model` outputs logits. Defaults to False.
        seed: seed of presets given by name. Defaults to None.

    Example:

    >>> import keras
    >>> inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    >>> fixmatch = FixMatch(inner, weak=keras.layers.GaussianNoise(0.1),
    ...                     strong=keras.layers.GaussianNoise(0.5))
    >>> fixmatch.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    >>> fixmatch.predict(keras.ops.zeros((2, 4)), verbose=0).shape
    (2, 3)
    """

    def __init__(
        self,
        model,
        weak="basic",
        strong="randaugment",
        threshold=0.95,
        unlabelled_weight=1.0,
        from_logits=False,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1]. Received: threshold={threshold}")
        self.model = model
        image_size = model.input_shape[1:3]
        self.weak = as_augmentation(weak, image_size, seed)
        self.strong = as_augmentation(strong, image_size, None if seed is None else seed + 100)
        self.threshold = threshold
        self.unlabelled_weight = unlabelled_weight
        self.from_logits = from_logits
        self.seed = seed
        self.pseudo_labelled = keras.metrics.Mean(name="pseudo_labelled")
        self.unlabelled_loss = keras.metrics.Mean(name="unlabelled_loss")

    def build(self, input_shape):
        # The wrapped model is built already (or builds on its first call).
        self.built = True

    def call(self, inputs, training=False):
        if not isinstance(inputs, (tuple, list)):
            return self.model(inputs, training=training)
        labelled, unlabelled = inputs
        batch = ops.concatenate(
            [
                self.weak(labelled, training=training),
                self.weak(unlabelled, training=training),
                self.strong(unlabelled, training=training),
            ],
            axis=0,
        )
        return self.model(batch, training=training)

    def _split(self, x, y_pred):
        num_labelled = ops.shape(x[0])[0]
        num_unlabelled = ops.shape(x[1])[0]
        labelled = y_pred[:num_labelled]
        weak = y_pred[num_labelled : num_labelled + num_unlabelled]
        strong = y_pred[num_labelled + num_unlabelled :]
        return labelled, weak, strong

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(x, (tuple, list)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        labelled, weak, strong = self._split(x, y_pred)
        supervised = super().compute_loss(x[0], y, labelled, sample_weight, training=training)
        weak = ops.stop_gradient(weak)
        probabilities = ops.softmax(weak) if self.from_logits else weak
        confident = ops.cast(ops.max(probabilities, axis=-1) >= self.threshold, "float32")
        pseudo_labels = ops.argmax(probabilities, axis=-1)
        per_image = keras.losses.sparse_categorical_crossentropy(
            pseudo_labels, strong, from_logits=self.from_logits
        )
        unlabelled = ops.mean(ops.cast(per_image, "float32") * confident)
        self.pseudo_labelled.update_state(confident)
        self.unlabelled_loss.update_state(unlabelled)
        return supervised + ops.cast(self.unlabelled_weight * unlabelled, supervised.dtype)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if not isinstance(x, (tuple, list)):
            return super().compute_metrics(x, y, y_pred, sample_weight)
        labelled, _, _ = self._split(x, y_pred)
        results = super().compute_metrics(x[0], y, labelled, sample_weight)
        results["pseudo_labelled"] = self.pseudo_labelled.result()
        results["unlabelled_loss"] = self.unlabelled_loss.result()
        return results

    @property
    def metrics(self):
        return super().metrics + [self.pseudo_labelled, self.unlabelled_loss]

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "model": serialize(self.model),
            "weak": serialize(self.weak),
            "strong": serialize(self.strong),
            "threshold": self.threshold,
            "unlabelled_weight": self.unlabelled_weight,
            "from_logits": self.from_logits,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("model", "weak", "strong"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)


def semi_supervised_dataset(labelled, unlabelled):
    """Pairs labelled and unlabelled batches into the `((x_l, x_u), y)` batches of `FixMatch`.

    An epoch is one pass over the unlabelled data; the labelled data
    repeats as often as needed (it is usually the smaller set). Batch the
    unlabelled data larger than the labelled (FixMatch uses 7 times).

    Args:
        labelled: batched dataset of `(images, labels)`.
        unlabelled: batched dataset of `images`, or of `(images, labels)`
            whose labels are dropped (to test with held-out labels).

    Returns:
        A dataset of `((labelled_images, unlabelled_images), labels)`.
    """
    if isinstance(unlabelled.element_spec, tuple):
        unlabelled = unlabelled.map(lambda images, *_: images)
    pairs = tf.data.Dataset.zip(labelled.repeat(), unlabelled)
    return pairs.map(lambda batch, images: ((batch[0], images), batch[1])).prefetch(
        tf.data.AUTOTUNE
    )
