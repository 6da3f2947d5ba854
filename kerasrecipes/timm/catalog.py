"""Which timm checkpoints each of our models can take, with the top-1 their source states.

`catalog.json` lists, for every timm architecture we convert, its published
checkpoints (tags), each with its licence (timm's `pretrained_cfg`) and its
ImageNet-1k top-1 at its own input size and crop, from timm's
`results/results-imagenet.csv`. `kerasrecipes models --weights` reads it, so
listing needs neither timm nor the Hub. It is made with timm installed:

    python -m kerasrecipes.timm.catalog path/to/results-imagenet.csv

after adding a conversion (`kerasrecipes.timm.FAMILIES`).
"""

import csv
import json
import os
import sys

CATALOG_FILE = os.path.join(os.path.dirname(__file__), "catalog.json")
SOURCE = (
    "timm (github.com/huggingface/pytorch-image-models) results/results-imagenet.csv, "
    "ImageNet-1k validation top-1 at the checkpoint's own input size and crop"
)

# keras.applications' ImageNet weights (our `weights="imagenet"`), top-1 as keras.io's
# applications table states it (keras.io/api/applications); the models it gives none for
# (EfficientNet, ConvNeXt) are left without.
KERAS_APPLICATIONS_TOP1 = {
    "inception_v3": 77.9,
    "mobilenet_v2": 71.3,
    "resnet50": 74.9,
    "resnet101": 76.4,
    "resnet152": 76.6,
    "vgg16": 71.3,
    "vgg19": 71.3,
}


def read_catalog():
    """`{timm architecture: [{"tag", "top1", "input_size", "license"}, ...]}`, best first."""
    with open(CATALOG_FILE, encoding="utf-8") as file:
        return json.load(file)["checkpoints"]


def checkpoints_of(model_name):
    """`[(weights string, top-1 or None, input size, licence), ...]` our `model_name` takes."""
    from kerasrecipes.timm import architectures

    catalog = read_catalog()
    rows = []
    for timm_name, architecture in sorted(architectures().items()):
        if architecture.model != model_name:
            continue
        for entry in catalog.get(timm_name, []):
            rows.append(
                (
                    f"timm:{timm_name}.{entry['tag']}",
                    entry["top1"],
                    entry["input_size"],
                    entry["license"],
                )
            )
    return sorted(rows, key=lambda row: -(row[1] or 0))


def make_catalog(results_csv):
    """The catalog from timm's installed `pretrained_cfg`s and its results CSV."""
    import timm
    from timm.models import get_pretrained_cfg

    from kerasrecipes.timm import architectures

    with open(results_csv, encoding="utf-8") as file:
        results = list(csv.DictReader(file))
    checkpoints = {}
    for timm_name in sorted(architectures()):
        entries = []
        for name in timm.list_pretrained(f"{timm_name}.*"):
            tag = name.split(".", 1)[1]
            config = get_pretrained_cfg(name).to_dict()
            size = int(config["input_size"][-1])
            top1 = [
                float(row["top1"])
                for row in results
                if row["model"] == name and int(row["img_size"]) == size
            ]
            entries.append(
                {
                    "tag": tag,
                    "top1": top1[0] if top1 else None,
                    "input_size": size,
                    "license": config.get("license"),
                }
            )
        checkpoints[timm_name] = sorted(entries, key=lambda e: (-(e["top1"] or 0), e["tag"]))
    return {"source": SOURCE, "timm_version": timm.__version__, "checkpoints": checkpoints}


if __name__ == "__main__":
    import timm  # noqa: F401  (before TensorFlow: its LLVM and triton's crash in the other order)

    text = json.dumps(make_catalog(sys.argv[1]), indent=1)
    with open(CATALOG_FILE, "w", encoding="utf-8") as file:
        file.write(text + "\n")
    print(f"wrote {CATALOG_FILE}")
