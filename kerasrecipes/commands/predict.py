"""`kerasrecipes predict`: the classes, masks or boxes of images, printed or written."""

import functools
import os

import numpy as np

from kerasrecipes.files import check_writable, csv_text, printable, write_atomically, write_json
from kerasrecipes.finetune import pipeline
from kerasrecipes.inference import load_model

BOX_COLUMNS = ("path", "label", "score", "x_min", "y_min", "x_max", "y_max")


def run(args):
    """The `predict` command: a line per image (or the --output file or folder), the skipped
    files listed; classes, masks or boxes, whichever model the run holds."""
    model = load_model(args.model)
    for path in args.paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file or folder.")
    kind = type(model).__name__
    if kind != "ImageClassifier" and (args.tta or args.top_k != 1):
        raise ValueError(f"--top-k and --tta apply to classifiers; {args.model} holds a {kind}.")
    if kind != "ObjectDetector" and args.confidence_threshold is not None:
        raise ValueError(
            f"--confidence-threshold applies to detectors; {args.model} holds a {kind}."
        )
    writers = {
        "ImageClassifier": _predict_classes,
        "ImageSegmenter": _predict_masks,
        "ObjectDetector": _predict_boxes,
    }
    with pipeline.quiet_scan_log():
        skipped = writers[kind](model, args)
    for path, reason in skipped[:10]:
        print(f"  skipped {printable(path)}: {printable(reason)}")
    if len(skipped) > 10:
        print(
            f"  ... and {len(skipped) - 10} more skipped" + (" (in --output)" * bool(args.output))
        )


def _each_path(model, args, **options):
    """`(predictions, root, shown)` for each path argument: a folder's images or one file, the
    folder output names are made relative to, and `shown(path)`, the way to print one of its
    paths (`_shown_path`)."""
    for given in args.paths:
        folder = os.path.isdir(given)
        predictions = model.predict_images(
            given if folder else [given], batch_size=args.batch_size, **options
        )
        root = given if folder else os.path.dirname(os.path.abspath(given))
        yield predictions, root, functools.partial(_shown_path, given=given)


def _shown_path(path, given):
    """`path`, a file of the argument `given` (`predict_images` makes it absolute), as the user
    reads it best: relative to the current folder when under it (`photos/cat.jpg`), else
    under `given` as typed (`../photos/cat.jpg`, `/data/cat.jpg`). Either opens the file from
    here, so the printed lines and the --output files can name it the same way."""
    absolute, here = os.path.abspath(path), os.getcwd()
    if os.path.commonpath([absolute, here]) == here:
        return os.path.relpath(absolute, here)
    if os.path.isdir(given):
        return os.path.join(given, os.path.relpath(absolute, os.path.abspath(given)))
    return given


def _shown_rows(rows, shown):
    """`rows` (dicts with a "path") with their paths as `shown` prints them."""
    return [dict(row, path=shown(row["path"])) for row in rows]


def _check_output_file(args):
    """The --output file, checked before any prediction: a .csv or .json name that can be
    written and is not an existing file (unless --overwrite)."""
    if not args.output:
        return
    if os.path.splitext(args.output)[1] not in (".csv", ".json"):
        raise ValueError(f"--output {args.output}: give a .csv or .json file name.")
    check_writable(args.output, overwrite=args.overwrite)


def _predict_classes(classifier, args):
    _check_output_file(args)
    rows, read = [], 0
    for predictions, _, shown in _each_path(classifier, args, top_k=args.top_k, tta=args.tta):
        rows += _shown_rows(predictions.rows(), shown)
        read += len(predictions)
    predicted = [row for row in rows if "label" in row]
    skipped = [(row["path"], row["skipped"]) for row in rows if "skipped" in row]
    if args.output:
        written = predicted + [row for row in rows if "skipped" in row]
        if args.output.endswith(".json"):
            write_json(args.output, written)
        else:
            write_atomically(args.output, csv_text(written))
        counts = {name: 0 for name in classifier.class_names}
        for row in predicted:
            counts[row["label"]] += 1
        shown = ", ".join(f"{printable(name)} {count}" for name, count in counts.items())
        print(f"{read} images classified ({shown}); written to {args.output}")
    else:
        for row in predicted:
            top = "  ".join(
                f"{printable(row[f'top{rank}_label'])} {row[f'top{rank}_probability']:.3f}"
                for rank in range(1, args.top_k + 1)
                if f"top{rank}_label" in row
            )
            print(f"{printable(row['path'])}  {top}")
    return skipped


def _predict_masks(segmenter, args):
    """Masks: printed as each class's share of the pixels, or with --output DIR written as
    class-index PNGs (DIR/masks), colour overlays (DIR/overlays) and DIR/predictions.csv."""
    if args.output and os.path.splitext(args.output)[1]:
        raise ValueError(f"--output {args.output}: give a folder for the masks and overlays.")
    if args.output and os.path.isdir(args.output) and os.listdir(args.output):
        raise FileExistsError(
            f"--output {args.output} is not empty; give a new folder (nothing is overwritten)."
        )
    if args.output:  # before predicting: the folder can be made there
        parent = os.path.dirname(os.path.abspath(args.output))
        if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
            raise PermissionError(f"--output {args.output}: cannot make a folder in {parent}.")
    results = list(_each_path(segmenter, args))
    skipped = _shown_skipped(results)
    if args.output:
        rows = []
        for predictions, root, shown in results:
            rows += _shown_rows(predictions.save(args.output, root=root), shown)
        write_atomically(os.path.join(args.output, "predictions.csv"), csv_text(rows))
        count = sum(len(predictions) for predictions, _, _ in results)
        print(
            f"{count} masks written to {args.output}/masks, overlays to {args.output}/overlays, "
            f"pixels per class to {args.output}/predictions.csv"
        )
        return skipped
    for predictions, _, shown in results:
        for prediction in predictions:
            shares = np.bincount(prediction.mask.reshape(-1), minlength=len(segmenter.class_names))
            shares = shares / max(shares.sum(), 1)
            pixels = "  ".join(
                f"{printable(name)} {share:.1%}"
                for name, share in zip(segmenter.class_names, shares)
                if share
            )
            print(f"{printable(shown(prediction.path))}  {pixels}")
    return skipped


def _shown_skipped(results):
    """`(path, reason)` of the files `_each_path`'s `results` skipped, their paths as shown."""
    return [(shown(path), why) for found, _, shown in results for path, why in found.skipped]


def _predict_boxes(detector, args):
    """Boxes: a line per image, or with --output a CSV (path, label, score, box) or a COCO
    results JSON (`{"images", "results", "categories"}`)."""
    _check_output_file(args)
    threshold = args.confidence_threshold
    results = list(_each_path(detector, args, confidence_threshold=threshold))
    skipped = _shown_skipped(results)
    if args.output:
        if args.output.endswith(".json"):
            write_json(args.output, _coco_results(detector, results))
        else:
            rows = [row for found, _, shown in results for row in _shown_rows(found.rows(), shown)]
            write_atomically(args.output, csv_text(rows, BOX_COLUMNS))
        count = sum(len(p.boxes) for predictions, _, _ in results for p in predictions)
        images = sum(len(predictions) for predictions, _, _ in results)
        print(f"{count} boxes on {images} images; written to {args.output}")
        return skipped
    for predictions, _, shown in results:
        for prediction in predictions:
            boxes = "  ".join(
                f"{printable(label)} {score:.2f} [{' '.join(f'{v:.0f}' for v in box)}]"
                for box, score, label in zip(prediction.boxes, prediction.scores, prediction.labels)
            )
            print(f"{printable(shown(prediction.path))}  {boxes or 'no boxes'}")
    return skipped


def _coco_results(detector, results):
    """One COCO results document for all of `_each_path`'s `results`: image ids numbered
    across the arguments, file names as printed."""
    images, found = [], []
    for predictions, _, shown in results:
        more_images, more_found = predictions.coco_results()
        offset = len(images)
        images += [
            dict(image, id=image["id"] + offset, file_name=shown(image["file_name"]))
            for image in more_images
        ]
        found += [dict(box, image_id=box["image_id"] + offset) for box in more_found]
    categories = [{"id": i, "name": n} for i, n in enumerate(detector.class_names)]
    return {"images": images, "results": found, "categories": categories}
