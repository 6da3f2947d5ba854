"""`evaluate`: a classifier on a folder of class folders, with the figures that say where it fails.

What fastai's `ClassificationInterpretation` gives (`most_confused`,
`plot_top_losses`, `print_classification_report`) and its `tta`, for a
Keras classifier: accuracy, balanced accuracy, per-class precision, recall,
F1 and support, the confusion matrix, the most-confused pairs and a gallery
of the images the model was most confidently wrong about.

The per-class figures are computed here from the confusion matrix, with
scikit-learn's definitions (`classification_report`, `balanced_accuracy_score`;
a class without predictions has precision 0): they are three divisions on a
matrix we already have, and scikit-learn with SciPy would add about 50 MB
to the install for them.
"""

import dataclasses
import os

import keras
import numpy as np

from kerasrecipes import plots
from kerasrecipes.data.folder import class_folders, read_image, walk_classes
from kerasrecipes.files import write_json
from kerasrecipes.inference.dense_evaluation import evaluate_detector, evaluate_segmenter
from kerasrecipes.inference.detector import ObjectDetector
from kerasrecipes.inference.inputs import file_batches
from kerasrecipes.inference.segmenter import ImageSegmenter
from kerasrecipes.inference.tta import tta_probabilities

EVALUATION_FILE = "evaluation.json"
CONFUSION_FILE = "evaluation_confusion.png"
TOP_LOSSES_FILE = "evaluation_top_losses.png"


@dataclasses.dataclass
class Evaluation:
    """What `evaluate` measured. The per-class figures, the confusion matrix, the most-confused
    pairs and the top losses all come from one set of predictions (`reported`): the test-time
    augmented ones when `tta`, else the plain ones.

    Attributes:
        data: the folder evaluated on.
        class_names: the classifier's classes (rows and columns of the matrix).
        metrics: accuracy, balanced accuracy, per-class precision, recall,
            F1 and support, and the confusion matrix, without TTA.
        tta_metrics: the same with test-time augmentation, or None.
        most_confused: `[(true, predicted, count), ...]`, most frequent first.
        top_losses: the misclassified images with the highest loss, as dicts
            of path, true and predicted class, probability and loss.
        skipped: `(path, reason)` of the files that were not read.
        files: the files written (empty without `out_dir`).
        tta: whether the tables and figures come from test-time augmented predictions.
    """

    data: str
    class_names: list
    metrics: dict
    tta_metrics: dict | None
    most_confused: list
    top_losses: list
    skipped: list
    files: list = dataclasses.field(default_factory=list)
    tta: bool = False

    @property
    def reported(self):
        """The metrics the tables and figures show: `tta_metrics` with TTA, else `metrics`."""
        return self.tta_metrics if self.tta else self.metrics

    @property
    def accuracy(self):
        return self.metrics["accuracy"]

    @property
    def balanced_accuracy(self):
        return self.metrics["balanced_accuracy"]

    def to_dict(self):
        result = dataclasses.asdict(self)
        result["most_confused"] = [list(pair) for pair in self.most_confused]
        result["skipped"] = [list(pair) for pair in self.skipped]
        return result

    @property
    def tta_note(self):
        """The words "with test-time augmentation" when the figures come from it, else "": for
        the headers of the report and of the figures, which would not say it otherwise."""
        return "with test-time augmentation" if self.tta else ""

    def summary(self):
        """The report as text: overall figures, the per-class table, the most confused pairs;
        the first line says whether they come from test-time augmented predictions."""
        header = f"{self.metrics['images']} images in {self.data}, {len(self.skipped)} skipped"
        lines = [f"{header}; predicted {self.tta_note}" if self.tta else header]
        for title, metrics in (("without TTA", self.metrics), ("with TTA", self.tta_metrics)):
            if metrics is not None:
                lines.append(
                    f"accuracy {metrics['accuracy']:.4f}, balanced accuracy "
                    f"{metrics['balanced_accuracy']:.4f} ({title})"
                )
        width = max(9, *(len(name) for name in self.class_names))
        lines.append(f"{'class':<{width}} precision  recall     f1  support")
        for name in self.class_names:
            row = self.reported["per_class"][name]
            lines.append(
                f"{name:<{width}} {row['precision']:9.3f} {row['recall']:7.3f} "
                f"{row['f1']:6.3f} {row['support']:8d}"
            )
        for true, predicted, count in self.most_confused[:5]:
            lines.append(f"most confused: {true} taken for {predicted} {count} times")
        return "\n".join(lines)


def evaluate(classifier, data, *, tta=False, batch_size=32, out_dir=None, top_losses=12):
    """Evaluates `classifier` on a folder of class folders named as its classes.

    A `kr.ImageSegmenter` or `kr.ObjectDetector` (`kr.load_model(run)`) is
    evaluated on a folder in its task's layout instead (images, masks and
    `classes.txt`; images and a COCO `annotations.json`): mean IoU, per-class
    IoU and the confusion matrix, or COCO mAP, mAP@.5 and AP per class, and
    the worst images (`kerasrecipes.inference.dense_evaluation`).

    Args:
        classifier: a `kr.ImageClassifier` (`kr.load_classifier(run)`), or a
            segmenter or detector.
        data: a folder with a subfolder per class; every subfolder must be a
            class the classifier knows (a known class may be missing).
        tta: predict with test-time augmentation (`TTA_VIEWS`): every figure
            and table comes from those predictions (`tta_metrics`), and
            `metrics` keeps the figures without it, to compare. Defaults to False.
        batch_size: images per forward pass. Defaults to 32.
        out_dir: a folder to write `evaluation.json`,
            `evaluation_confusion.png` and `evaluation_top_losses.png` into,
            or None to write nothing. Defaults to None.
        top_losses: how many images the gallery shows. Defaults to 12.

    Returns:
        an `Evaluation` (a `DenseEvaluation` for a segmenter or detector).
    """
    dense = {ImageSegmenter: evaluate_segmenter, ObjectDetector: evaluate_detector}
    if type(classifier) in dense:
        if tta:
            raise ValueError(
                f"evaluate: tta applies to classifiers; this is a {type(classifier).__name__}."
            )
        return dense[type(classifier)](classifier, data, batch_size=batch_size, out_dir=out_dir)
    files, labels, not_read = _labelled_files(data, classifier.class_names)
    dataset, paths, skipped = file_batches(
        files,
        classifier.read_size,
        batch_size,
        root=os.fspath(data),
        labels=labels,
        crop_to_aspect_ratio=classifier.crop_fraction < 1.0,
    )
    skipped = not_read + list(skipped)
    if not paths:
        raise ValueError(f"evaluate: no readable image in {data}; {len(skipped)} files skipped.")
    truth, plain, augmented = _predict_labelled(classifier, dataset, tta)
    predicted = augmented if tta else plain  # the one set every figure below comes from
    names = list(classifier.class_names)
    evaluation = Evaluation(
        data=os.fspath(data),
        class_names=names,
        metrics=classification_metrics(truth, plain.argmax(-1), names),
        tta_metrics=classification_metrics(truth, augmented.argmax(-1), names) if tta else None,
        most_confused=most_confused(truth, predicted.argmax(-1), names),
        top_losses=top_loss_images(paths, truth, predicted, names, top_losses),
        skipped=skipped,
        tta=bool(tta),
    )
    if out_dir is not None:
        write_evaluation(evaluation, out_dir, classifier.image_size)
    return evaluation


def _predict_labelled(classifier, dataset, tta):
    """`(labels, plain, augmented)` over the `(images, labels)` batches of `dataset`: the
    probabilities without and, with `tta`, with test-time augmentation (else None); the plain
    pass is computed once and mixed into the augmented one, as `tta_probabilities` does."""
    truth, plain, augmented = [], [], []
    for images, batch_labels in dataset:
        probabilities = keras.ops.convert_to_numpy(classifier.predict_on_batch(images))
        plain.append(probabilities)
        if tta:
            augmented.append(tta_probabilities(classifier, images, plain=probabilities))
        truth.append(np.asarray(batch_labels))
    augmented = np.concatenate(augmented) if tta else None
    return np.concatenate(truth), np.concatenate(plain), augmented


def _labelled_files(data, class_names):
    """Every file under the class folders of `data`, its label, and `(path, reason)` of the rest."""
    data = os.fspath(data)
    if not os.path.isdir(data):
        raise FileNotFoundError(
            f"evaluate: {data} is not a folder. Give a folder with one subfolder per class."
        )
    folders, stray, skipped, _ = class_folders(data)
    if not folders:
        raise ValueError(
            f"evaluate: {data} has no class folders. Put each class's images in a subfolder "
            f"named as the class: one of {list(class_names)}."
        )
    unknown = [name for name in folders if name not in class_names]
    if unknown:
        raise ValueError(
            f"evaluate: class folder(s) {unknown} in {data} are not classes of this model, "
            f"which knows {list(class_names)}. Rename or remove them."
        )
    files, labels = [], []
    for name, walk in zip(folders, walk_classes(data, folders)):
        files += walk.files
        labels += [class_names.index(name)] * len(walk.files)
        skipped += walk.skipped
    return files, labels, [(path, "not in a class folder") for path in stray] + skipped


def classification_metrics(labels, predictions, class_names):
    """Accuracy, balanced accuracy, per-class precision/recall/F1/support and the matrix."""
    matrix = plots.confusion_matrix(labels, predictions, len(class_names))
    support = matrix.sum(axis=1)
    predicted = matrix.sum(axis=0)
    correct = np.diag(matrix)
    precision = np.divide(correct, predicted, out=np.zeros(len(matrix)), where=predicted > 0)
    recall = np.divide(correct, support, out=np.zeros(len(matrix)), where=support > 0)
    total = precision + recall
    f1 = np.divide(2 * precision * recall, total, out=np.zeros(len(matrix)), where=total > 0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "images": int(matrix.sum()),
        "accuracy": float(correct.sum() / max(matrix.sum(), 1)),
        "balanced_accuracy": float(recall[support > 0].mean()) if support.any() else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def most_confused(labels, predictions, class_names, min_count=1):
    """`[(true, predicted, count), ...]` of the off-diagonal cells, most frequent first."""
    matrix = plots.confusion_matrix(labels, predictions, len(class_names))
    pairs = [
        (class_names[t], class_names[p], int(matrix[t, p]))
        for t in range(len(matrix))
        for p in range(len(matrix))
        if t != p and matrix[t, p] >= min_count
    ]
    return sorted(pairs, key=lambda pair: -pair[2])


def top_loss_images(paths, labels, probabilities, class_names, count):
    """The `count` misclassified images with the highest loss, most confident mistake first."""
    true_probability = probabilities[np.arange(len(labels)), labels]
    losses = -np.log(np.clip(true_probability, 1e-12, None))
    predicted = probabilities.argmax(-1)
    wrong = np.flatnonzero(predicted != labels)
    worst = wrong[np.argsort(-losses[wrong], kind="stable")][:count]
    return [
        {
            "path": paths[i],
            "true": class_names[labels[i]],
            "predicted": class_names[predicted[i]],
            "probability": float(probabilities[i, predicted[i]]),
            "loss": float(losses[i]),
        }
        for i in worst
    ]


def write_evaluation(evaluation, out_dir, image_size):
    """Writes the figures and `evaluation.json` into `out_dir`; fills `evaluation.files`."""
    os.makedirs(out_dir, exist_ok=True)
    evaluation.files = [EVALUATION_FILE, CONFUSION_FILE]
    matrix = np.asarray(evaluation.reported["confusion_matrix"])
    title = f"accuracy {evaluation.reported['accuracy']:.3f} on {matrix.sum()} images"
    if evaluation.tta:
        title += f"\n{evaluation.tta_note}"
    path = os.path.join(out_dir, CONFUSION_FILE)
    plots.plot_confusion(matrix, evaluation.class_names, path, title=title)
    if evaluation.top_losses:
        path = os.path.join(out_dir, TOP_LOSSES_FILE)
        plot_top_losses(evaluation.top_losses, image_size, path, note=evaluation.tta_note)
        evaluation.files.append(TOP_LOSSES_FILE)
    write_json(os.path.join(out_dir, EVALUATION_FILE), evaluation.to_dict())


def plot_top_losses(top_losses, image_size, path, columns=4, note=""):
    """The gallery: each image as the model saw it, titled true / predicted (probability);
    `note` follows the figure's title (how they were predicted: "with test-time ...").
    The figure is as large as its images: a short gallery gets no empty cells."""
    figure, axes = plots.image_grid(len(top_losses), cell=(2.4, 2.6), most_columns=columns)
    for axis, item in zip(axes, top_losses):
        image = keras.ops.convert_to_numpy(read_image(item["path"], image_size))
        axis.imshow(np.clip(image, 0, 255).astype("uint8"))
        axis.set_title(
            f"true {item['true']}\npredicted {item['predicted']} {item['probability']:.2f}",
            fontsize=8,
            color="red",
        )
    title = "most confident mistakes (highest loss)"
    plots.figure_title(figure, f"{title}, {note}" if note else title)
    return plots.save_figure(figure, path)
