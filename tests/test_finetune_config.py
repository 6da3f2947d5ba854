"""FineTuneConfig: one set of defaults, resolved in one place, the CLI generated from it; the
switches (precision, EMA, gradient accumulation, TensorBoard, MixUp on integer labels)."""

import dataclasses
import json

import keras
import numpy as np
import pytest
from test_finetune import tiny_backbone, toy_data

import kerasrecipes as kr
from kerasrecipes.cli import build_parser
from kerasrecipes.finetune.config import cli_flag, parse_unfreeze


def finetune_help():
    commands = build_parser()._subparsers._group_actions[0].choices
    return commands["finetune"], commands["finetune"].format_help()


def test_every_field_is_an_option_with_its_default_and_the_defaults_agree():
    parser, text = finetune_help()
    defaults = vars(parser.parse_args([]))
    for field in dataclasses.fields(kr.FineTuneConfig):
        if not field.metadata["cli"]:
            continue
        assert cli_flag(field) in text, field.name
        assert defaults[field.name] == field.default, field.name
    assert "--patience" in text and "(default: 0.1)" in text and "(default: 60, within 2-20" in text
    assert "(default: 3e-3; 1e-3 for detection)" in " ".join(text.split())
    # The recipe's settings come from the same config.
    recipe = open("recipes/finetune_two_class.py").read()
    assert "kr.FineTuneConfig(" in recipe and "HEAD_EPOCHS = " not in recipe


def test_from_scratch_is_resolved_once_for_every_entry_point():
    config = kr.resolve_config(kr.FineTuneConfig(weights="none", model="resnet20"))
    assert (config.head_epochs, config.backbone_lr_mult, config.train_bn) == (0, 1.0, True)
    assert [phase.name for phase in kr.plan_phases(config)] == ["finetune"]
    assert kr.resolve_config(config) == config
    demo = kr.resolve_config(demo=True)
    assert (demo.model, demo.weights, demo.image_size) == ("baseline_cnn", "demo", 32)
    data = kr.resolve_config(demo=False)
    assert (data.model, data.weights, data.image_size) == ("efficientnet_b0", "imagenet", 224)
    assert data.finetune_lr == data.head_lr and data.monitor == "val_loss"
    # The head's rate by task: RetinaNet's heads need a lower one than a classifier's.
    assert data.head_lr == 3e-3 and kr.resolve_config(demo=True, task="detection").head_lr == 1e-3
    assert kr.resolve_config(demo=True, task="detection", head_lr=0.01).head_lr == 0.01
    assert kr.resolve_config(demo=False, model="inception_v3").image_size == 299


def test_python_from_scratch_records_what_it_used(tmp_path):
    data = toy_data()
    _, history = kr.fine_tune(
        tiny_backbone(),
        data,
        data,
        num_classes=2,
        weights="none",
        finetune_epochs=1,
        out_dir=tmp_path,
        verbose=0,
    )
    report = json.loads((tmp_path / "report.json").read_text())
    assert list(report["phases"]) == ["finetune"] == list(history.phases)
    assert report["config"]["head_epochs"] == 0 and report["config"]["backbone_lr_mult"] == 1.0
    assert report["config"]["train_bn"] is True


def test_unfreeze_schedules_and_bad_values():
    assert parse_unfreeze("all") == {0: None}
    assert parse_unfreeze(2) == {0: 2} == parse_unfreeze("2")
    assert parse_unfreeze("0:1, 2:3,4:all") == {0: 1, 2: 3, 4: None}
    assert parse_unfreeze({0: 1, 2: "all"}) == {0: 1, 2: None}
    assert kr.resolve_config(unfreeze={0: 1, 2: "all"}).unfreeze == "0:1,2:all"
    for bad in ("0", "top", "0:x", "-1:2"):
        with pytest.raises(ValueError, match="unfreeze must be"):
            parse_unfreeze(bad)
    with pytest.raises(TypeError, match="no field"):
        kr.FineTuneConfig().replace(head_epoch=3)
    with pytest.raises(ValueError, match="precision must be one of"):
        kr.resolve_config(precision="fp8")


def test_progressive_unfreezing_as_a_phase_list():
    config = kr.resolve_config(unfreeze="0:1,2:all", head_epochs=1, finetune_epochs=3)
    head, finetune = kr.plan_phases(config)
    assert head.trains == "head" and finetune.trains == "0:1,2:all"
    assert finetune.schedule == "cosine" and finetune.backbone_lr_mult == 0.1


def test_mixup_with_integer_labels_ema_accumulation_tensorboard_and_bf16(tmp_path):
    data = toy_data(num_images=32)
    model, history = kr.fine_tune(
        tiny_backbone(),
        data,
        data,
        num_classes=2,
        head_epochs=1,
        finetune_epochs=1,
        augment="mixup",
        ema=True,
        grad_accumulation=2,
        tensorboard=True,
        precision="mixed_bfloat16",
        out_dir=tmp_path,
        verbose=0,
    )
    assert history.status == "finished" and np.isfinite(history.history["loss"]).all()
    inner = model.optimizer.inner_optimizer
    assert inner.use_ema and inner.gradient_accumulation_steps == 2
    # Phase 2 ran two batches; with two batches per update, its optimizer made one update.
    assert int(model.optimizer.iterations) == 1
    assert model.get_layer("tiny").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("head_dense").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert any((tmp_path / "tensorboard").rglob("events.out.tfevents*"))
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored


def test_the_command_takes_the_switches(tmp_path, capsys):
    from kerasrecipes.cli import main

    data = kr.data.make_demo_dataset(tmp_path / "shapes", num_images=40)
    weights = tmp_path / "tiny.keras"
    tiny_backbone(size=32).save(weights)
    code = main(
        [
            "finetune",
            "--data",
            str(data),
            "--weights",
            str(weights),
            "--out",
            str(tmp_path / "r"),
            "--head-epochs",
            "1",
            "--finetune-epochs",
            "1",
            "--augment",
            "cutmix",
            "--label-smoothing",
            "0.1",
            "--dropout",
            "0.3",
            "--weight-decay",
            "0.01",
            "--unfreeze",
            "0:1",
            "--patience",
            "none",
            "--precision",
            "float32",
        ]
    )
    assert code == 0, capsys.readouterr().err
    config = json.loads((tmp_path / "r" / "report.json").read_text())["config"]
    assert (config["augment"], config["label_smoothing"], config["dropout"]) == ("cutmix", 0.1, 0.3)
    assert config["early_stopping_patience"] is None and config["unfreeze"] == "1"
    out = capsys.readouterr().out
    assert "lr/" not in out  # the per-group rates go to history.csv, not the epoch lines
    assert "lr/backbone" in (tmp_path / "r" / "history.csv").read_text()


def test_the_phase_lists_in_the_docs_run_as_written(capsys):
    text = open("docs/fine-tuning.md").read()
    block = text.split("## Phases as data", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(block, "docs/fine-tuning.md", "exec"), {})
    printed = capsys.readouterr().out
    # Without data, a default budget runs its fewest epochs; fine_tune decides from the data.
    assert "from scratch [('finetune', 8, 'all', 0.003, 1.0)]" in printed
    assert "progressive unfreezing [('head', 2, 'head', 0.003, 1.0), " in printed
    assert "('finetune', 3, '0:1,2:3,4:all', 0.003, 0.1)]" in printed


def test_auto_precision_picks_bf16_by_device_and_model(monkeypatch):
    from kerasrecipes import precision

    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: (0, 0))
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512f", "amx_bf16"})
    assert precision.auto_precision() == "mixed_bfloat16"
    assert precision.auto_precision("resnet50") == "mixed_bfloat16"
    # Depthwise networks trained slower in bf16 than in float32 on an AMX CPU.
    for name in ("mobilenet_v2", "efficientnet_b3", "convnext_tiny"):
        assert precision.auto_precision(name) == "float32", name
    inputs = keras.Input((8, 8, 3))
    depthwise = keras.Model(inputs, keras.layers.DepthwiseConv2D(3)(inputs))
    assert precision.auto_precision(depthwise) == "float32"
    assert kr.resolve_config(model="mobilenet_v2", weights="none").precision == "float32"
    assert kr.resolve_config(model="resnet18", weights="none").precision == "mixed_bfloat16"

    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert precision.auto_precision("resnet50") == "float32"
    monkeypatch.setattr(precision, "_gpu_compute_capability", lambda: (9, 0))
    assert precision.auto_precision("mobilenet_v2") == "mixed_bfloat16"


def test_training_compiles_without_xla_on_a_cpu():
    from kerasrecipes.precision import training_compile_options

    # XLA's CPU backend trained ResNet-50 3.4x slower than TensorFlow's graph (oneDNN).
    assert training_compile_options() == {"jit_compile": False}
