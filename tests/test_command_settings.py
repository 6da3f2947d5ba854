"""What `kerasrecipes finetune` decided, printed before it trains; `--epochs` and `--lr`."""

import json

import kerasrecipes as kr
from kerasrecipes.cli import build_parser, main
from kerasrecipes.finetune.pipeline import image_size_reason


def test_the_settings_line_says_what_the_run_decided_and_why(tmp_path, monkeypatch, capsys):
    data = kr.data.make_demo_dataset(tmp_path / "shapes", num_images=24)
    monkeypatch.chdir(tmp_path)
    argv = ["finetune", "--data", str(data), "--model", "baseline_cnn", "--weights", "none"]
    assert main([*argv, "--epochs", "1", "--batch-size", "8", "--out", "run"]) == 0
    out = capsys.readouterr().out
    settings = next(line for line in out.splitlines() if line.startswith("Settings:"))
    # The precision is the machine's (auto): the one the run recorded.
    precision = json.loads((tmp_path / "run" / "report.json").read_text())["config"]["precision"]
    assert settings == (
        "Settings: baseline_cnn, weights none, image size 32x32 (the data's median image "
        f"size; no pretrained weights fix it; --image-size sets it), precision {precision}, "
        "batch 8, 3 steps per epoch, run folder run"
    )
    # Printed before the first epoch.
    assert out.index("Settings:") < out.index("3/3 - ")  # before the first epoch's line


def test_the_image_size_reason_follows_what_decided_it(tmp_path):
    def reason(asked=None, data=None, **fields):
        config = kr.resolve_config(kr.FineTuneConfig(image_size=asked, **fields), demo=False)
        return image_size_reason(config, asked, data)

    assert reason(asked=64) == "as given"
    assert reason(model="resnet50", weights="imagenet") == (
        "the size the imagenet weights were trained at"
    )
    assert reason(model="resnet50", weights="none") == "resnet50's default"
    assert reason(model="baseline_cnn", weights="demo") == "the demo backbone's size"
    weights = tmp_path / "mine.keras"
    weights.write_bytes(b"")
    assert reason(model="resnet50", weights=str(weights)) == "the weights file's input size"


def test_epochs_and_lr_are_the_documented_shorthands():
    args = build_parser().parse_args(["finetune", "--epochs", "3", "--lr", "1e-3"])
    assert (args.finetune_epochs, args.head_lr) == (3, 1e-3)
    config = kr.resolve_config(kr.FineTuneConfig(head_lr=args.head_lr))
    assert config.finetune_lr == 1e-3  # phase 2 starts from the same rate
