"""A trained detector that knows its classes, and boxes for files, folders and arrays.

`ObjectDetector` is to a detection run what `kr.ImageClassifier` is to a
classification run (keras-hub's `ObjectDetector` plays the same part): the
RetinaNet with its class names and input size in the model's config. It
takes RGB images of any size in [0, 255], resizes them to the size it
trained at, and returns one row per anchor, `(batch, anchors, 4 +
num_classes)`: the decoded box `[x_min, y_min, x_max, y_max]` in the input
image's pixels, then each class's probability. One output array, so an
export serves it as it is; non-max suppression is the step after it
(`select_boxes` in NumPy, docs/dense-prediction.md), which `predict_images`
runs with keras-hub's `NonMaxSuppression`, as the training run's mAP does.
"""

import dataclasses

import keras
import numpy as np
from keras import ops

from kerasrecipes.inference.classifier import checked_class_names, network_image_size
from kerasrecipes.inference.inputs import image_batches, original_sizes
from kerasrecipes.models.retinanet import BOX_FORMAT, anchor_generator


@keras.saving.register_keras_serializable(package="kerasrecipes")
class AnchorBoxDecoder(keras.layers.Layer):
    """RetinaNet's box deltas and class logits to boxes in the input image's pixels and class
    probabilities, for every anchor: `(batch, anchors, 4 + num_classes)`.

    The anchors are those of `RetinaNet` at `image_size` (keras-hub's
    `AnchorGenerator`, 3 scales x 3 ratios per level), computed once; the
    deltas decode as in `RetinaNet.decode` (keras-hub's "center_xywh"
    encoding), then scale from `image_size` to the size of `images`.
    """

    def __init__(self, image_size, max_level=7, anchor_size=4, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.image_size = tuple(int(s) for s in image_size)
        self.max_level = max_level
        self.anchor_size = anchor_size
        generator = anchor_generator(max_level, anchor_size)
        by_level = generator(np.zeros((1, *self.image_size, 3), "float32"))
        self.anchors = np.concatenate(
            [ops.convert_to_numpy(by_level[level]) for level in by_level], axis=0
        ).astype("float32")

    def call(self, deltas, logits, images):
        height, width = self.image_size
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=ops.convert_to_tensor(self.anchors),
            boxes_delta=deltas,
            encoded_format="center_xywh",
            anchor_format=BOX_FORMAT,
            box_format=BOX_FORMAT,
            image_shape=(height, width, 3),
        )
        shape = ops.cast(ops.shape(images), "float32")
        x_scale, y_scale = shape[2] / width, shape[1] / height
        boxes = boxes * ops.stack([x_scale, y_scale, x_scale, y_scale])
        return ops.concatenate([boxes, ops.sigmoid(logits)], axis=-1)

    def compute_output_shape(self, deltas_shape, logits_shape, images_shape):
        return (*deltas_shape[:2], 4 + logits_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=list(self.image_size),
            max_level=self.max_level,
            anchor_size=self.anchor_size,
        )
        return config


@keras.saving.register_keras_serializable(package="kerasrecipes")
class ObjectDetector(keras.Model):
    """A RetinaNet that records its class names, input size and origin (see the module).

    Args:
        network: a `kr.models.retinanet.RetinaNet`.
        class_names: the name of each class index; None for "0", "1", ...
        image_size: `(height, width)` the network takes; None for its input shape.
        confidence_threshold: the lowest class probability `predict_images`
            keeps; None for the network's (0.3 by default).
        source: a dict saying where the network came from; recorded, not used.
        **kwargs: `keras.Model` arguments such as `name`.
    """

    def __init__(
        self,
        network,
        class_names=None,
        image_size=None,
        confidence_threshold=None,
        source=None,
        **kwargs,
    ):
        self.class_names = checked_class_names(
            network.num_classes, class_names, "ObjectDetector", unit="class"
        )
        self.image_size = network_image_size(network, image_size, "ObjectDetector")
        images = keras.Input((None, None, 3), name="images")
        resized = keras.layers.Resizing(*self.image_size, name="resize", dtype="float32")(images)
        raw = network(resized)
        decoder = AnchorBoxDecoder(
            self.image_size, network.max_level, network.anchor_size, name="decode"
        )
        outputs = decoder(raw["bbox_regression"], raw["cls_logits"], images)
        kwargs.setdefault("name", f"{network.name}_detector")
        super().__init__(inputs=images, outputs=outputs, **kwargs)
        self.network = network
        self.confidence_threshold = (
            network.confidence_threshold if confidence_threshold is None else confidence_threshold
        )
        self.source = dict(source or {})

    def call(self, inputs, training=False, mask=None):
        # As `ImageClassifier.call`: `Resizing`'s training default must not reach the network.
        return super().call(inputs, training=training, mask=mask)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "class_names": list(self.class_names),
            "image_size": list(self.image_size),
            "confidence_threshold": self.confidence_threshold,
            "source": self.source,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

    def detect(self, images, confidence_threshold=None):
        """`{"boxes", "confidence", "labels", "num_detections"}` after non-max suppression for a
        batch of images (any size, [0, 255]); boxes in the images' pixels."""
        import keras_hub

        rows = self.predict_on_batch(np.asarray(images, "float32"))
        suppress = keras_hub.layers.NonMaxSuppression(
            BOX_FORMAT,
            from_logits=False,
            confidence_threshold=(
                self.confidence_threshold if confidence_threshold is None else confidence_threshold
            ),
            max_detections=100,
            dtype="float32",
        )
        found = suppress(rows[..., :4], rows[..., 4:])
        return {key: ops.convert_to_numpy(value) for key, value in found.items()}

    def predict_images(self, images, batch_size=32, confidence_threshold=None):
        """Boxes for image files, a folder, a numpy batch or PIL images, in each image's pixels.

        Returns one `BoxPrediction` for one image, else `BoxPredictions`
        (the unreadable files in `skipped`, with their reasons).
        """
        batches, paths, skipped, single = image_batches(images, self.image_size, batch_size)
        sizes = iter(original_sizes(images, paths))
        predictions = []
        for batch in batches:
            found = self.detect(batch, confidence_threshold)
            for index in range(len(found["boxes"])):
                height, width = next(sizes)
                batch_height, batch_width = np.shape(batch)[1:3]
                scale = np.array([width / batch_width, height / batch_height] * 2, "float32")
                count = int(found["num_detections"][index])
                predictions.append(
                    BoxPrediction(
                        boxes=found["boxes"][index, :count] * scale,
                        scores=found["confidence"][index, :count],
                        labels=[self.class_names[int(i)] for i in found["labels"][index, :count]],
                        path=None if paths is None else paths[len(predictions)],
                    )
                )
        result = BoxPredictions(self.class_names, predictions, skipped)
        if single:
            if not predictions:
                path, reason = skipped[0]
                raise ValueError(f"predict_images: {path} cannot be read as an image: {reason}.")
            return predictions[0]
        return result


@dataclasses.dataclass
class BoxPrediction:
    """One image's detections: `boxes` `(n, 4)` `[x_min, y_min, x_max, y_max]` pixels, `scores`,
    `labels` (class names), most confident first; `path` or None."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list
    path: str | None = None


@dataclasses.dataclass
class BoxPredictions:
    """The detections for many images, and the files that could not be read."""

    class_names: list
    predictions: list
    skipped: list

    def __len__(self):
        return len(self.predictions)

    def __getitem__(self, index):
        return self.predictions[index]

    def __iter__(self):
        return iter(self.predictions)

    def rows(self):
        """One dict per box (path, label, score, x_min, y_min, x_max, y_max), then one per
        skipped file; an image without a box gets none."""
        rows = []
        for prediction in self:
            for box, score, label in zip(prediction.boxes, prediction.scores, prediction.labels):
                row = {"path": prediction.path, "label": label, "score": round(float(score), 6)}
                row.update(zip(("x_min", "y_min", "x_max", "y_max"), np.round(box, 2).tolist()))
                rows.append(row)
        rows += [{"path": path, "skipped": reason} for path, reason in self.skipped]
        return rows

    def coco_results(self):
        """`(images, results)` in COCO's results format: `images` lists `{"id", "file_name"}`,
        `results` one `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}` per box,
        category ids the class indices."""
        images, results = [], []
        for image_id, prediction in enumerate(self):
            images.append({"id": image_id, "file_name": prediction.path})
            for box, score, label in zip(prediction.boxes, prediction.scores, prediction.labels):
                x0, y0, x1, y1 = (round(float(v), 2) for v in box)
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": self.class_names.index(label),
                        "bbox": [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)],
                        "score": round(float(score), 6),
                    }
                )
        return images, results


def select_boxes(rows, confidence_threshold=0.3, iou_threshold=0.5, max_detections=100):
    """Non-max suppression in NumPy, for an exported detector's output `(anchors, 4 +
    num_classes)` of one image: `(boxes, scores, class indices)`, most confident first.

    As keras-hub's `NonMaxSuppression`: each anchor's box goes with its most
    probable class; keep the anchors whose probability reaches
    `confidence_threshold`, then greedily the most confident box, dropping
    the others that overlap it by IoU above `iou_threshold` (whatever their
    class). Runs where only NumPy is: beside an ONNX or SavedModel artifact
    in a process without Keras.
    """
    rows = np.asarray(rows, "float32")
    boxes, probabilities = rows[:, :4], rows[:, 4:]
    labels = probabilities.argmax(-1)
    scores = probabilities.max(-1)
    candidates = np.flatnonzero(scores >= confidence_threshold)
    candidates = candidates[np.argsort(-scores[candidates], kind="stable")]
    keep = []
    while len(candidates) and len(keep) < max_detections:
        best, candidates = candidates[0], candidates[1:]
        keep.append(best)
        candidates = candidates[_iou(boxes[best], boxes[candidates]) <= iou_threshold]
    return boxes[keep], scores[keep], labels[keep]


def _iou(box, others):
    x0 = np.maximum(box[0], others[:, 0])
    y0 = np.maximum(box[1], others[:, 1])
    x1 = np.minimum(box[2], others[:, 2])
    y1 = np.minimum(box[3], others[:, 3])
    intersection = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return intersection / np.maximum(area + areas - intersection, 1e-9)
