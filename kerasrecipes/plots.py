"""Figures of a finished run: the confusion matrix, a grid of predictions, segmentation overlays."""

import os

import numpy as np

from kerasrecipes.files import replaced_atomically


def save_figure(figure, path, dpi=100):
    """Saves a matplotlib figure to `path` through a temporary file, so a kill never leaves half a
    PNG; closes the figure."""
    import matplotlib.pyplot as plt

    path = os.fspath(path)
    try:
        with replaced_atomically(path, ".png") as writing:
            figure.savefig(writing, dpi=dpi)
    finally:
        plt.close(figure)
    return path


def grid_shape(count, most_columns=4):
    """`(rows, columns)` of a gallery of `count` images: no more columns than images and the
    rows filled evenly, so a short gallery leaves no empty cells beside or below it.

    >>> grid_shape(1), grid_shape(3), grid_shape(5), grid_shape(12)
    ((1, 1), (1, 3), (2, 3), (3, 4))
    """
    count = max(1, count)
    rows = -(-count // most_columns)
    return rows, -(-count // rows)


def image_grid(count, cell=(2.2, 2.4), most_columns=4):
    """`(figure, axes)`: a figure of `grid_shape(count)` cells of `cell` inches (width, height)
    each, so the canvas grows with the images rather than being fixed; its axes flat, all off.

    Its constrained layout leaves room for the titles and a `suptitle` without `tight_layout`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, columns = grid_shape(count, most_columns)
    figure, axes = plt.subplots(
        rows,
        columns,
        figsize=(cell[0] * columns, cell[1] * rows),
        squeeze=False,
        layout="constrained",
    )
    for axis in axes.flat:
        axis.axis("off")
    return figure, list(axes.flat)


def figure_title(figure, text, fontsize=10):
    """Sets `text` as the figure's title, wrapped to the figure's width (a one-image gallery is
    narrower than a long title), the figure taller by its lines so the images keep their size."""
    import textwrap

    characters_per_inch = 120 / fontsize  # about, in matplotlib's default font
    width = max(12, int(figure.get_figwidth() * characters_per_inch))
    lines = textwrap.wrap(text, width, break_on_hyphens=False)
    line_height = 1.4 * fontsize / 72  # inches
    figure.set_figheight(figure.get_figheight() + line_height * len(lines))
    figure.suptitle("\n".join(lines), fontsize=fontsize)


def confusion_matrix(labels, predictions, num_classes):
    """Counts `[true class, predicted class]` of integer labels and predictions.

    >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1], 2).tolist()
    [[1, 1], [0, 2]]
    """
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (np.asarray(labels, int), np.asarray(predictions, int)), 1)
    return matrix


def plot_confusion(matrix, class_names, path, title=None):
    """Writes the confusion matrix as a PNG: counts in the cells, rows the true class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.2 + 0.5 * len(class_names)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if count > threshold else "black"
        axis.text(column, row, str(count), ha="center", va="center", color=color)
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    axis.set_title(title or f"accuracy {accuracy:.3f} on {matrix.sum()} images")
    figure.tight_layout()
    return save_figure(figure, path)


def plot_predictions(images, labels, probabilities, class_names, path, columns=4):
    """Writes a grid of images titled with the predicted class and its probability.

    Wrong predictions are titled in red with the true class after the arrow.
    `images` are [0, 255] RGB arrays.
    """
    figure, axes = image_grid(len(images), most_columns=columns)
    for axis, image, label, probability in zip(axes, images, labels, probabilities):
        axis.imshow(np.clip(np.asarray(image), 0, 255).astype("uint8"))
        predicted, truth = int(np.argmax(probability)), int(label)
        title = f"{class_names[predicted]} {probability[predicted]:.2f}"
        if predicted != truth:
            title += f" -> {class_names[truth]}"
        axis.set_title(title, fontsize=9, color="black" if predicted == truth else "red")
    return save_figure(figure, path)


# Okabe and Ito's colour-blind-safe colours without their black and bluish green, brightest
# first: the demo scenes' backgrounds are dark, of random hues, green among them, where the VOC
# map's class 2 (the pentagon's, (0, 128, 0)) disappeared.
DISTINCT_CLASS_COLOURS = (
    (230, 159, 0),  # orange
    (86, 180, 233),  # sky blue
    (240, 228, 66),  # yellow
    (204, 121, 167),  # reddish purple
    (213, 94, 0),  # vermillion
    (0, 114, 178),  # blue
)


def class_colours():
    """256 RGB triples to draw classes over images in: index 0 (background) black, then
    `DISTINCT_CLASS_COLOURS`, then the VOC colours for further classes; 255 (void) VOC grey.

    Mask files keep the VOC palette (`kerasrecipes.data.scenes.voc_palette`), their convention;
    figures use these, which stay apart from each other and from green or dark backgrounds.
    """
    # Here, not at the top: importing `kerasrecipes.data` imports TensorFlow, which the plots
    # do not need.
    from kerasrecipes.data.scenes import voc_palette

    colours = voc_palette()
    colours[1 : 1 + len(DISTINCT_CLASS_COLOURS)] = DISTINCT_CLASS_COLOURS
    return colours


def blend_mask(image, mask, alpha=0.5):
    """`image` ([0, 255] RGB) with `mask`'s classes painted over it (`class_colours`), each region
    outlined in its colour at full strength, so a class stays visible on a background of a close
    colour; background (0) and void (255) pixels are left as they are."""
    from kerasrecipes.data.scenes import VOID_INDEX  # see `class_colours`

    image = np.clip(np.asarray(image, "float32"), 0, 255)
    mask = np.asarray(mask).astype(int)
    colours = class_colours()[mask].astype("float32")
    painted = (mask > 0) & (mask != VOID_INDEX)
    image[painted] = (1 - alpha) * image[painted] + alpha * colours[painted]
    outline = painted & region_edges(mask)
    image[outline] = colours[outline]
    return image.astype("uint8")


def region_edges(mask):
    """Whether each pixel of `mask` has a 4-neighbour of another value: the inner rim of every
    region, where an outline goes.

    >>> region_edges(np.array([[0, 0, 0], [0, 1, 1], [0, 1, 1]])).astype(int).tolist()
    [[0, 1, 1], [1, 1, 1], [1, 1, 0]]
    """
    mask = np.asarray(mask)
    edges = np.zeros(mask.shape, bool)
    down = mask[1:, :] != mask[:-1, :]
    right = mask[:, 1:] != mask[:, :-1]
    edges[1:, :] |= down
    edges[:-1, :] |= down
    edges[:, 1:] |= right
    edges[:, :-1] |= right
    return edges


def plot_segmentation(images, true_masks, predicted_masks, class_names, path):
    """Writes rows of image | true mask over it | predicted mask over it, with a colour legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    count = len(images)
    figure, axes = plt.subplots(count, 3, figsize=(6.6, 2.2 * count + 0.5), squeeze=False)
    for row in range(count):
        panels = (
            np.clip(images[row], 0, 255).astype("uint8"),
            blend_mask(images[row], true_masks[row]),
            blend_mask(images[row], predicted_masks[row]),
        )
        for axis, panel, title in zip(axes[row], panels, ("image", "true", "predicted")):
            axis.imshow(panel)
            axis.axis("off")
            if row == 0:
                axis.set_title(title, fontsize=9)
    palette = class_colours() / 255.0
    handles = [
        patches.Patch(color=palette[index], label=name)
        for index, name in enumerate(class_names)
        if index > 0
    ]
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8)
    figure.tight_layout(rect=(0, 0.5 / (2.2 * count + 0.5), 1, 1))
    return save_figure(figure, path)


def plot_detections(images, truth, predicted, class_names, path, columns=4):
    """Writes a grid of images with their true boxes (dashed) and up to 10 predicted boxes each.

    `truth`: `{"boxes", "labels"}` padded with label -1; `predicted`: a
    detector's `{"boxes", "labels", "confidence", "num_detections"}`.
    Boxes are `[x_min, y_min, x_max, y_max]` pixels.
    """
    import matplotlib.patches as patches

    colours = class_colours()[1:] / 255.0
    figure, axes = image_grid(len(images), cell=(2.4, 2.4), most_columns=columns)
    for index, axis in enumerate(axes[: len(images)]):
        axis.imshow(np.clip(images[index], 0, 255).astype("uint8"))
        for box, label in zip(truth["boxes"][index], truth["labels"][index]):
            if label >= 0:
                x0, y0, x1, y1 = box
                axis.add_patch(
                    patches.Rectangle(
                        (x0, y0),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        linestyle="--",
                        linewidth=1,
                        edgecolor="white",
                    )
                )
        height, width = np.shape(images[index])[:2]
        for slot in range(min(int(predicted["num_detections"][index]), 10)):
            # An untrained detector's boxes may lie far outside the image: drawn clipped to it.
            x0, x1 = np.clip(predicted["boxes"][index][slot][0::2], 0, width)
            y0, y1 = np.clip(predicted["boxes"][index][slot][1::2], 0, height)
            if x1 <= x0 or y1 <= y0:
                continue
            label = int(predicted["labels"][index][slot])
            colour = colours[label % len(colours)]
            axis.add_patch(
                patches.Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5, edgecolor=colour
                )
            )
            score = predicted["confidence"][index][slot]
            axis.text(
                x0,
                y0,
                f"{class_names[label]} {score:.2f}",
                fontsize=6,
                color="black",
                backgroundcolor=colour,
                va="bottom",
            )
    figure_title(figure, "dashed: true boxes; solid: predicted", fontsize=9)
    return save_figure(figure, path)


def plot_image_grid(images, titles, path, columns=4, draw=None):
    """Writes a grid of `images` ([0, 255] RGB) titled with `titles`; `draw(axis, index)`, if
    given, draws over each image (boxes)."""
    figure, axes = image_grid(len(images), most_columns=columns)
    for index, (axis, image, title) in enumerate(zip(axes, images, titles)):
        axis.imshow(np.clip(np.asarray(image), 0, 255).astype("uint8"))
        axis.set_title(title, fontsize=9)
        if draw is not None:
            draw(axis, index)
    return save_figure(figure, path)


def draw_boxes(axis, boxes, labels, class_names):
    """Draws `[x_min, y_min, x_max, y_max]` pixel boxes with their class names; label -1 pads."""
    import matplotlib.patches as patches

    colours = class_colours()[1:] / 255.0
    for box, label in zip(boxes, labels):
        if label < 0:
            continue
        x0, y0, x1, y1 = box
        colour = colours[int(label) % len(colours)]
        axis.add_patch(
            patches.Rectangle(
                (x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5, edgecolor=colour
            )
        )
        axis.text(
            x0,
            y0,
            class_names[int(label)],
            fontsize=6,
            color="black",  # the class colours are light
            backgroundcolor=colour,
            va="bottom",
        )
