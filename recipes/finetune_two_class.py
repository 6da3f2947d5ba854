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

import keras
import numpy as np

import kerasrecipes as kr

"""
## Settings

The lecture's advice: a few epochs for the new head at a normal rate, then a
few more for everything with the backbone 10 times slower, so the pretrained
features are adjusted, not overwritten.
"""

HEAD_EPOCHS = 4
HEAD_LR = 3e-3
FINETUNE_EPOCHS = 6
BACKBONE_LR_MULT = 0.1  # the backbone's rate relative to the head's in phase 2
WEIGHT_DECAY = 1e-4
BATCH_SIZE = 32
SEED = 0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", help="folder of class folders (default: the demo shapes)")
    parser.add_argument("--model", default="efficientnet_b0", help="with --data")
    parser.add_argument("--weights", help="imagenet (default with --data), demo, or a file")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--head-epochs", type=int, default=HEAD_EPOCHS)
    parser.add_argument("--finetune-epochs", type=int, default=FINETUNE_EPOCHS)
    parser.add_argument("--out", default="runs/finetune_two_class")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    keras.utils.set_random_seed(SEED)

    """
    ## The backbone

    With `--data`, an ImageNet-pretrained network through `keras.applications`'
    weights. Offline, the demo stands in for ImageNet: a small CNN pre-trained
    on ten shapes (made once, then cached). `load_backbone` also says how the
    weights want their input scaled; that step goes inside the model, so the
    saved model takes plain [0, 255] images.
    """
    if args.data:
        backbone = kr.load_backbone(args.model, args.weights or "imagenet", args.image_size)
        data = args.data
    else:
        backbone = kr.load_backbone(None, args.weights or "demo", args.image_size)
        data = kr.data.make_demo_dataset(
            os.path.join(kr.data.verify.default_cache_dir(), "demo", "target"), bad_files=True
        )
    print(f"Backbone: {backbone.description}")
    image_size = tuple(backbone.model.input_shape[1:3])

    """
    ## The data

    `image_folder` decodes every file once with the pipeline's own decoder and
    skips the ones that would stop training mid-epoch (empty, truncated, not an
    image, TIFF), reporting each. The split is stratified and seeded.
    """
    train, val, info = kr.data.image_folder(
        data, image_size=image_size, batch_size=BATCH_SIZE, validation_split=0.2, seed=SEED
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
    x = keras.layers.Dropout(0.2, name="head_dropout")(x)
    outputs = keras.layers.Dense(info.num_classes, activation="softmax", name="head_dense")(x)
    model = keras.Model(inputs, outputs)

    backbone.model.trainable = False
    model.compile(
        optimizer=keras.optimizers.AdamW(HEAD_LR, weight_decay=WEIGHT_DECAY),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    curves = kr.callbacks.TrainingCurves(os.path.join(args.out, "curves.png"))
    kr.callbacks.mark_phase(model, 0, "phase 1: head")
    model.fit(train, validation_data=val, epochs=args.head_epochs, callbacks=[curves], verbose=2)

    """
    ## Phase 2: unfreeze, with BatchNorm still frozen, at per-layer rates

    The trap (keras-team/keras#20285): in Keras 3, calling the backbone with
    `training=False` does not keep its BatchNorm layers in inference mode once
    the backbone is unfrozen; `fit` runs them in training mode and their moving
    statistics drift towards this small dataset's. What works is to leave each
    BatchNorm layer `trainable=False`, which `UnfreezeBackbone` does for us.

    `with_lr_multipliers` gives the head the full rate and the backbone a tenth
    of it; a cosine schedule takes the rate to 0 over the phase.
    """
    steps = int(train.cardinality()) * args.finetune_epochs
    optimizer = kr.optimizers.with_lr_multipliers(
        keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(HEAD_LR, steps), weight_decay=WEIGHT_DECAY
        ),
        {"head": 1.0, f"{backbone.model.name}/": BACKBONE_LR_MULT},
        model=model,
    )
    kr.optimizers.exclude_from_decay(optimizer, model)  # no decay on biases and norms
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    unfreeze = kr.callbacks.UnfreezeBackbone(backbone.model, epoch=args.head_epochs)
    model.fit(
        train,
        validation_data=val,
        initial_epoch=args.head_epochs,
        epochs=args.head_epochs + args.finetune_epochs,
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
