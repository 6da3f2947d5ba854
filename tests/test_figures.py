"""The figures a new user looks at first: the curves of a resumed run, the top losses, the masks."""

import itertools

import numpy as np
import pytest
from PIL import Image

import kerasrecipes as kr
from kerasrecipes import plots
from kerasrecipes.callbacks import curves as curves_module
from kerasrecipes.data.scenes import BACKGROUND_LEVELS, SCENE_CLASSES
from kerasrecipes.data.shapes import SHAPES
from kerasrecipes.files import write_json
from kerasrecipes.finetune import report
from kerasrecipes.finetune.config import FineTuneConfig
from kerasrecipes.finetune.run_folder import RunFolder
from kerasrecipes.inference.evaluation import plot_top_losses

# -- the curves of a resumed run -------------------------------------------------------------------

# Two head epochs, then five unfreezing progressively: the top block first, all of it 2 epochs on.
CONFIG = FineTuneConfig(head_epochs=2, finetune_epochs=5, unfreeze="0:1,2:all")


def recorded_folder(path, last_epoch):
    """A run folder as `fine_tune` leaves it after `last_epoch`: run.json and state.json."""
    folder = RunFolder(path)
    path.mkdir()
    write_json(folder.file("run.json"), {"config": CONFIG.to_dict(), "data": {}})
    rows = {
        str(epoch): {"epoch": epoch, "phase": "head" if epoch < 2 else "finetune", "loss": 1.0}
        for epoch in range(last_epoch + 1)
    }
    phases = {"head": {"first_epoch": 0, "end_epoch": 2, "status": "finished"}}
    folder.state = {"status": "running", "rows": rows, "phases": phases}
    return folder


def model_marked(marks):
    """A model carrying the phase marks one process of a run put on it."""
    model = kr.create_model("baseline_cnn", input_shape=(16, 16, 3), num_classes=2)
    for epoch, label in marks.items():
        kr.callbacks.mark_phase(model, epoch, label)
    return model


def drawn_phase_lines(folder, model, monkeypatch):
    """`{"lines": [x], "labels": {label: x}}`: the dotted lines and the labels on the first
    panel of `curves.png`, as `draw_curves` draws it."""
    drawn = {}

    def keep_lines(figure, path):
        axis = figure.axes[0]
        xs = {line.get_xdata()[0] for line in axis.lines if line.get_linestyle() == ":"}
        labels = {text.get_text(): text.xy[0] for text in axis.texts}
        drawn.update(lines=sorted(xs), labels=labels)
        return plots.save_figure(figure, path)

    monkeypatch.setattr(curves_module, "save_figure", keep_lines)
    report.draw_curves(folder, model)
    return drawn


def test_a_resumed_runs_curves_have_the_phase_lines_of_an_uninterrupted_run(tmp_path, monkeypatch):
    # Uninterrupted, one process marked each phase start and each unfreezing step on its model.
    # Killed after epoch 5 and resumed, the new process marked phase 2's start, and its
    # UnfreezeBackbone unfroze (and marked) the whole backbone at epoch 6, where it resumed.
    straight = model_marked(
        {0: "head (backbone frozen)", 2: "unfreeze top 1 blocks", 4: "unfreeze backbone"}
    )
    resumed = model_marked({2: "finetune (unfrozen progressively)", 6: "unfreeze backbone"})
    for last_epoch in (5, 6):  # the curves at the kill, and after the first resumed epoch
        for model in (straight, resumed):
            folder = recorded_folder(tmp_path / f"{last_epoch}-{id(model)}", last_epoch)
            drawn = drawn_phase_lines(folder, model, monkeypatch)
            assert drawn["lines"] == [2.5, 4.5]  # epochs 3 and 5 counted from 1
            assert drawn["labels"] == {"head": 0.6, "finetune": 2.6, "unfreeze backbone": 4.6}


def test_phase_lines_come_from_the_rows_and_the_steps_the_rows_reached():
    rows = [{"epoch": e, "phase": "head" if e < 2 else "finetune"} for e in range(5)]
    steps = {"finetune": {0: 1, 2: None}}
    assert report.recorded_phase_lines(rows, steps) == {
        0: "head",
        2: "finetune",
        4: "unfreeze backbone",
    }
    # Early stopping ended phase 2 after epoch 3: its step at epoch 4 never came.
    assert report.recorded_phase_lines(rows[:4], steps) == {0: "head", 2: "finetune"}
    assert report.recorded_phase_lines(rows[::-1]) == {0: "head", 2: "finetune"}


# -- the top losses --------------------------------------------------------------------------------


def top_losses(tmp_path, count):
    """`count` black 32-pixel images as `kr.evaluate`'s top losses."""
    path = tmp_path / "black.png"
    Image.new("RGB", (32, 32)).save(path)
    item = {"path": str(path), "true": "ellipse", "predicted": "pentagon", "probability": 0.9}
    return [dict(item, loss=2.0) for _ in range(count)]


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 12])
def test_the_top_losses_figure_is_as_large_as_its_images(tmp_path, count):
    note = "with test-time augmentation (horizontal flip)"
    path = plot_top_losses(top_losses(tmp_path, count), (32, 32), tmp_path / "top.png", note=note)
    figure = np.asarray(Image.open(path).convert("L"))
    rows, columns = plots.grid_shape(count)
    assert (rows, columns) == (-(-count // 4), -(-count // rows))
    height, width = figure.shape
    assert width == pytest.approx(240 * columns, abs=1)  # 2.4 inches a column at 100 dpi
    assert 260 * rows < height < 260 * rows + 100  # 2.6 inches a row, and the title's lines
    # The images cover about half the canvas; with a fixed 4-column canvas one covered a sixth.
    assert (figure < 10).mean() > 0.4


# -- the class colours over the demo scenes --------------------------------------------------------


def nearest_background_distance(colour):
    """The RGB distance from `colour` to the nearest background colour the demo scenes draw."""
    low, high = (255 * level for level in BACKGROUND_LEVELS)
    colour = np.asarray(colour, float)
    return float(np.linalg.norm(colour - np.clip(colour, low, high)))


def test_each_demo_class_colour_stands_out_from_every_demo_background():
    colours = plots.class_colours()
    for index, name in enumerate(SCENE_CLASSES, start=1):
        distance = nearest_background_distance(colours[index])
        assert distance > 100, f"{name}'s colour {colours[index]} is {distance:.0f} from one"
    for first, second in itertools.combinations(plots.DISTINCT_CLASS_COLOURS, 2):
        assert np.linalg.norm(np.subtract(first, second)) > 60, (first, second)


def test_a_pentagon_overlaid_on_green_stays_visible_and_is_outlined():
    coords = np.linspace(-1, 1, 48)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    pentagon = SHAPES["pentagon"](xx / 0.6, yy / 0.6) <= 0
    mask = pentagon * (SCENE_CLASSES.index("pentagon") + 1)
    green = np.where(pentagon[..., None], (60, 170, 60), (20, 110, 20)).astype("uint8")
    overlay = plots.blend_mask(green, mask).astype(int)
    colour = plots.class_colours()[mask.max()]
    changed = np.linalg.norm(overlay - green, axis=-1)
    assert changed[pentagon].min() > 60 and changed[~pentagon].max() == 0
    outline = plots.region_edges(mask) & pentagon
    assert 20 < outline.sum() < pentagon.sum() / 2
    assert (overlay[outline] == colour).all()
