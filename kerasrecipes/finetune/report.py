"""What a finished run leaves in its folder: the report, the figures and the model.

`fine_tune(out_dir=)` and the `kerasrecipes finetune` command both write the
run folder through `save_run`, so the same config gives the same report.
"""

import json
import os
import time

import keras
import numpy as np

from kerasrecipes import plots
from kerasrecipes.callbacks import TrainingCurves, phase_marks
from kerasrecipes.finetune.config import describe_phase
from kerasrecipes.finetune.run_folder import REPORT_FILE, write_json

FILES = ("report.json", "history.csv", "curves.png", "confusion.png", "model.keras")


def save_run(folder, model, history, config, phases, val_ds, info=None, backbone=None):
    """Writes `model.keras` (no optimizer state), the figures and `report.json` into `folder`."""
    finished = history.status == "finished"
    if config.task != "classification":
        return _save_dense_run(folder, model, history, config, phases, val_ds, info, backbone)
    matrix = None
    if finished and val_ds is not None:
        labels, predictions = predict_labels(model, val_ds)
        matrix = plots.confusion_matrix(labels, predictions, model.output_shape[-1])
        names = list(info.class_names) if info else [str(i) for i in range(len(matrix))]
        plots.plot_confusion(matrix, names, folder.file("confusion.png"))
    if finished:
        save_inference_model(
            model,
            folder.file("model.keras"),
            class_names=list(info.class_names) if info else None,
            source={"model": config.model, "weights": config.weights, "backbone": backbone},
        )
    draw_curves(folder, model)
    report = build_report(config, phases, history, matrix, info, backbone)
    report["lr_find"] = lr_find_records(folder)
    report["files"] = [
        name for name in FILES if name == REPORT_FILE or os.path.exists(folder.file(name))
    ]
    write_json(folder.file(REPORT_FILE), report)
    return report


def _save_dense_run(folder, model, history, config, phases, val_ds, info, backbone):
    """`save_run` for segmentation and detection: `model.keras`, `overlays.png`, and the IoU or
    the COCO mAP in the report."""
    from kerasrecipes.finetune import tasks

    num_classes = model.output_shape[-1]
    class_names = list(info.class_names) if info else [str(i) for i in range(num_classes)]
    results = {}
    if history.status == "finished":
        results = tasks.save_dense_run(folder, model, config.task, val_ds, class_names)
    draw_curves(folder, model)
    report = build_report(config, phases, history, None, info, backbone)
    report["lr_find"] = lr_find_records(folder)
    report["data"]["class_names"] = class_names
    report.update(results)
    report["files"] = [
        name
        for name in (REPORT_FILE, "history.csv", "curves.png", "overlays.png", "model.keras")
        if name == REPORT_FILE or os.path.exists(folder.file(name))
    ]
    write_json(folder.file(REPORT_FILE), report)
    return report


def lr_find_records(folder):
    """`{phase: {"suggested_lr", "min_loss_lr", "curve"}}` of the phases whose rate the LR range
    test picked; "curve" names `lr_find/<phase>.json`, which holds the whole sweep."""
    records = {}
    folder_path = folder.file("lr_find")
    if not os.path.isdir(folder_path):
        return records
    for name in sorted(os.listdir(folder_path)):
        if name.endswith(".json"):
            with open(os.path.join(folder_path, name)) as file:
                record = json.load(file)
            records[name.removesuffix(".json")] = {
                "suggested_lr": record["suggested_lr"],
                "min_loss_lr": record["min_loss_lr"],
                "curve": os.path.join("lr_find", name),
            }
    return records


def save_inference_model(model, path, class_names=None, source=None):
    """Saves `model` as a `kr.ImageClassifier` for inference, without optimizer state, atomically.

    A new functional model over the same layers shares the weights without a
    copy and has no optimizer; the classifier around it records the class
    names, input size, preprocessing and `source`, so
    `kr.load_classifier(run_folder)` needs nothing else.
    """
    from kerasrecipes.inference.classifier import ImageClassifier

    inputs, outputs = model.inputs, model.outputs
    if len(inputs) == 1 and len(outputs) == 1:  # one tensor each, called with one tensor
        inputs, outputs = inputs[0], outputs[0]
    inference = keras.Model(inputs, outputs, name=model.name)
    classifier = ImageClassifier(
        inference,
        class_names=class_names,
        preprocessing=preprocessing_of(model, (source or {}).get("model")),
        source=source,
    )
    writing = f"{os.fspath(path)[: -len('.keras')]}.writing.keras"
    classifier.save(writing)
    os.replace(writing, path)


def preprocessing_of(model, model_name=None):
    """The input scaling inside `model`: its `ImagePreprocessing` layer's mode, else the card's."""
    from kerasrecipes._compat import sublayers
    from kerasrecipes.layers.preprocessing import ImagePreprocessing
    from kerasrecipes.registry import find_card, list_models, model_card

    for layer in sublayers(model, recursive=True):
        if isinstance(layer, ImagePreprocessing):
            return layer.mode
    card = model_card(model_name) if model_name in list_models() else find_card(model)
    return card.preprocessing if card else None


def predict_labels(model, dataset):
    """`(true labels, predicted labels)` over a dataset of `(images, labels)`, one-hot or not."""
    labels, predictions = [], []
    for images, batch_labels in dataset:
        probabilities = keras.ops.convert_to_numpy(model(images, training=False))
        batch_labels = np.asarray(batch_labels)
        if batch_labels.ndim == 2:
            batch_labels = batch_labels.argmax(-1)
        labels.append(batch_labels.reshape(-1))
        predictions.append(probabilities.argmax(-1))
    if not labels:
        return np.zeros(0, int), np.zeros(0, int)
    return np.concatenate(labels), np.concatenate(predictions)


def draw_curves(folder, model=None):
    """`curves.png` from the folder's recorded epochs, a line at each phase's start."""
    rows = folder.rows()
    curves = TrainingCurves(folder.file("curves.png"))
    curves.epochs = {
        int(row["epoch"]): {k: float(v) for k, v in row.items() if k not in ("epoch", "phase")}
        for row in rows
    }
    marks = dict(phase_marks(model)) if model is not None else {}
    for row in rows:  # the phase names win over the unfreezing marks at a phase's start
        if _first_of_phase(rows, row):
            marks[int(row["epoch"])] = row["phase"]
    return curves.draw(marks=marks)


def _first_of_phase(rows, row):
    earlier = [r for r in rows if int(r["epoch"]) < int(row["epoch"])]
    return not earlier or earlier[-1]["phase"] != row["phase"]


def build_report(config, phases, history, matrix, info=None, backbone=None):
    """The report of a run: resolved config, data, each phase's epochs and results, accuracy."""
    from kerasrecipes.finetune.tasks import MAIN_METRIC

    metric = MAIN_METRIC[config.task]
    by_name = {phase.name: phase for phase in phases}
    report_phases = {}
    for name in history.phases:
        first, end = history.phase_range(name)
        logs = history.phase_logs(name)
        report_phases[name] = {
            "description": describe_phase(by_name[name]),
            "first_epoch": first + 1,
            "epochs": end - first,
            metric: logs.get(metric),
            f"val_{metric}": logs.get(f"val_{metric}"),
            "val_loss": logs.get("val_loss"),
            "trained_in_this_call": name in history.timings,
            "seconds": round(history.timings[name], 1) if name in history.timings else None,
        }
    if info is not None:
        data = {
            "class_names": list(info.class_names),
            "train_counts": dict(info.counts),
            "val_counts": dict(info.val_counts),
            "skipped": [[os.fspath(path), reason] for path, reason in info.skipped],
        }
        if config.task != "classification":
            data["counts_are"] = {"segmentation": "labelled pixels", "detection": "boxes"}[
                config.task
            ]
    else:
        data = {"num_classes": None if matrix is None else len(matrix)}
    accuracy = None if matrix is None else float(np.trace(matrix) / max(matrix.sum(), 1))
    return {
        "status": history.status,
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": config.to_dict(),
        "phase_plan": [
            {
                "name": phase.name,
                "epochs": phase.epochs,
                "trains": phase.trains,
                "learning_rate": phase.learning_rate,
                "backbone_lr_mult": phase.backbone_lr_mult,
                "layer_decay": phase.layer_decay,
                "train_bn": phase.train_bn,
                "schedule": phase.schedule,
                "warmup": phase.warmup,
            }
            for phase in phases
        ],
        "backbone": backbone,
        "data": data,
        "phases": report_phases,
        "val_accuracy": accuracy,
        "confusion_matrix": None if matrix is None else matrix.tolist(),
        "seconds": {name: round(s, 1) for name, s in history.timings.items()},
    }


def summary_lines(report, out, saved_now=True):
    """The lines the command prints for a report (`saved_now`: written by this run)."""
    from kerasrecipes.finetune.tasks import MAIN_METRIC

    metric = MAIN_METRIC[report["config"].get("task", "classification")]
    words = {"mean_iou": "mean IoU", "map50": "mAP@.5"}.get(metric, metric)
    lines = []
    for phase in report["phases"].values():
        value = phase[f"val_{metric}"]
        shown = "n/a" if value is None else f"{value:.3f}"
        earlier = "" if phase["trained_in_this_call"] else " (trained earlier)"
        lines.append(
            f"Phase {phase['description']}: epochs {phase['first_epoch']}-"
            f"{phase['first_epoch'] + phase['epochs'] - 1}, validation {words} {shown}{earlier}"
        )
    if report["status"] != "finished":
        lines.append(f"Run {report['status']}")
    elif report.get("mean_iou") is not None:
        per_class = ", ".join(
            f"{name} {value:.3f}" for name, value in report["per_class_iou"].items()
        )
        lines.append(f"Final validation mean IoU {report['mean_iou']:.3f} ({per_class})")
    elif report.get("map50") is not None:
        per_class = ", ".join(
            f"{name} {value:.3f}"
            for name, value in report["per_class_ap"].items()
            if value is not None
        )
        lines.append(
            f"Final validation COCO mAP@.5 {report['map50']:.3f}, mAP@[.5:.95] {report['map']:.3f} "
            f"(AP per class: {per_class})"
        )
    elif report["val_accuracy"] is not None:
        lines.append(
            f"Final validation accuracy {report['val_accuracy']:.3f} (best weights restored)"
        )
    verb = "Saved" if saved_now else "Its files:"
    lines.append(f"{verb} {', '.join(report['files'])} in {out}/")
    return lines
