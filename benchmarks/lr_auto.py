"""Does `--lr auto` pay? The default rates against the LR range test's pick, on four jobs.

`--lr auto` (`head_lr="auto"`, `finetune_lr="auto"`) runs `kr.callbacks.LRFinder`
for 100 steps before each phase and trains at its suggestion. This script runs
each job twice per seed, once at the defaults' rates and once with "auto",
everything else at the command's defaults (`kr.resolve_config(data=...)`), and
prints the validation accuracy of the model `fine_tune` returns and the wall
time, range test included.

The jobs (generated here, offline), none of them the one the defaults were
tuned on:

- `two_class`: two stripe classes at 32 px, 272 images (218 to train), ResNet-20
  from scratch: the shape of the job in issue 32;
- `stripes`: ten stripe classes, 2,000 images at 32 px, ResNet-20 from scratch;
- `shapes`: the demo's ten-shape source task (3,000 images at 64 px),
  `baseline_cnn` from scratch;
- `target`: the two-class demo target, fine-tuned from the demo backbone.

Run: python benchmarks/lr_auto.py [--jobs two_class stripes] [--seeds 0 1]
"""

import argparse
import dataclasses
import os
import statistics
import tempfile
import time

import numpy as np
from PIL import Image

import kerasrecipes as kr

JOBS = {
    # job: (model, weights)
    "two_class": ("resnet20", "none"),
    "stripes": ("resnet20", "none"),
    "shapes": ("baseline_cnn", "none"),
    "target": (None, "demo"),
}


def write_stripes(folder, num_images, classes, seed):
    images, labels = kr.data.demo_images(num_images=num_images * 5, num_classes=10, seed=seed)
    keep = np.isin(labels, classes)
    for index, (image, label) in enumerate(zip(images[keep][:num_images], labels[keep])):
        class_folder = os.path.join(folder, f"class{label}")
        os.makedirs(class_folder, exist_ok=True)
        Image.fromarray(np.asarray(image)).save(os.path.join(class_folder, f"{index}.png"))


def make_data(root):
    folders = {job: os.path.join(root, job) for job in JOBS}
    if not os.path.isdir(folders["two_class"]):
        write_stripes(folders["two_class"], 272, classes=(2, 5), seed=7)
    if not os.path.isdir(folders["stripes"]):
        write_stripes(folders["stripes"], 2000, classes=tuple(range(10)), seed=11)
    kr.data.make_demo_dataset(folders["shapes"], task="source")
    kr.data.make_demo_dataset(folders["target"], task="target")
    return folders


def train(job, folder, seed, rate):
    model, weights = JOBS[job]
    config = kr.resolve_config(
        model=model, weights=weights, demo=job == "target", data=folder, seed=seed, verbose=0
    )
    if rate == "auto":
        config = dataclasses.replace(config, head_lr="auto", finetune_lr="auto")
    backbone = kr.load_backbone(config.model, weights, image_size=config.image_size, verbose=0)
    size = (config.image_size, config.image_size)
    train_ds, val_ds, info = kr.data.image_folder(
        folder, image_size=size, batch_size=config.batch_size, validation_split=0.2, seed=seed
    )
    start = time.perf_counter()
    trained, _ = kr.fine_tune(backbone, train_ds, val_ds, config=config, info=info)
    seconds = time.perf_counter() - start
    accuracy = float(trained.evaluate(val_ds, verbose=0, return_dict=True)["accuracy"])
    return accuracy, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", nargs="+", default=list(JOBS), choices=list(JOBS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--folder", default=None, help="where the jobs' data go (default: temp)")
    args = parser.parse_args(argv)
    folders = make_data(args.folder or tempfile.mkdtemp(prefix="lr_auto_"))
    print("job | rate | seed | val accuracy | seconds")
    for job in args.jobs:
        results = {"default": [], "auto": []}
        for seed in args.seeds:
            for rate in ("default", "auto"):
                accuracy, seconds = train(job, folders[job], seed, rate)
                results[rate].append((accuracy, seconds))
                print(f"{job} | {rate} | {seed} | {accuracy:.3f} | {seconds:.0f}", flush=True)
        for rate, rows in results.items():
            accuracy = statistics.mean(a for a, _ in rows)
            seconds = statistics.mean(s for _, s in rows)
            print(f"{job} {rate}: mean val accuracy {accuracy:.3f}, mean {seconds:.0f} s")


if __name__ == "__main__":
    main()
