"""Bucket ablations: which change of a training recipe really drives its accuracy.

The method of the design's first source: sort every change into four
buckets (architecture, data, regularization, optimization) and ablate them,
because a recipe that changes several at once "muddles the true driver of
performance" (Bello et al. 2021 match EfficientNet with a plain ResNet and
modern training). `ablate` runs a baseline, each bucket's change alone, all
of them together and all but one (leave-one-out), each over several seeds,
and reports what each bucket gains alone, what is lost without it, and
whether the buckets add up or interact.

No anchor has this: timm, fastai and keras-hub have no ablation tool, and
KerasTuner searches hyperparameters without attributing the gain to
buckets. Every run is a `fine_tune` run folder, so the grid resumes where it
was killed: finished runs are read back, an interrupted one resumes from
its last epoch.
"""

import dataclasses
import json
import os
import re
import statistics

import numpy as np

from kerasrecipes.data.demo import make_demo_dataset
from kerasrecipes.data.verify import default_cache_dir, verify_images
from kerasrecipes.files import write_json
from kerasrecipes.finetune.config import FineTuneConfig
from kerasrecipes.finetune.pipeline import run

BUCKETS = ("architecture", "data", "regularization", "optimization")
# A cell within this of chance (1 / classes) in validation accuracy is flagged and left out of
# the verdict; it "collapsed" when its training accuracy is more than LEARNED_MARGIN above chance.
AT_CHANCE_MARGIN = 0.05
LEARNED_MARGIN = 0.2
# A baseline at or above this validation accuracy leaves the buckets little to show.
NEAR_CEILING = 0.98
BASELINE = "baseline"
ALL = "all"

# The demo study: the 10 shape classes of the demo's source task (1,000 generated 32x32 images),
# a plain CNN trained from scratch with plain SGD, nothing else. Every cell gets the same budget
# rule, `fine_tune`'s from scratch: 1,000 steps (40 epochs here), warm-up and cosine, stopped
# early once converged. With SGD at 0.05, ResNet-20 stayed at chance after 125 steps (the earlier
# 5 epochs) and 300 (training accuracy 0.19), and reached 0.985 after 1,000.
DEMO_IMAGES = 1000
DEMO_BASELINE = {
    "model": "baseline_cnn",
    "weights": "none",
    "image_size": 32,
    "head_epochs": 0,
    "head_lr": 0.05,
    "optimizer": "sgd",
    "weight_decay": 0.0,
    "dropout": 0.0,
    "label_smoothing": 0.0,
    "augment": None,
    "precision": "float32",
}
DEMO_CHANGES = {
    "architecture": {"model": "resnet20"},
    "data": {"augment": "cifar"},
    "regularization": {"weight_decay": 5e-4, "label_smoothing": 0.1},
    "optimization": {"optimizer": "adamw", "head_lr": 3e-3},
}


@dataclasses.dataclass
class Variant:
    """One cell of the grid: a name and the buckets whose change it applies."""

    name: str
    buckets: tuple

    def overrides(self, changes):
        merged = {}
        for bucket in self.buckets:
            merged.update(changes[bucket])
        return merged


def variants(buckets):
    """Baseline, each bucket alone, all together, and all but one (when that is new)."""
    buckets = tuple(buckets)
    grid = [Variant(BASELINE, ())]
    grid += [Variant(f"+{bucket}", (bucket,)) for bucket in buckets]
    if len(buckets) > 1:
        grid.append(Variant(ALL, buckets))
    if len(buckets) > 2:  # with 2 buckets, all-but-one is the other bucket alone
        grid += [
            Variant(f"{ALL}-{bucket}", tuple(b for b in buckets if b != bucket))
            for bucket in buckets
        ]
    return grid


@dataclasses.dataclass
class AblationResult:
    """What `ablate` found.

    Attributes:
        rows: one dict per variant: `variant`, `buckets`, `seeds`,
            `val_accuracy` (mean), `val_accuracy_std`, `val_loss`,
            `val_loss_std`, `runs` (folders) and `accuracies` (per seed).
        buckets: per bucket: `alone` (its gain over the baseline),
            `left_out` (the loss of all-but-it against all; None with fewer
            than 3 buckets, where it is the other bucket's gain).
        interaction: the gain of all buckets together minus the sum of the
            single gains: near 0 when they add up, negative when they
            overlap (one makes another unnecessary), positive when they need
            each other.
        missing: runs not finished yet (another shard, or a killed run).
        out_dir: the folder of the runs and the reports.
    """

    rows: list
    buckets: dict
    interaction: float | None
    missing: list
    out_dir: str

    def table(self):
        """The table as Markdown lines."""
        lines = [
            (
                "| variant | buckets changed | val accuracy (mean ± std) | train accuracy "
                "| val loss | seeds | flag |"
            ),
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.rows:
            train = row.get("train_accuracy")
            lines.append(
                f"| {row['variant']} | {', '.join(row['buckets']) or '-'} | "
                f"{_mean_std(row['val_accuracy'], row['val_accuracy_std'])} | "
                f"{'-' if train is None else f'{train:.3f}'} | "
                f"{_mean_std(row['val_loss'], row['val_loss_std'])} | {row['seeds']} | "
                f"{row.get('flag') or ''} |"
            )
        lines += ["", "| bucket | gain alone | loss when left out |", "|---|---|---|"]
        for bucket, effect in self.buckets.items():
            lines.append(
                f"| {bucket} | {_signed(effect['alone'])} | {_signed(effect['left_out'])} |"
            )
        if self.interaction is not None:
            lines += [
                "",
                f"Interaction: all together {_signed(self.all_gain)} vs the sum of single gains "
                f"{_signed(self.all_gain - self.interaction)}: {_signed(self.interaction)} "
                f"({_interaction_words(self.interaction)}).",
            ]
        return lines + ["", *self.verdict()]

    def verdict(self):
        """The result in plain words: the bucket that drives accuracy, how sure the seeds
        make it, and the cells left out as collapsed or unlearned."""
        by_name = {row["variant"]: row for row in self.rows}
        flagged = [row["variant"] for row in self.rows if row.get("flag")]
        lines = []
        base = by_name.get(BASELINE)
        if base is None or base.get("flag"):
            lines.append(
                "Verdict: none. The baseline "
                + ("has not finished" if base is None else "did not learn")
                + ", so no bucket's gain can be measured against it; give it a longer budget "
                "(finetune_steps) or a lower rate."
            )
        else:
            gains = {}
            for bucket in self.buckets:
                row = by_name.get(f"+{bucket}")
                if row is not None and not row.get("flag"):
                    gains[bucket] = (row["val_accuracy"] - base["val_accuracy"], row)
            if not gains:
                lines.append("Verdict: none. No single-bucket cell learned.")
            else:
                bucket, (gain, row) = max(gains.items(), key=lambda item: item[1][0])
                error = (
                    base["val_accuracy_std"] ** 2 / base["seeds"]
                    + row["val_accuracy_std"] ** 2 / row["seeds"]
                ) ** 0.5
                lines.append(_driver_words(bucket, gain, error, row, base))
        if flagged:
            lines.append(
                f"Left out as collapsed or unlearned (validation accuracy within "
                f"{AT_CHANCE_MARGIN} of chance): {', '.join(flagged)}."
            )
        return lines

    @property
    def all_gain(self):
        by_name = {row["variant"]: row for row in self.rows}
        if ALL not in by_name or BASELINE not in by_name:
            return None
        return by_name[ALL]["val_accuracy"] - by_name[BASELINE]["val_accuracy"]


def ablate(
    baseline=None,
    changes=None,
    data=None,
    seeds=3,
    out_dir="runs/ablation",
    shard=(0, 1),
    verbose=0,
    echo=print,
):
    """Runs the bucket ablation of `changes` against `baseline` and writes its reports.

    Args:
        baseline: a `FineTuneConfig` or a dict of its fields: the recipe
            every change is measured against. None: the demo study's
            baseline (`DEMO_BASELINE`, a plain CNN from scratch with SGD).
        changes: `{bucket: {field: value, ...}}`, the change of each bucket
            as config fields (a bucket may change several), in the order to
            report them. None: `DEMO_CHANGES`.
        data: a folder of class folders; None for the demo study's data:
            the 10 classes of the demo's source task, 1,000 generated images.
        seeds: how many seeds (0, 1, ...) each variant runs, or a list of
            seeds. A seed sets the split, the initialization and the
            augmentation. Defaults to 3.
        out_dir: where the runs (`<variant>/seed<k>/`) and the reports
            (`ablation.json`, `ablation.md`, `ablation.png`) go.
        shard: `(index, count)`: run only the runs whose position in the grid
            is `index` modulo `count`, to split the grid over processes or
            devices. Every shard writes the reports of what has finished.
        verbose: `fit`'s verbosity for each run. Defaults to 0.
        echo: a function given one line per finished run (its variant, seed,
            validation accuracy and time, and an estimate of the time left);
            None prints nothing.

    Returns:
        An `AblationResult`.
    """
    baseline = _as_config(baseline if baseline is not None else DEMO_BASELINE)
    changes = dict(changes if changes is not None else DEMO_CHANGES)
    _check_changes(changes)
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not seeds:
        raise ValueError("ablate: seeds must be at least 1 (or a non-empty list of seeds).")
    index, count = shard
    if data is None:
        data = _demo_folder()
    grid = [(variant, seed) for variant in variants(changes) for seed in seeds]
    mine = [cell for position, cell in enumerate(grid) if position % count == index]
    _scan_once(data)
    progress = _Progress(len(mine), echo or _silent)
    for variant, seed in mine:
        config = baseline.replace(
            **variant.overrides(changes),
            seed=seed,
            out_dir=_run_folder(out_dir, variant, seed),
            verbose=verbose,
        )
        progress.done(variant.name, seed, _train(config, data))
    result = summarize(out_dir, changes, seeds)
    write_reports(result, baseline, changes)
    return result


def summarize(out_dir, changes, seeds):
    """The `AblationResult` of the finished runs under `out_dir`."""
    rows, missing = [], []
    for variant in variants(changes):
        reports, folders = [], []
        for seed in seeds:
            folder = _run_folder(out_dir, variant, seed)
            report = _finished_report(folder)
            if report is None:
                missing.append(folder)
                continue
            reports.append(report)
            folders.append(folder)
        if reports:
            rows.append(_row(variant, reports, folders))
    by_name = {row["variant"]: row["val_accuracy"] for row in rows}
    base = by_name.get(BASELINE)
    effects = {}
    for bucket in changes:
        alone = by_name.get(f"+{bucket}")
        left_out = by_name.get(f"{ALL}-{bucket}")
        effects[bucket] = {
            "alone": None if base is None or alone is None else alone - base,
            "left_out": None if ALL not in by_name or left_out is None else by_name[ALL] - left_out,
        }
    interaction = None
    singles = [effect["alone"] for effect in effects.values()]
    if base is not None and ALL in by_name and None not in singles:
        interaction = (by_name[ALL] - base) - sum(singles)
    return AblationResult(rows, effects, interaction, missing, os.fspath(out_dir))


def write_reports(result, baseline, changes):
    """`ablation.json`, `ablation.md` and `ablation.png` in the result's folder."""
    os.makedirs(result.out_dir, exist_ok=True)
    write_json(
        os.path.join(result.out_dir, "ablation.json"),
        {
            "baseline": baseline.to_dict(),
            "changes": changes,
            "rows": result.rows,
            "buckets": result.buckets,
            "interaction": result.interaction,
            "missing": result.missing,
        },
    )
    lines = ["# Bucket ablation", ""] + result.table()
    if result.missing:
        lines += ["", f"{len(result.missing)} runs are not finished yet: the table is partial."]
    with open(os.path.join(result.out_dir, "ablation.md"), "w") as file:
        file.write("\n".join(lines) + "\n")
    _plot(result, os.path.join(result.out_dir, "ablation.png"))


def _as_config(baseline):
    if isinstance(baseline, FineTuneConfig):
        return baseline
    return FineTuneConfig(**baseline)


def _check_changes(changes):
    if not changes:
        raise ValueError("ablate: changes is empty; give at least one bucket's change.")
    fields = {f.name for f in dataclasses.fields(FineTuneConfig)}
    for bucket, overrides in changes.items():
        # The bucket names its cells' folders under out_dir: nothing that leaves it.
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(bucket)):
            raise ValueError(
                f"ablate: bucket name {bucket!r} names the cells' folders; use letters, digits, "
                "'_', '-' and '.' only (no '/', no leading '.')."
            )
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ValueError(
                f"ablate: bucket {bucket!r} changes {unknown}, which are not FineTuneConfig "
                f"fields. The fields: {sorted(fields)}."
            )
        if not overrides:
            raise ValueError(f"ablate: bucket {bucket!r} changes nothing.")


def _run_folder(out_dir, variant, seed):
    return os.path.join(os.fspath(out_dir), variant.name, f"seed{seed}")


def _demo_folder():
    return make_demo_dataset(
        os.path.join(default_cache_dir(), "demo", "ablation"),
        task="source",
        num_images=DEMO_IMAGES,
        image_size=32,
    )


def _scan_once(data):
    """Scans the folder once, so its skipped files are listed once, not once per run."""
    verify_images(data)


def _train(config, data):
    """One run, as the `finetune` command runs it (`kr.run`), silently; returns its result."""
    return run(config, data, echo=_silent)


class _Progress:
    """One line per finished run, and the time the runs left should take at this one's pace.

    A run that had finished before this call (the ablation resumed) takes no time and is
    left out of the pace.
    """

    def __init__(self, total, echo):
        self.total, self.echo = total, echo
        self.finished = 0
        self.trained_seconds, self.trained = 0.0, 0

    def done(self, variant, seed, result):
        self.finished += 1
        if result.finished_earlier:
            took = "finished earlier"
        else:
            self.trained_seconds += result.seconds
            self.trained += 1
            took = f"{result.seconds:.0f} s"
        left = self.total - self.finished
        line = (
            f"[{self.finished}/{self.total}] {variant} seed {seed}: validation accuracy "
            f"{result.report['val_accuracy']:.3f} ({took})"
        )
        if left and self.trained:
            minutes = left * self.trained_seconds / self.trained / 60
            line += f"; {left} run{'s' if left > 1 else ''} left, about {minutes:.0f} min"
        self.echo(line)


def _silent(line):
    pass


def _finished_report(folder):
    """The run's report, written when it ended (finished, or stopped by a NaN loss), or None."""
    path = os.path.join(folder, "report.json")
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


def _last_phase_value(report, name):
    """`name` ("val_loss", "accuracy") at the end of the run's last phase, or None."""
    phases = list(report["phases"].values())
    return phases[-1].get(name) if phases else None


def _num_classes(report):
    data = report.get("data") or {}
    names = data.get("class_names")
    return len(names) if names else data.get("num_classes")


def _row(variant, reports, folders):
    def std(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0

    accuracies = [report["val_accuracy"] for report in reports]
    losses = [_last_phase_value(report, "val_loss") for report in reports]
    losses = [loss for loss in losses if loss is not None]
    train = [_last_phase_value(report, "accuracy") for report in reports]
    train = [value for value in train if value is not None]
    num_classes = _num_classes(reports[0])
    row = {
        "variant": variant.name,
        "buckets": list(variant.buckets),
        "seeds": len(accuracies),
        "val_accuracy": statistics.fmean(accuracies),
        "val_accuracy_std": std(accuracies),
        "val_loss": statistics.fmean(losses) if losses else None,
        "val_loss_std": std(losses) if losses else None,
        "train_accuracy": statistics.fmean(train) if train else None,
        "chance": 1 / num_classes if num_classes else None,
        "accuracies": accuracies,
        "runs": folders,
    }
    row["flag"] = _flag(row)
    return row


def _flag(row):
    """None for a cell that learned; else why its accuracy says nothing about its buckets."""
    chance = row["chance"]
    if chance is None or row["val_accuracy"] > chance + AT_CHANCE_MARGIN:
        return None
    train = row["train_accuracy"]
    if train is not None and train > chance + LEARNED_MARGIN:
        return "collapsed: training accuracy high, validation at chance"
    return "did not learn: training accuracy at chance (too short a budget or too high a rate)"


def _plot(result, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["variant"] for row in result.rows]
    means = np.array([row["val_accuracy"] for row in result.rows])
    errors = np.array([row["val_accuracy_std"] for row in result.rows])
    figure, axis = plt.subplots(figsize=(1.0 + 0.8 * len(names), 3.5))
    axis.bar(names, means, yerr=errors, capsize=4, color="#4c72b0")
    chance = result.rows[0]["chance"] if result.rows else None
    low = float((means - errors).min()) if len(means) else 0.0
    if chance is not None:
        axis.axhline(chance, color="0.3", linestyle="--", linewidth=1, label="chance")
        axis.legend(loc="lower right")
        low = min(low, chance)
    axis.set_ylabel("validation accuracy")
    axis.set_ylim(max(0.0, low - 0.05), 1.0)
    axis.set_title("Bucket ablation (mean ± std over seeds)")
    axis.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _mean_std(mean, std):
    return "-" if mean is None else f"{mean:.3f} ± {std:.3f}"


def _signed(value):
    return "-" if value is None else f"{value:+.3f}"


def _driver_words(bucket, gain, error, row, base):
    """The verdict's sentence on the bucket with the largest gain alone."""
    ceiling = ""
    if base["val_accuracy"] >= NEAR_CEILING:
        ceiling = f" The baseline already reaches {base['val_accuracy']:.3f}: little is left."
    if gain <= 0:
        return (
            f"Verdict: no bucket gains over the baseline alone here (the best, {bucket}, "
            f"{_signed(gain)}).{ceiling}"
        )
    if row["seeds"] < 2 or base["seeds"] < 2:
        return (
            f"Verdict: {bucket} gains the most alone ({_signed(gain)}), from one seed: no "
            f"confidence can be given; run more seeds.{ceiling}"
        )
    ratio = gain / error if error else float("inf")
    spread = "every seed agrees" if error == 0 else f"{ratio:.1f} standard errors over the seeds"
    if ratio < 1.5:
        return (
            f"Verdict: no bucket clearly drives accuracy here: the largest gain alone, {bucket} "
            f"{_signed(gain)}, is within the spread over the seeds ({spread}); run more seeds, "
            f"or a harder task.{ceiling}"
        )
    confidence = "high" if ratio >= 3 else "moderate"
    return (
        f"Verdict: {bucket} drives accuracy here: alone it gains {_signed(gain)} over the "
        f"baseline; {confidence} confidence ({spread}).{ceiling}"
    )


def _interaction_words(interaction):
    if abs(interaction) < 0.01:
        return "the buckets add up"
    if interaction < 0:
        return "they overlap: together they gain less than the sum"
    return "they need each other: together they gain more than the sum"
