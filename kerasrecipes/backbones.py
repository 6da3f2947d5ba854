"""Backbones to fine-tune: a registered model with ImageNet weights, a file, or the demo backbone.

`load_backbone(model, weights)` returns the network without its classifier
and the input preprocessing its weights need, ready for `kr.fine_tune`:

* `weights="imagenet"`: built with our builder, which loads the
  keras.applications weights (downloaded once to `~/.keras/models`) and
  ports them variable for variable.
* a `.weights.h5` file: loaded into our builder's network.
* a `.keras` file: the model saved in it, cut before its `head_*` layers when it
  has a classifier (e.g. a model `fine_tune` saved); its preprocessing is
  the saved model's own.
* `"demo"`: pre-trained on the demo source task (ten shapes) and cached, so
  the demo runs offline.
* None or "none": random initialization.
"""

import json
import os
import time
import warnings

import keras

from kerasrecipes.features import LoadedBackbone
from kerasrecipes.layers.preprocessing import ImagePreprocessing
from kerasrecipes.precision import training_compile_options
from kerasrecipes.registry import HEAD_PREFIX, create_model, model_card

DEMO_MODEL = "baseline_cnn"
DEMO_IMAGE_SIZE = 32
DEMO_EPOCHS = 6
# A demo backbone below this source accuracy (ten classes) is named as not converged wherever it
# is used: mobilenet_v2 reached 0.213 in its 6 epochs at 32 px, and a fine-tune from it stayed at
# 0.500; resnet18 reached 0.713 and detection on it 0.78 mAP@.5; baseline_cnn 1.000.
DEMO_CONVERGED_ACCURACY = 0.5


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights could not be fetched (no network, or the download failed)."""


def load_backbone(
    model,
    weights="imagenet",
    image_size=None,
    preprocessing="auto",
    pooling=None,
    verbose="auto",
    **model_kwargs,
):
    """Builds or loads a backbone to fine-tune; see the module docstring for `weights`.

    Args:
        model: a registered model name (`kr.list_models()`); for a `.keras`
            file and for "demo" it names the architecture only when the file
            has to be made.
        weights: "imagenet", "demo", None / "none", or a path to a `.keras`
            or `.weights.h5` file. Defaults to "imagenet".
        image_size: int, the input height and width; None for the model's
            default (32 for "demo"). Defaults to None.
        preprocessing: "auto" (the model applies its card's preprocessing
            itself, `kr.model_card(model).preprocessing`: what its ImageNet
            weights expect) or an `ImagePreprocessing` mode, for which the
            raw network is built (`include_preprocessing=False`) and the
            mode returned for `fine_tune` to put in front. Defaults to "auto".
        pooling: None, "avg" or "max": pool the output inside the backbone.
            Defaults to None (the head of `fine_tune` pools).
        verbose: `fit`'s verbosity when the demo backbone is pre-trained.
            Defaults to "auto".
        **model_kwargs: more arguments of the model's builder, e.g. `alpha`.

    Returns:
        a `LoadedBackbone(model, preprocessing, description)`.

    Raises:
        ValueError: an unknown model name, a model without ImageNet weights,
            or a file of the wrong kind.
        FileNotFoundError: a weights path that does not exist.
        WeightsUnavailableError: the ImageNet weights could not be downloaded.
    """
    if weights == "none":
        weights = None
    if weights == "demo":
        backbone, report = demo_backbone(
            model or DEMO_MODEL, image_size or DEMO_IMAGE_SIZE, verbose=verbose
        )
        description = (
            f"{backbone.name}: pre-trained on the demo source task "
            f"(validation accuracy {report['val_accuracy']:.3f}), cached at {report['path']}"
        )
        if report["val_accuracy"] < DEMO_CONVERGED_ACCURACY:
            description += (
                f". WARNING: its pre-training ended far from converged (below "
                f"{DEMO_CONVERGED_ACCURACY:.2f} on the 10-shape source task), so its features may "
                "not transfer; baseline_cnn (the demo's default) reaches 0.99 or more"
            )
            warnings.warn(f"load_backbone: {description}", stacklevel=2)
        return LoadedBackbone(backbone, _mode(preprocessing, None), description)
    if isinstance(weights, (str, os.PathLike)) and os.fspath(weights).endswith(".keras"):
        path = os.fspath(weights)
        if not os.path.exists(path):
            raise FileNotFoundError(f"Weights file not found: {path}.")
        saved = keras.saving.load_model(path, compile=False)
        backbone = backbone_of(getattr(saved, "network", saved))  # a kr.ImageClassifier's network
        return LoadedBackbone(backbone, _mode(preprocessing, None), f"{backbone.name}: {path}")

    card = model_card(model)
    size = image_size or card.default_input_shape[0]
    # "auto": the model applies its card's preprocessing itself; a mode given
    # explicitly goes in front of the raw network (fine_tune adds it).
    inside = preprocessing == "auto"
    try:
        backbone = create_model(
            model,
            include_top=False,
            include_preprocessing=inside,
            pooling=pooling,
            input_shape=(size, size, 3),
            weights=weights,
            **model_kwargs,
        )
    except Exception as error:
        if weights == "imagenet" and _is_download_error(error):
            raise WeightsUnavailableError(
                f"Could not download the ImageNet weights of {model!r} through "
                f"keras.applications ({_first_line(error)}). Without network, use weights "
                "'demo', 'none', or a .keras/.weights.h5 file."
            ) from error
        raise
    origin = "random initialization"
    if weights is not None:
        origin = "ImageNet" if weights == "imagenet" else os.fspath(weights)
    return LoadedBackbone(backbone, None if inside else preprocessing, f"{backbone.name}: {origin}")


def backbone_of(model):
    """`model` without its `head_*` layers (pooling, dropout, classifier), or as it is."""
    heads = [layer for layer in model.layers if layer.name.startswith(HEAD_PREFIX)]
    if not heads:
        return model
    if getattr(model, "inputs", None) is None or len(heads) == len(model.layers):
        raise ValueError(
            f"Cannot cut the head off model {model.name!r}: it is not a functional model "
            "whose layers before the head_* ones end in the features."
        )
    # The first head layer's input is the features in this model's graph (a nested
    # backbone's own `.output` would be a tensor of its inner graph).
    features = heads[0].input
    name = model.name.removesuffix("_finetuned")
    return keras.Model(model.inputs, features, name=name)


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
    # Here, not at the top: the model builders load without `kerasrecipes.data` (TensorFlow).
    from kerasrecipes.data import image_folder, make_demo_dataset
    from kerasrecipes.data.verify import default_cache_dir  # as above

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
        [backbone, keras.layers.Dense(10, activation="softmax", name=f"{HEAD_PREFIX}dense")]
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


def _mode(preprocessing, automatic):
    return automatic if preprocessing == "auto" else preprocessing


def _is_download_error(error):
    text = f"{type(error).__name__}: {error}"
    markers = ("URL fetch failure", "HTTP Error", "urlopen error", "Name or service", "Errno")
    return any(marker in text for marker in markers) or isinstance(error, OSError)


def _first_line(error):
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
