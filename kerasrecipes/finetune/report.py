"""What a finished run leaves in its folder: the report, the figures and the model.

`fine_tune(out_dir=)` and the `kerasrecipes finetune` command both write the
run folder through `save_run`, so the same config gives the same report.
"""

import dataclasses
import json
import os
import time

from kerasrecipes.callbacks import TrainingCurves
from kerasrecipes.callbacks.unfreeze import unfreeze_label
from kerasrecipes.files import write_json
from kerasrecipes.finetune.config import (
    FineTuneConfig,
    describe_phase,
    parse_unfreeze,
    plan_phases,
)
from kerasrecipes.finetune.run_folder import IDENTITY_FILE, REPORT_FILE
from kerasrecipes.tasks import get_task

# The files every run folder may hold, `model.keras` last; each task adds its own
# (`Task.run_files`), listed before the model.
FILES = ("report.json", "history.csv", "curves.png", "model.keras")


def save_run(folder, model, history, config, phases, val_ds, info=None, backbone=None):
    """Writes `model.keras` (no optimizer state), the task's figures and results, the curves and
    `report.json` into `folder`."""
    task = get_task(config.task)
    num_classes = model.output_shape[-1] if info is None else len(info.class_names)
    class_names = list(info.class_names) if info else [str(i) for i in range(num_classes)]
    results = dict.fromkeys(task.result_keys)
    if history.status == "finished":
        results.update(task.save_results(folder, model, val_ds, class_names, config, backbone))
    draw_curves(folder, model)
    report = build_report(config, phases, history, info, backbone)
    report["lr_find"] = lr_find_records(folder)
    report["data"]["class_names"] = class_names
    report.update(results)
    report["files"] = [
        name
        for name in (*FILES[:-1], *task.run_files, FILES[-1])
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


def draw_curves(folder, model=None):
    """`curves.png` from the folder's recorded epochs, with `recorded_phase_lines`.

    `model` is not read (callers pass it): the lines come from the records, which a resumed
    run shares with an uninterrupted one, not from the marks this process put on the model.
    """
    rows = folder.rows()
    curves = TrainingCurves(folder.file("curves.png"))
    curves.epochs = {
        int(row["epoch"]): {k: float(v) for k, v in row.items() if k not in ("epoch", "phase")}
        for row in rows
    }
    return curves.draw(marks=recorded_phase_lines(rows, recorded_unfreezing(folder)))


def recorded_phase_lines(rows, unfreezing=None):
    """`{epoch: label}` (0-based) of the curves' lines: each phase's first recorded epoch, named
    after the phase, and each later step of its unfreezing schedule that its rows reached.

    From the records alone: a run resumed mid-phase unfreezes the backbone again at the epoch
    it resumes at, and the marks on its model would draw a phase change there.

    Args:
        rows: the recorded epochs, dicts with "epoch" and "phase" (`RunFolder.rows()`).
        unfreezing: `{phase name: {epoch in the phase: blocks}}` (`recorded_unfreezing`).
    """
    epochs_by_phase = {}
    for row in sorted(rows, key=lambda row: int(row["epoch"])):
        epochs_by_phase.setdefault(row["phase"], []).append(int(row["epoch"]))
    lines = {}
    for phase, epochs in epochs_by_phase.items():
        for step, blocks in (unfreezing or {}).get(phase, {}).items():
            if step > 0 and epochs[0] + step in epochs:
                lines[epochs[0] + step] = unfreeze_label(blocks)
        lines[epochs[0]] = phase
    return dict(sorted(lines.items()))


def recorded_unfreezing(folder):
    """`{phase name: {epoch in the phase: blocks}}` of the phases that train the backbone, from
    the config in the folder's `run.json` (none without it)."""
    identity = folder.read_json(IDENTITY_FILE)
    stored = identity.get("config") if isinstance(identity, dict) else None
    if not isinstance(stored, dict):
        return {}
    known = {field.name for field in dataclasses.fields(FineTuneConfig)}
    try:
        phases = plan_phases(FineTuneConfig(**{k: v for k, v in stored.items() if k in known}))
        return {p.name: parse_unfreeze(p.trains) for p in phases if p.trains != "head"}
    except (TypeError, ValueError):  # a config an older version wrote: the phase starts only
        return {}


def build_report(config, phases, history, info=None, backbone=None):
    """The report of a run: resolved config, data, each phase's epochs and results (the task's
    results are added by `save_run`)."""
    task = get_task(config.task)
    metric = task.main_metric
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
        if task.counts_are:
            data["counts_are"] = task.counts_are
    else:
        data = {}
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
        "seconds": {name: round(s, 1) for name, s in history.timings.items()},
    }


def summary_lines(report, out, saved_now=True):
    """The lines the command prints for a report (`saved_now`: written by this run)."""
    task = get_task(report["config"].get("task", "classification"))
    metric, words = task.main_metric, task.metric_words
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
    else:
        lines.extend(task.summary_lines(report))
    verb = "Saved" if saved_now else "Its files:"
    lines.append(f"{verb} {', '.join(report['files'])} in {out}/")
    return lines
