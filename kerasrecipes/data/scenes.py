"""Generated scenes for segmentation and detection: several shapes per image, masks and boxes.

`make_scenes` writes the formats users have, so the demo reads through the
same code as real data:

- `images/<id>.jpg`: the RGB scenes;
- `masks/<id>.png`: Pascal VOC style palette PNGs, one class index per
  pixel (0 = background);
- `classes.txt`: the class names, one per line, line `i` naming index `i`;
- `annotations.json`: the same objects as COCO instances (`bbox` as
  `[x, y, width, height]` in pixels, category ids 1..K).
"""

import json
import os

import numpy as np

from kerasrecipes.data.shapes import SHAPES, shape_area

# The scene classes are shapes the demo source task (`make_demo_dataset(task="source")`) does
# not have, so a backbone pre-trained there transfers rather than recognises.
SCENE_CLASSES = ("ellipse", "pentagon", "star")
BACKGROUND = "background"
# Pixels a VOC mask marks as "void" (object borders): ignored by the loss and the metrics.
VOID_INDEX = 255
# The range of each channel of a scene's background colour (before its gradient): dark, of any
# hue, green included; the figures' class colours (`kerasrecipes.plots.class_colours`) stand out
# from all of them.
BACKGROUND_LEVELS = (0.0, 0.45)


def voc_palette():
    """The Pascal VOC colour map: 256 RGB triples, index 255 light grey."""
    palette = np.zeros((256, 3), dtype="uint8")
    for index in range(256):
        value, red, green, blue = index, 0, 0, 0
        for bit in range(8):
            red |= ((value >> 0) & 1) << (7 - bit)
            green |= ((value >> 1) & 1) << (7 - bit)
            blue |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette[index] = (red, green, blue)
    palette[VOID_INDEX] = (224, 224, 192)
    return palette


def _scene(size, classes, rng, max_objects=4):
    """One scene: the image, its mask of class indices and its objects as (class, box)."""
    coords = np.linspace(-1.0, 1.0, size)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    background = rng.uniform(*BACKGROUND_LEVELS, 3)
    slope = rng.uniform(-0.25, 0.25, 3)
    image = np.clip(background + slope * (xx[..., None] + yy[..., None]) / 2, 0, 1)
    mask = np.zeros((size, size), dtype="uint8")
    instance = np.full((size, size), -1, dtype="int32")
    labels, placed = [], []
    for _ in range(rng.integers(1, max_objects + 1)):
        label = int(rng.integers(len(classes)))
        shape = classes[label]
        scale = min(rng.uniform(0.18, 0.35) * np.sqrt(shape_area("disk") / shape_area(shape)), 0.5)
        for _ in range(20):  # objects may touch, but none hides most of another
            cx, cy = rng.uniform(-0.95 + scale, 0.95 - scale, 2)
            if all(np.hypot(cx - x, cy - y) > 0.9 * (scale + s) for x, y, s in placed):
                break
        else:
            continue
        placed.append((cx, cy, scale))
        angle = rng.uniform(0, 2 * np.pi)
        cos, sin = np.cos(angle), np.sin(angle)
        local_x = ((xx - cx) * cos + (yy - cy) * sin) / scale
        local_y = (-(xx - cx) * sin + (yy - cy) * cos) / scale
        coverage = np.clip(0.5 - SHAPES[shape](local_x, local_y) * scale * size / 2, 0, 1)
        colour = np.clip(background + rng.uniform(0.35, 0.6, 3), 0, 1)
        image = coverage[..., None] * colour + (1 - coverage[..., None]) * image
        inside = coverage >= 0.5
        mask[inside] = label + 1
        instance[inside] = len(labels)
        labels.append(label)
    image = image + rng.normal(0, rng.uniform(0.02, 0.06), image.shape)
    objects = []
    for index, label in enumerate(labels):
        rows, columns = np.nonzero(instance == index)
        if len(rows) < 4:
            continue
        x0, y0 = int(columns.min()), int(rows.min())
        box = [x0, y0, int(columns.max()) + 1 - x0, int(rows.max()) + 1 - y0]
        objects.append((label, box, int(len(rows))))
    return np.clip(image * 255, 0, 255).astype("uint8"), mask, objects


def make_scenes(path, num_images=600, image_size=96, classes=SCENE_CLASSES, seed=0):
    """Writes `num_images` generated scenes in the VOC mask and COCO box formats (module doc).

    Returns `path`; a folder that already holds these scenes is left as it is,
    and any other non-empty folder is an error (nothing of a user's is overwritten).
    """
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2. Received: num_images={num_images}")
    if image_size < 32:
        raise ValueError(f"image_size must be >= 32. Received: image_size={image_size}")
    path = os.fspath(path)
    annotations_path = os.path.join(path, "annotations.json")
    if os.path.isdir(path) and os.listdir(path):
        if os.path.exists(annotations_path):
            with open(annotations_path) as file:
                found = json.load(file).get("info", {})
            wanted = {"num_images": num_images, "image_size": image_size, "seed": seed}
            if {key: found.get(key) for key in wanted} == wanted:
                return path
        raise FileExistsError(
            f"make_demo_dataset: {path} is not empty and does not hold these demo scenes "
            f"({num_images} images at {image_size} px, seed {seed}). Pass an empty or new folder."
        )
    import tensorflow as tf
    from PIL import Image

    for folder in ("images", "masks"):
        os.makedirs(os.path.join(path, folder), exist_ok=True)
    rng = np.random.default_rng(seed)
    palette = voc_palette().reshape(-1).tolist()
    coco = {
        "info": {
            "description": "kerasrecipes demo scenes",
            "num_images": num_images,
            "image_size": image_size,
            "seed": seed,
        },
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(classes)],
    }
    for image_id in range(1, num_images + 1):
        image, mask, objects = _scene(image_size, classes, rng)
        stem = f"scene_{image_id:05d}"
        with open(os.path.join(path, "images", f"{stem}.jpg"), "wb") as file:
            file.write(tf.io.encode_jpeg(image, quality=92).numpy())
        png = Image.fromarray(mask, mode="P")
        png.putpalette(palette)
        png.save(os.path.join(path, "masks", f"{stem}.png"))
        coco["images"].append(
            {"id": image_id, "file_name": f"{stem}.jpg", "width": image_size, "height": image_size}
        )
        for label, box, area in objects:
            coco["annotations"].append(
                {
                    "id": len(coco["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": label + 1,
                    "bbox": box,
                    "area": area,
                    "iscrowd": 0,
                }
            )
    with open(os.path.join(path, "classes.txt"), "w") as file:
        file.write("\n".join((BACKGROUND, *classes)) + "\n")
    # Written last: its presence marks a finished set.
    writing = annotations_path + ".writing"
    with open(writing, "w") as file:
        json.dump(coco, file)
    os.replace(writing, annotations_path)
    return path
