"""timm's VGG-16 and VGG-19, plain and batch-normalized (`vgg16`, `vgg16_bn`, `vgg19`,
`vgg19_bn`, tag `tv_in1k`: torchvision's weights).

Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale
Image Recognition" (arXiv:1409.1556). timm's `features` is torchvision's
sequence of conv (with bias) [BatchNorm, eps 1e-5] ReLU ... MaxPool, numbered
as one list: `features.N` is our `stage{i}_block{j}_conv` (and `_bn` after
it), the batch-normalized checkpoints loading into our builder's
`batch_norm=True`. timm's top holds the paper's fully connected layers as
convolutions: `pre_logits.fc1` a 7x7 convolution (fc6), `pre_logits.fc2` a 1x1
(fc7), then global average pooling and `head.fc`. On the 7x7 map of a 224x224
input this is exactly our flattening top (`head_fc1`, `head_fc2`, `head_dense`),
fc6's kernel flattened in our (height, width, channels) order. At another size
the two differ (timm slides fc6 over the map and averages, or upsamples a map
smaller than 7x7), so a checkpoint with its top loads at 224 only; without the
top (`include_top=False`) the convolutional backbone loads at any size.

Our BatchNorm epsilon is the shared 1.001e-5 (keras.applications'), not
PyTorch's 1e-5: a relative change of 5e-9 / (running variance + 1e-5) in a
channel, under 1e-6 for any variance above 0.005 (at most 5e-4, for a dead
channel of variance ~0).
"""

from kerasrecipes.timm.convert import Architecture

FLATTENED_MAP = 7 * 7 * 512  # fc6's input: the 7x7x512 map of a 224x224 image


def _features(loader, model):
    """Our `stage{i}_block{j}_conv` / `_bn` layers from timm's `features.N`, walked in order:
    conv [bn] relu per convolution, a max pooling after each stage."""
    names = {layer.name for layer in model.layers}
    index = 0
    for stage in range(1, 6):
        block = 1
        while f"stage{stage}_block{block}_conv" in names:
            prefix = f"stage{stage}_block{block}"
            loader.conv(loader.layer(f"{prefix}_conv"), f"features.{index}")
            index += 1
            if f"{prefix}_bn" in names:
                loader.batch_norm(loader.layer(f"{prefix}_bn"), f"features.{index}")
                index += 1
            index += 1  # the ReLU
            block += 1
        index += 1  # the max pooling


def _hidden_layers(loader, model):
    """fc6 and fc7 (timm's `pre_logits.fc1`, `.fc2`) into `head_fc1`, `head_fc2`; consumed
    without loading when the model has no top."""
    names = {layer.name for layer in model.layers}
    if "head_fc1" not in names:
        loader.used.update(key for key in loader.tensors if key.startswith("pre_logits."))
        return
    fc1 = loader.layer("head_fc1")
    if fc1.kernel.shape[0] != FLATTENED_MAP:
        raise ValueError(
            f"{loader.name}: timm's VGG top is fc6 as a 7x7 convolution, which our flattening "
            f"top equals on the 7x7 map of a 224x224 input only; this model's top takes "
            f"{fc1.kernel.shape[0]} features. Pass input_shape=(224, 224, 3), or "
            "include_top=False (with pooling='avg') for the backbone at any size."
        )
    loader.dense(fc1, "pre_logits.fc1")
    loader.dense(loader.layer("head_fc2"), "pre_logits.fc2")


def convert(loader, model, architecture):
    """timm keys `features.N`, `pre_logits.fc1`, `pre_logits.fc2`, `head.fc` into
    `stage{i}_block{j}_conv` / `_bn`, `head_fc1`, `head_fc2`, `head_dense`."""
    _features(loader, model)
    _hidden_layers(loader, model)
    loader.head("head_dense", "head.fc")


ARCHITECTURES = {
    f"vgg{depth}{suffix}": Architecture(f"vgg{depth}", convert, {"batch_norm": bool(suffix)})
    for depth in (16, 19)
    for suffix in ("", "_bn")
}

UNSUPPORTED = {
    **{
        f"vgg{depth}{suffix}": f"configuration {config} (VGG-{depth}) is not one of our models; "
        "we build VGG-16 and VGG-19 (configurations D and E)"
        for depth, config in ((11, "A"), (13, "B"))
        for suffix in ("", "_bn")
    },
    **{
        name: "RepVGG (Ding et al. 2021) is a multi-branch network re-parameterized into "
        "3x3 convolutions, with other widths and depths than VGG"
        for name in (
            "repvgg_a0",
            "repvgg_a1",
            "repvgg_a2",
            "repvgg_b0",
            "repvgg_b1",
            "repvgg_b1g4",
            "repvgg_b2",
            "repvgg_b2g4",
            "repvgg_b3",
            "repvgg_b3g4",
            "repvgg_d2se",
        )
    },
}
