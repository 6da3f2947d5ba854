"""`kerasrecipes predict`: the classes, masks or boxes of images, printed or written."""

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
    """`(predictions, root)` for each path argument: a folder's images, or one file."""
    for path in args.paths:
        folder = os.path.isdir(path)
        predictions = model.predict_images(
            path if folder else [path], batch_size=args.batch_size, **options
        )
        yield predictions, path if folder else os.path.dirname(os.path.abspath(path))


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
    for predictions, _ in _each_path(classifier, args, top_k=args.top_k, tta=args.tta):
        rows += predictions.rows()
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
    skipped = [item for predictions, _ in results for item in predictions.skipped]
    if args.output:
        rows = []
        for predictions, root in results:
            rows += predictions.save(args.output, root=root)
        write_atomically(os.path.join(args.output, "predictions.csv"), csv_text(rows))
        count = sum(len(predictions) for predictions, _ in results)
        print(
            f"{count} masks written to {args.output}/masks, overlays to {args.output}/overlays, "
            f"pixels per class to {args.output}/predictions.csv"
        )
        return skipped
    for predictions, _ in results:
        for prediction in predictions:
            shares = np.bincount(prediction.mask.reshape(-1), minlength=len(segmenter.class_names))
            shares = shares / max(shares.sum(), 1)
            shown = "  ".join(
                f"{printable(name)} {share:.1%}"
                for name, share in zip(segmenter.class_names, shares)
                if share
            )
            print(f"{printable(prediction.path)}  {shown}")
    return skipped


def _predict_boxes(detector, args):
    """Boxes: a line per image, or with --output a CSV (path, label, score, box) or a COCO
    results JSON (`{"images", "results", "categories"}`)."""
    _check_output_file(args)
    threshold = args.confidence_threshold
    results = [p for p, _ in _each_path(detector, args, confidence_threshold=threshold)]
    skipped = [item for predictions in results for item in predictions.skipped]
    if args.output:
        if args.output.endswith(".json"):
            images, found = [], []
            for predictions in results:
                more_images, more_found = predictions.coco_results()
                offset = len(images)
                images += [dict(image, id=image["id"] + offset) for image in more_images]
                found += [dict(box, image_id=box["image_id"] + offset) for box in more_found]
            categories = [{"id": i, "name": n} for i, n in enumerate(detector.class_names)]
            write_json(args.output, {"images": images, "results": found, "categories": categories})
        else:
            rows = [row for predictions in results for row in predictions.rows()]
            write_atomically(args.output, csv_text(rows, BOX_COLUMNS))
        count = sum(len(p.boxes) for predictions in results for p in predictions)
        images = sum(len(predictions) for predictions in results)
        print(f"{count} boxes on {images} images; written to {args.output}")
        return skipped
    for predictions in results:
        for prediction in predictions:
            boxes = "  ".join(
                f"{printable(label)} {score:.2f} [{' '.join(f'{v:.0f}' for v in box)}]"
                for box, score, label in zip(prediction.boxes, prediction.scores, prediction.labels)
            )
            print(f"{printable(prediction.path)}  {boxes or 'no boxes'}")
    return skipped
