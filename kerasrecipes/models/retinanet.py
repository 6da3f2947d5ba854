"""RetinaNet on any zoo CNN: keras-hub's detector parts over our feature taps.

Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017
(arXiv:1708.02002): a feature pyramid (Lin et al., arXiv:1612.03144) over
the backbone's stride-8/16/32 maps (C3-C5) plus P6/P7, two prediction heads
shared across levels (box deltas, class logits per anchor), anchors of 3
scales x 3 ratios per level, the focal loss, and non-max suppression.

Why not `keras_hub.models.RetinaNetObjectDetector` itself: not for its
layer names any more (the model records its head, `kr.model_parts`), but
for its graph. keras-hub 0.32 sets the focal-loss prior (bias
-log((1 - 0.01) / 0.01), the paper's Sec. 4.1) on the box head, where the
paper puts it on the class head; its heads have no GroupNorm; and it takes
only keras-hub backbones, where this one aligns any zoo CNN's maps to the
anchors. So this model wires keras-hub's own parts (`FeaturePyramid`,
`PredictionHead`, `AnchorGenerator`, `RetinaNetLabelEncoder`,
`NonMaxSuppression`) and mirrors its `compute_loss`; only the graph is
ours. Three of those parts are not in keras-hub's public API, so they come
through `kerasrecipes._compat`.
"""

import math

import keras
from keras import ops

from kerasrecipes import _compat
from kerasrecipes.cards import register_head
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.model_parts import HEAD_PREFIX, record_head
from kerasrecipes.models.encoders import pyramid_encoder

# Boxes are [x_min, y_min, x_max, y_max] in pixels throughout, as in COCO after conversion.
BOX_FORMAT = "xyxy"
ENCODER_LEVELS = (3, 4, 5)


@keras.saving.register_keras_serializable(package="kerasrecipes")
class RetinaNet(keras.Model):
    """A RetinaNet on `encoder`, a model from images to its maps at `encoder_strides` (see
    `retinanet`).

    Trains with `fit` on `(images, {"boxes": (B, N, 4), "labels": (B, N)})`,
    boxes in pixels as `[x_min, y_min, x_max, y_max]`, rows padded with label
    -1; `predict` returns the boxes after non-max suppression
    (`{"boxes", "confidence", "labels", "num_detections"}`).
    """

    def __init__(
        self,
        encoder,
        num_classes,
        image_shape,
        encoder_strides=(8, 16, 32),
        preprocessing=None,
        max_level=7,
        fpn_filters=256,
        head_convs=4,
        anchor_size=4,
        confidence_threshold=0.3,
        **kwargs,
    ):
        if isinstance(encoder, dict):
            encoder = keras.saving.deserialize_keras_object(encoder)
        import keras_hub

        feature_pyramid, prediction_head, label_encoder = _compat.retinanet_parts()
        image_shape = tuple(image_shape)
        anchors = anchor_generator(max_level, anchor_size)
        inputs = keras.Input(image_shape, name="images")
        x = inputs
        if preprocessing:
            x = ImagePreprocessing(preprocessing, name="preprocessing")(x)
        maps = encoder(x)
        by_stride = dict(zip(encoder_strides, maps if isinstance(maps, list) else [maps]))
        features = {}
        for level in ENCODER_LEVELS:
            feature_map = by_stride.get(2**level)
            if feature_map is None:
                feature_map = _downsampled(by_stride, 2**level, fpn_filters)
                by_stride[2**level] = feature_map
            # The anchors tile ceil(size / stride) cells; a 'valid'-padded encoder gives less.
            size = tuple(math.ceil(s / 2**level) for s in image_shape[:2])
            if tuple(feature_map.shape[1:3]) != size:
                feature_map = keras.layers.Resizing(*size, name=f"{HEAD_PREFIX}align_p{level}")(
                    feature_map
                )
            features[f"P{level}"] = feature_map
        pyramid = feature_pyramid(
            min_level=3,
            max_level=max_level,
            use_p5=False,
            num_filters=fpn_filters,
            name=f"{HEAD_PREFIX}fpn",
        )(features)
        per_cell = anchors.num_base_anchors
        # The paper's initialization (weights N(0, 0.01), the class prior on the class head),
        # and GroupNorm in the heads as torchvision's RetinaNet v2: a zoo backbone's maps come
        # at any scale, and without it the untrained heads start far from the prior.
        head = dict(
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), use_group_norm=True
        )
        box_head = prediction_head(
            per_cell * 4, fpn_filters, head_convs, name=f"{HEAD_PREFIX}boxes", **head
        )
        class_head = prediction_head(
            per_cell * num_classes,
            fpn_filters,
            head_convs,
            use_prior_probability=True,
            prior_probability=0.01,
            name=f"{HEAD_PREFIX}classes",
            **head,
        )
        boxes, logits = [], []
        for level in sorted(pyramid, key=lambda name: int(name[1:])):
            boxes.append(
                keras.layers.Reshape((-1, 4), name=f"{HEAD_PREFIX}boxes_{level.lower()}")(
                    box_head(pyramid[level])
                )
            )
            logits.append(
                keras.layers.Reshape(
                    (-1, num_classes), name=f"{HEAD_PREFIX}classes_{level.lower()}"
                )(class_head(pyramid[level]))
            )
        # Concatenated in float32: the loss and the decoding need it under mixed precision.
        outputs = {
            "bbox_regression": keras.layers.Concatenate(
                axis=1, dtype="float32", name=f"{HEAD_PREFIX}box_deltas"
            )(boxes),
            "cls_logits": keras.layers.Concatenate(
                axis=1, dtype="float32", name=f"{HEAD_PREFIX}class_logits"
            )(logits),
        }
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        record_head(self, maps)
        self.encoder = encoder
        self.encoder_strides = tuple(encoder_strides)
        self.num_classes = num_classes
        self.image_shape = image_shape
        self.preprocessing = preprocessing
        self.max_level = max_level
        self.fpn_filters = fpn_filters
        self.head_convs = head_convs
        self.anchor_size = anchor_size
        self.confidence_threshold = confidence_threshold
        self.anchor_generator = anchors
        # In float32 whatever the global policy: in bfloat16 the IoU matching and the log-scale
        # box targets lose their precision: one quick run in three ended in a NaN loss.
        self.label_encoder = label_encoder(
            anchors, BOX_FORMAT, encoding_format="center_xywh", dtype="float32"
        )
        self.prediction_decoder = keras_hub.layers.NonMaxSuppression(
            BOX_FORMAT,
            from_logits=True,
            confidence_threshold=confidence_threshold,
            max_detections=100,
            dtype="float32",
        )

    def get_config(self):
        return {
            "name": self.name,
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "num_classes": self.num_classes,
            "image_shape": self.image_shape,
            "encoder_strides": self.encoder_strides,
            "preprocessing": self.preprocessing,
            "max_level": self.max_level,
            "fpn_filters": self.fpn_filters,
            "head_convs": self.head_convs,
            "anchor_size": self.anchor_size,
            "confidence_threshold": self.confidence_threshold,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, **kwargs):
        """keras-hub's RetinaNet loss: anchors matched by IoU (>= 0.5 positive, < 0.4
        background, between ignored), smooth-L1 on the positives' deltas and the focal loss
        over the rest, both summed and divided by the number of positive anchors."""
        boxes, labels = self.label_encoder(images=x, gt_boxes=y["boxes"], gt_classes=y["labels"])
        positive = ops.cast(ops.greater(labels, -1.0), "float32")
        positives = ops.maximum(ops.sum(positive), 1.0)
        class_weights = ops.cast(ops.not_equal(labels, -2.0), "float32") / positives
        targets = ops.one_hot(ops.cast(labels, "int32"), self.num_classes, dtype="float32")
        box_loss = keras.losses.Huber(reduction="sum")(
            boxes, y_pred["bbox_regression"], sample_weight=positive / positives
        )
        class_loss = keras.losses.BinaryFocalCrossentropy(
            apply_class_balancing=True,
            alpha=0.25,
            gamma=2.0,
            from_logits=True,
            reduction="sum",
        )(targets, y_pred["cls_logits"], sample_weight=class_weights)
        return box_loss + class_loss

    def decode(self, outputs, images, confidence_threshold=None):
        """Boxes after non-max suppression from the raw outputs on `images` (keeping classes
        of probability `confidence_threshold` and up, the model's own when None)."""
        height, width, channels = ops.shape(images)[1:]
        anchors = ops.concatenate(list(self.anchor_generator(images).values()), axis=0)
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=anchors,
            boxes_delta=outputs["bbox_regression"],
            encoded_format="center_xywh",
            anchor_format=BOX_FORMAT,
            box_format=BOX_FORMAT,
            image_shape=(height, width, channels),
        )
        decoder = self.prediction_decoder
        if confidence_threshold is not None:
            import keras_hub

            decoder = keras_hub.layers.NonMaxSuppression(
                BOX_FORMAT,
                from_logits=True,
                confidence_threshold=confidence_threshold,
                max_detections=100,
                dtype="float32",
            )
        return decoder(boxes, outputs["cls_logits"], images=images)

    def predict_step(self, *args):
        # TensorFlow and PyTorch call predict_step(data); JAX calls predict_step(state, data)
        # and expects (outputs, state) back.
        outputs = super().predict_step(*args)
        data = args[-1]
        images = data[0] if isinstance(data, (list, tuple)) else data
        if keras.backend.backend() == "jax":
            return self.decode(outputs[0], images), outputs[1]
        return self.decode(outputs, images)


def anchor_generator(max_level=7, anchor_size=4):
    """keras-hub's `AnchorGenerator` as RetinaNet tiles its levels 3..`max_level`: 3 scales x 3
    ratios per cell, sides `anchor_size * 2**level`."""
    import keras_hub

    return keras_hub.layers.AnchorGenerator(
        BOX_FORMAT,
        min_level=3,
        max_level=max_level,
        num_scales=3,
        aspect_ratios=[0.5, 1.0, 2.0],
        anchor_size=anchor_size,
        dtype="float32",  # the box arithmetic stays in float32 under mixed precision
    )


def _downsampled(by_stride, stride, filters):
    """The map at `stride` made from the deepest shallower one by stride-2 3x3 convolutions and
    ReLUs, as the paper makes P6 and P7 from C5: for encoders whose maps stop short of 32."""
    source = max(s for s in by_stride if s < stride)
    x = by_stride[source]
    while source < stride:
        source *= 2
        name = f"{HEAD_PREFIX}extra_c{int(math.log2(source))}"
        x = keras.layers.Conv2D(filters, 3, strides=2, padding="same", name=f"{name}_conv")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


@register_head("retinanet")
def retinanet(
    backbone="resnet50",
    num_classes=80,
    input_shape=(512, 512, 3),
    weights=None,
    max_level=7,
    fpn_filters=256,
    head_convs=4,
    anchor_size=4,
    confidence_threshold=0.3,
    name=None,
):
    """Builds a RetinaNet detector on `backbone`'s stride-8/16/32 maps.

    Args:
        backbone: a registered CNN name (`kr.list_models()`), a model built by
            `kr.create_model` or wrapping one (the demo backbones), or a
            `kr.LoadedBackbone`; rebuilt at `input_shape` with its weights.
            Its stride-8, 16 and 32 maps feed the pyramid; those it lacks (a
            CIFAR-style network stops at 4) are made from its deepest map by
            stride-2 convolutions, new layers that train with the head.
            Defaults to "resnet50".
        num_classes: object classes, without a background class. Defaults to 80.
        input_shape: (height, width, 3), multiples of 32. Defaults to (512, 512, 3).
        weights: the backbone's weights when given by name. Defaults to None.
        max_level: the coarsest pyramid level, 5 to 7 (the paper: 7, P6 and P7
            for objects over 128 px). Defaults to 7.
        fpn_filters: channels of the pyramid and the heads, a multiple of 32.
            Defaults to 256.
        head_convs: 3x3 convolutions in each head before its output. Defaults to 4.
        anchor_size: the anchor side at level l is `anchor_size * 2**l` (times
            2^0, 2^(1/3), 2^(2/3)); 4 is the paper's 32-512 px, smaller for
            small objects. Defaults to 4.
        confidence_threshold: the lowest class probability `predict` keeps.
            Defaults to 0.3.
        name: the model name. Defaults to "retinanet_<backbone>".

    Example:

    >>> import kerasrecipes as kr
    >>> model = kr.create_model("retinanet", backbone="resnet18", num_classes=3,
    ...                         input_shape=(64, 64, 3))
    >>> model.output_shape  # box deltas and class logits of every anchor
    [(None, 774, 4), (None, 774, 3)]
    """
    if not 5 <= max_level <= 7:
        raise ValueError(f"max_level must be 5, 6 or 7. Received: max_level={max_level}")
    if fpn_filters % 32:
        raise ValueError(
            "fpn_filters must be a multiple of 32 (the heads' GroupNorm has 32 groups). "
            f"Received: fpn_filters={fpn_filters}"
        )
    if input_shape[0] % 32 or input_shape[1] % 32:
        raise ValueError(
            "retinanet: the input height and width must be multiples of 32: the feature "
            "pyramid doubles P5 to add it to P4 and P4 to add it to P3. Received: "
            f"input_shape={tuple(input_shape)}; resize the images (e.g. image_size="
            f"{32 * max(1, round(input_shape[0] / 32))})."
        )
    encoder = pyramid_encoder(backbone, input_shape, weights=weights)
    # C3-C5 where the encoder has them; a CIFAR-style encoder (strides 1-4) gives its deepest
    # map, from which the detector makes the missing levels (`_downsampled`).
    strides = [r for r in encoder.reductions if r in (8, 16, 32)] or [encoder.reductions[-1]]
    outputs = [encoder.model.outputs[encoder.reductions.index(r)] for r in strides]
    maps = keras.Model(encoder.model.inputs, outputs, name=encoder.model.name)
    preprocessing = encoder.preprocessing[0].mode if encoder.preprocessing else None
    return RetinaNet(
        maps,
        num_classes,
        input_shape,
        encoder_strides=strides,
        preprocessing=preprocessing,
        max_level=max_level,
        fpn_filters=fpn_filters,
        head_convs=head_convs,
        anchor_size=anchor_size,
        confidence_threshold=confidence_threshold,
        name=name or f"retinanet_{encoder.model.name}",
    )
