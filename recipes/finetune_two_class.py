"""
Title: Fine-tuning a pretrained backbone on a two-class folder (cats vs dogs)
Shows: the lecture's transfer-learning workflow step by step: read a folder of
    class folders and skip its unreadable files; phase 1, freeze the backbone and
    train a new head; phase 2, unfreeze the backbone with its BatchNorm layers still
    frozen and train with per-layer learning rates; curves with the phase boundary,
    a confusion matrix, a few predictions, and the saved `.keras` model.
Run:
    python recipes/finetune_two_class.py                       # offline demo: shapes, ~2 min
    python recipes/finetune_two_class.py --data PetImages/      # cats vs dogs, ImageNet weights
Reaches: on the demo data (ellipses vs pentagons, with a backbone pre-trained
    on ten other shapes), 0.99-1.00 validation accuracy; see the README.
    `kr.fine_tune` runs the same two phases in one call, and the
    `kerasrecipes finetune` command wraps it.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import kerasrecipes as kr  # before Keras: it sets TensorFlow's CPU start-up options

# isort: split
import keras
import numpy as np

"""
## Settings

The lecture's advice: a few epochs for the new head at a normal rate, then a
few more for everything with the backbone 10 times slower, so the pretrained
features are adjusted, not overwritten. The numbers are `kr.FineTuneConfig`'s
defaults, the same ones `kr.fine_tune` and `kerasrecipes finetune` use;
`resolve_config` picks the model, weights and input size for the data.
"""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    defaults = kr.FineTuneConfig()
    parser.add_argument("--data", help="folder of class folders (default: the demo shapes)")
    parser.add_argument("--model", help="with --data (default: efficientnet_b0)")
    parser.add_argument("--weights", help="imagenet (default with --data), demo, or a file")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--head-epochs", type=int, default=defaults.head_epochs)
    parser.add_argument("--finetune-epochs", type=int, default=defaults.finetune_epochs)
    parser.add_argument("--out", default="runs/finetune_two_class")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    config = kr.resolve_config(
        kr.FineTuneConfig(
            model=args.model,
            weights=args.weights,
            image_size=args.image_size,
            head_epochs=args.head_epochs,
            finetune_epochs=args.finetune_epochs,
        ),
        demo=args.data is None,
    )
    keras.utils.set_random_seed(config.seed)

    """
    ## The backbone

    With `--data`, an ImageNet-pretrained network through `keras.applications`'
    weights. Offline, the demo stands in for ImageNet: a small CNN pre-trained
    on ten shapes (made once, then cached). `load_backbone` also says how the
    weights want their input scaled; that step goes inside the model, so the
    saved model takes plain [0, 255] images.
    """
    backbone = kr.load_backbone(config.model, config.weights, config.image_size)
    data = args.data
    if data is None:
        data = kr.data.make_demo_dataset(
            os.path.join(kr.data.verify.default_cache_dir(), "demo", "target"), bad_files=True
        )
    print(f"Backbone: {backbone.description}")
    image_size = tuple(backbone.model.input_shape[1:3])  # a weights file decides its own

    """
    ## The data

    `image_folder` decodes every file once with the pipeline's own decoder and
    skips the ones that would stop training mid-epoch (empty, truncated, not an
    image, TIFF), reporting each. The split is stratified and seeded.
    """
    train, val, info = kr.data.image_folder(
        data,
        image_size=image_size,
        batch_size=config.batch_size,
        validation_split=config.validation_split,
        seed=config.seed,
    )
    print(f"Classes {info.class_names}: {info.counts} for training, {info.val_counts} held out")
    for path, reason in info.skipped:
        print(f"  skipped {path}: {reason}")

    """
    ## Phase 1: a new head on the frozen backbone

    `backbone.trainable = False` freezes every layer of it, BatchNorm included,
    and a frozen BatchNorm layer runs in inference mode: it normalizes with the
    statistics it learned on the source data.
    """
    inputs = keras.Input(backbone.model.input_shape[1:])
    x = inputs
    if backbone.preprocessing:
        x = kr.layers.ImagePreprocessing(backbone.preprocessing)(x)
    x = backbone.model(x)
    if len(x.shape) == 4:
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(x)
    x = keras.layers.Dropout(config.dropout, name="head_dropout")(x)
    outputs = keras.layers.Dense(info.num_classes, activation="softmax", name="head_dense")(x)
    model = keras.Model(inputs, outputs)

    backbone.model.trainable = False
    model.compile(
        optimizer=keras.optimizers.AdamW(config.head_lr, weight_decay=config.weight_decay),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    curves = kr.callbacks.TrainingCurves(os.path.join(args.out, "curves.png"))
    kr.callbacks.mark_phase(model, 0, "phase 1: head")
    model.fit(train, validation_data=val, epochs=config.head_epochs, callbacks=[curves], verbose=2)

    """
    ## Phase 2: unfreeze, with BatchNorm still frozen, at per-layer rates

    The trap (keras-team/keras#20285): in Keras 3, calling the backbone with
    `training=False` does not keep its BatchNorm layers in inference mode once
    the backbone is unfrozen; `fit` runs them in training mode and their moving
    statistics drift towards this small dataset's. What works is to leave each
    BatchNorm layer `trainable=False`, which `UnfreezeBackbone` does for us.

    `with_lr_multipliers` gives the head (the `head_*` layers) the full rate
    and everything else `backbone_lr_mult` of it; a cosine schedule takes the
    rate to 0 over the phase.
    """
    steps = int(train.cardinality()) * config.finetune_epochs
    optimizer = kr.optimizers.with_lr_multipliers(
        keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(config.finetune_lr, steps),
            weight_decay=config.weight_decay,
        ),
        {"head_": 1.0},
        default=config.backbone_lr_mult,
        model=model,
    )
    kr.optimizers.exclude_from_decay(optimizer, model)  # no decay on biases and norms
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    unfreeze = kr.callbacks.UnfreezeBackbone(backbone.model, epoch=config.head_epochs)
    model.fit(
        train,
        validation_data=val,
        initial_epoch=config.head_epochs,
        epochs=config.head_epochs + config.finetune_epochs,
        callbacks=[unfreeze, curves, kr.callbacks.LogLearningRates()],
        verbose=2,
    )

    """
    ## What the model gets right and wrong

    The validation split is never shuffled, so its predictions line up with
    `info.val_labels`.
    """
    probabilities = model.predict(val, verbose=0)
    matrix = kr.plots.confusion_matrix(info.val_labels, probabilities.argmax(-1), info.num_classes)
    kr.plots.plot_confusion(matrix, info.class_names, os.path.join(args.out, "confusion.png"))
    # Eight images spread over the validation split, which is in class order.
    chosen = np.linspace(0, len(info.val_labels) - 1, 8).astype(int)
    images = [image for i, (image, _) in enumerate(val.unbatch()) if i in set(chosen)]
    kr.plots.plot_predictions(
        images,
        info.val_labels[chosen],
        probabilities[chosen],
        info.class_names,
        os.path.join(args.out, "predictions.png"),
    )
    accuracy = matrix.trace() / matrix.sum()
    print(f"Validation accuracy {accuracy:.3f}; confusion matrix (rows: true class):\n{matrix}")

    """
    ## Save

    One `.keras` file holds the preprocessing, the backbone and the head.
    """
    path = os.path.join(args.out, "two_class.keras")
    model.save(path)
    print(f"Saved {path}, curves.png, confusion.png and predictions.png in {args.out}")
    return model, accuracy


if __name__ == "__main__":
    main()
