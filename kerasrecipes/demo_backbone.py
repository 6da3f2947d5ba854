"""The demo backbone: a network pre-trained on the demo source task, the demo's ImageNet.

`kr.load_backbone(model, weights="demo")` and `--weights demo` use it, so the
demo runs offline: `demo_backbone` trains `model` from scratch on ten
shapes once and caches it.
"""

import json
import os
import time

import keras

from kerasrecipes import _compat
from kerasrecipes.cards import DEMO_IMAGE_SIZE, DEMO_MODEL
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.precision import training_compile_options
from kerasrecipes.registry import create_model, model_card

DEMO_EPOCHS = 6
# A demo backbone below this source accuracy (ten classes) is named as not converged wherever it
# is used: mobilenet_v2 reached 0.213 in its 6 epochs at 32 px, and a fine-tune from it stayed at
# 0.500; resnet18 reached 0.713 and detection on it 0.78 mAP@.5; baseline_cnn 1.000.
DEMO_CONVERGED_ACCURACY = 0.5


def demo_backbone(
    model=DEMO_MODEL, image_size=DEMO_IMAGE_SIZE, epochs=DEMO_EPOCHS, cache_dir=None, verbose="auto"
):
    """A backbone pre-trained on the demo source task, made once and cached.

    The demo's stand-in for ImageNet weights: `model` (without top, max
    pooling) is trained from scratch on `make_demo_dataset(task="source")`
    (3,000 images of ten shapes) for `epochs` epochs at `image_size`, and
    saved with its input scaling (`ImagePreprocessing("unit")`) to
    `<cache>/demo/backbones/`, with a JSON report beside it. Later calls load
    the file. The training backs up after every epoch, so an interrupted
    pre-training resumes.

    Args:
        model: a registered model name. Defaults to "baseline_cnn".
        image_size: int, the input height and width. Defaults to 32.
        epochs: int, epochs of pre-training. Defaults to 6.
        cache_dir: folder of the cache; `$KERASRECIPES_CACHE` or
            `~/.cache/kerasrecipes` when None. Defaults to None.
        verbose: `fit`'s verbosity. Defaults to "auto".

    Returns:
        `(backbone, report)`: the model, [0, 255] images in and one feature
        vector per image out, and a dict with `val_accuracy`, `seconds`,
        `epochs`, `path`.
    """
    # Here, not at the top: `kerasrecipes.backbones` imports this module and loads without
    # TensorFlow (JAX and PyTorch machines), which `kerasrecipes.data` imports.
    from kerasrecipes.data import image_folder, make_demo_dataset
    from kerasrecipes.data.verify import default_cache_dir

    root = os.path.join(cache_dir or default_cache_dir(), "demo")
    key = f"{model}_{image_size}px_{epochs}ep"
    path = os.path.join(root, "backbones", f"{key}.keras")
    report_path = path.removesuffix(".keras") + ".json"
    if os.path.exists(path) and os.path.exists(report_path):
        with open(report_path) as file:
            report = json.load(file)
        return keras.saving.load_model(path, compile=False), {**report, "path": path}

    model_card(model)  # an unknown name fails before any work
    source = make_demo_dataset(os.path.join(root, "source"), task="source")
    print(
        f"Pre-training {model} on the demo source task (10 shapes, {source}) for {epochs} "
        f"epochs at {image_size}x{image_size}; cached for later runs at {path}"
    )
    train, val, _ = image_folder(
        source, image_size=(image_size, image_size), batch_size=64, validation_split=0.1
    )
    inputs = keras.Input((image_size, image_size, 3), name="images")
    net = create_model(
        model,
        include_top=False,
        include_preprocessing=False,  # the "preprocessing" layer below scales the images
        pooling="max",
        input_shape=(image_size, image_size, 3),
    )
    features = net(ImagePreprocessing("unit", name="preprocessing")(inputs))
    backbone = keras.Model(inputs, features, name=f"{model}_demo")
    classifier = keras.Sequential(
        [backbone, keras.layers.Dense(10, activation="softmax", name="head_dense")]
    )
    steps = int(train.cardinality()) * epochs
    classifier.compile(
        optimizer=keras.optimizers.AdamW(
            keras.optimizers.schedules.CosineDecay(3e-3, steps), weight_decay=1e-4
        ),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **training_compile_options(),
    )
    _compat.build_before_fit(classifier, train)  # one trace of the train step, not two
    started = time.perf_counter()
    history = classifier.fit(
        train,
        validation_data=val,
        epochs=epochs,
        callbacks=[keras.callbacks.BackupAndRestore(os.path.join(root, "backup", key))],
        verbose=verbose,
    )
    report = {
        "model": model,
        "image_size": image_size,
        "epochs": epochs,
        "val_accuracy": float(classifier.evaluate(val, verbose=0, return_dict=True)["accuracy"]),
        "seconds": round(time.perf_counter() - started, 1),
        "epochs_run_in_this_call": len(history.epoch),
    }
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path.removesuffix(".keras") + ".tmp.keras"
    backbone.save(temporary)
    os.replace(temporary, path)
    with open(report_path, "w") as file:
        json.dump(report, file, indent=1)
    return backbone, {**report, "path": path}
