"""`import kerasrecipes` keeps TensorFlow's native log lines and our calls' warnings quiet."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    import kerasrecipes as kr
    images = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    labels = np.arange(16) % 2
    import tensorflow as tf
    data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(8)
    backbone = kr.create_model("baseline_cnn", include_top=False, input_shape=(32, 32, 3))
    model, history = kr.fine_tune(backbone, data, data, num_classes=2, head_epochs=1,
                                  finetune_epochs=1, verbose=0)
    print("trained", len(history.history["loss"]))
    """
)


def test_the_python_api_writes_nothing_to_stderr(tmp_path):
    # As a user runs it: no TF_CPP_MIN_LOG_LEVEL, Python's default warning filters.
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("trained 2")
    assert result.stderr == ""
