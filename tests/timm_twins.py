"""timm's own models as the twins our conversions must match, saved into a temporary Hub cache.

A twin is built with `pretrained=False`; its every norm, bias and scale is
drawn at random (so no block is an identity: timm starts residual branches
at zero), and it is saved with timm's own `save_for_hf`, the writer of the
Hub's timm repositories, into the cache layout `huggingface_hub` reads
offline. Tests then load it through `weights="timm:NAME.TAG"`.
"""

import json
import os
import shutil

import numpy as np

TAG = "twin_in1k"
# Parity asked by issue 36: max |ours - timm| / max |timm| over the logits.
TOLERANCE = 1e-4
SNAPSHOT = "0" * 40


def random_twin(architecture, seed=0, **kwargs):
    """timm's `architecture` with random weights, statistics and scales, in eval mode."""
    import timm
    import torch

    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, **kwargs)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim <= 1 and not name.endswith("bias"):  # norms' scales, layer scales
                parameter.uniform_(0.5, 1.5)
            elif parameter.ndim <= 1:
                parameter.normal_(0.0, 0.1)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model.eval()


def save_to_hub_cache(model, cache, architecture, tag=TAG):
    """Saves `model` as the Hub repository `timm/ARCHITECTURE.TAG` in the cache folder `cache`;
    returns the weights string, "timm:ARCHITECTURE.TAG"."""
    from timm.models import save_for_hf

    repo = os.path.join(cache, f"models--timm--{architecture}.{tag}")
    snapshot = os.path.join(repo, "snapshots", SNAPSHOT)
    save_for_hf(model, snapshot, safe_serialization=True)
    os.makedirs(os.path.join(repo, "refs"), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as file:
        file.write(SNAPSHOT)
    return f"timm:{architecture}.{tag}"


def save_to_folder(model, folder):
    """Saves `model` as a local checkpoint: `model.safetensors` and `config.json`."""
    from timm.models import save_for_hf

    save_for_hf(model, folder, safe_serialization=True)
    return os.path.join(folder, "model.safetensors")


def timm_logits(model, images):
    """timm's logits for `images` (NHWC, [0, 255]) through timm's own evaluation transform
    (`timm.data.create_transform` with the twin's mean, std and interpolation) of the images
    as uint8 PIL images: at their own size with the whole image kept, so its resize and crop
    keep them as they are, and its `ToTensor` and `Normalize` do the preprocessing."""
    import torch
    from PIL import Image
    from timm.data import create_transform

    config = model.pretrained_cfg
    size = images.shape[1]
    transform = create_transform(
        input_size=(3, size, size),
        crop_pct=1.0,
        mean=config["mean"],
        std=config["std"],
        interpolation=config.get("interpolation", "bilinear"),
    )
    pixels = [Image.fromarray(np.asarray(image).round().astype("uint8")) for image in images]
    with torch.no_grad():
        return model(torch.stack([transform(image) for image in pixels])).numpy()


def relative_difference(ours, theirs):
    """max |ours - theirs| over max |theirs|."""
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def random_images(size, count=2, seed=0):
    """`count` RGB images of `size` x `size`, whole values in [0, 255] (float32), unlike each
    other: noise of growing smoothness over colour gradients of different directions."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 1.0, size, dtype="float32")
    images = []
    for index in range(count):
        angle = np.pi * index / max(count, 1)
        ramp = np.cos(angle) * grid[None, :, None] + np.sin(angle) * grid[:, None, None]
        colour = rng.uniform(0.2, 1.0, 3).astype("float32")
        noise = rng.uniform(-1, 1, (size, size, 3)).astype("float32") / (1 + index)
        images.append(np.clip(127.5 * (1 + noise) * 0.5 + 127.5 * ramp * colour, 0, 255))
    return np.stack(images).round().astype("float32")  # whole values, as uint8 images hold


def remove(path):
    shutil.rmtree(path, ignore_errors=True)


def config_of(folder):
    with open(os.path.join(folder, "config.json")) as file:
        return json.load(file)


def check_parity(hub_cache, architecture, model_name, size, **twin_kwargs):
    """Saves timm's random `architecture` into `hub_cache`, loads it as our `model_name` at
    `size` pixels and asserts the logits agree; returns (our model, timm's twin)."""
    import kerasrecipes as kr

    twin = random_twin(architecture, **twin_kwargs)
    weights = save_to_hub_cache(twin, hub_cache, architecture)
    model = kr.create_model(
        model_name, weights=weights, input_shape=(size, size, 3), classifier_activation=None
    )
    images = random_images(size)
    theirs = timm_logits(twin, images)
    ours = np.asarray(model(images, training=False))
    # The twin's output depends on its input: two images give clearly different logits.
    assert relative_difference(theirs[0], theirs[1]) > 0.05
    difference = relative_difference(ours, theirs)
    assert difference <= TOLERANCE, f"{architecture}: relative difference {difference:.2e}"
    print(f"parity {architecture} -> {model_name} at {size}px: {difference:.1e}")
    return model, twin
