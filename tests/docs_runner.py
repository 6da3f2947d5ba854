"""Runs the Python blocks of one markdown page, each on its own: `python tests/docs_runner.py PAGE`.

Each block runs in a namespace of its own and an empty folder of its own, as
a reader who pastes just that block runs it; a block that reads `runs/demo`
(what `make demo` leaves) gets a small stand-in run of the demo's data.

keras.applications' ImageNet downloads are replaced by local `.weights.h5`
files of the right shapes (random values), made on first use, so the blocks
that download run here without network. The timm checkpoints a page names
("timm:ARCH.TAG") are timm's own models with random weights and the tag's
`pretrained_cfg`, saved into a Hugging Face cache of the run's own, which the
Hub's offline mode then reads. Used by tests/test_docs.py.

On TensorFlow the blocks run their `tf.function`s eagerly (`tf.config.run_functions_eagerly`),
unless `--traced` is given (as `make test-slow` does). A block trains a few steps on a few
images, and tracing its train step cost more than running it: the nine pages took 340 s
traced and 245 s eager, run two at a time on 2 cores. tf.data pipelines are traced either
way. The traced train steps of the same models and tools are tested in test_models.py,
test_finetune.py and the other files. Traced, every `fit` builds its optimizer and metrics
before it traces (tests/single_trace.py), which changes no value and saves a second trace
of the train step.
"""

import hashlib
import os
import pathlib
import re
import sys
import time

DOWNLOAD_MARK = "# Downloads ImageNet weights"
DEMO_RUN = "runs/demo"
# The keras.applications functions our cards port from (`kr.model_card(name).pretrained`),
# listed here so that patching them needs no TensorFlow call before the page's first block.
TWINS = (
    "ConvNeXtBase",
    "ConvNeXtLarge",
    "ConvNeXtSmall",
    "ConvNeXtTiny",
    "ConvNeXtXLarge",
    "EfficientNetB0",
    "EfficientNetB1",
    "EfficientNetB2",
    "EfficientNetB3",
    "EfficientNetB4",
    "EfficientNetB5",
    "EfficientNetB6",
    "EfficientNetB7",
    "InceptionV3",
    "MobileNetV2",
    "ResNet101",
    "ResNet152",
    "ResNet50",
    "VGG16",
    "VGG19",
)


def python_blocks(page):
    return re.findall(r"```python\n(.*?)```", pathlib.Path(page).read_text(), flags=re.DOTALL)


def use_local_timm_checkpoints(page, cache):
    """Every "timm:ARCH.TAG" of `page`'s Python blocks as a random twin in the Hub cache
    `cache`, read offline."""
    code = "\n".join(python_blocks(page))
    names = sorted(set(re.findall(r"timm:(\w+\.\w+)", code)))
    if not names:
        return
    # Before huggingface_hub is imported (by timm): it reads them once.
    os.environ.update(HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    import timm  # before TensorFlow (kerasrecipes._startup.load_triton_before_tensorflow)
    from timm.models import save_for_hf

    for name in names:
        repo = cache / f"models--timm--{name}"
        snapshot = repo / "snapshots" / ("0" * 40)
        save_for_hf(timm.create_model(name, pretrained=False), snapshot, safe_serialization=True)
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text("0" * 40)


def use_local_imagenet_weights(folder):
    # As each block starts: kerasrecipes before Keras, so TensorFlow starts with the CPU
    # options it sets (oneDNN on, the pooling allocator); Keras first would leave them off.
    import kerasrecipes  # noqa: F401, I001

    import keras

    folder.mkdir(exist_ok=True)
    for name in TWINS:
        original = getattr(keras.applications, name)

        def twin(*args, weights="imagenet", _original=original, _name=name, **kwargs):
            if weights != "imagenet":
                return _original(*args, weights=weights, **kwargs)
            key = hashlib.sha1(repr(sorted(kwargs.items())).encode()).hexdigest()[:12]
            path = folder / f"{_name}_{key}.weights.h5"
            if not path.exists():
                _original(*args, weights=None, **kwargs).save_weights(path)
            return _original(*args, weights=str(path), **kwargs)

        setattr(keras.applications, name, twin)


def main(page, traced=False):
    use_local_timm_checkpoints(page, pathlib.Path("hub").resolve())
    use_local_imagenet_weights(pathlib.Path("imagenet_weights").resolve())
    import keras

    if keras.backend.backend() == "tensorflow" and not traced:
        import tensorflow as tf

        tf.config.run_functions_eagerly(True)
    from single_trace import build_before_every_fit

    build_before_every_fit()  # one trace of each train step, not two, as in tests/
    blocks = python_blocks(page)
    home = pathlib.Path.cwd()
    for index, block in enumerate(blocks, start=1):
        # Each block alone, as a reader pastes it: its own namespace and an empty folder.
        folder = home / f"block{index}"
        folder.mkdir()
        os.chdir(folder)
        if DEMO_RUN in block:
            make_demo_run()
        started = time.perf_counter()
        namespace = {"__name__": "__main__"}
        exec(compile(block, f"{pathlib.Path(page).name} (block {index})", "exec"), namespace)
        print(f"block {index}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(f"ran {len(blocks)} blocks of {pathlib.Path(page).name}")


def make_demo_run():
    """A stand-in for the run folder `make demo` leaves in `runs/demo`: the demo's data, a
    plain CNN trained for one epoch (the real one pre-trains a backbone for a minute)."""
    import kerasrecipes as kr

    config = kr.FineTuneConfig(
        model="baseline_cnn", weights="none", finetune_epochs=1, batch_size=32, out_dir=DEMO_RUN
    )
    kr.run(config, kr.data.make_demo_dataset("demo_data", num_images=64), echo=lambda line: None)


if __name__ == "__main__":
    main(sys.argv[1], traced="--traced" in sys.argv[2:])
