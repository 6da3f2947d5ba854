"""Augmentation presets, class weights, oversampling and FixMatch."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasrecipes as kr

SIZE = (32, 32)


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory):
    return kr.data.make_demo_dataset(tmp_path_factory.mktemp("demo"), num_images=24, image_size=32)


def batch(seed=0, n=6):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, *SIZE, 3)).astype("float32")
    labels = tf.one_hot(np.arange(n) % 3, 3)
    return tf.constant(images), labels


# --- augmentation presets ----------------------------------------------------------------------


@pytest.mark.parametrize("preset", kr.data.PRESETS)
def test_preset_is_seeded_in_tf_data_and_a_no_op_at_inference(preset, demo_folder):
    def augmented_batches():
        train, _, _ = kr.data.image_folder(
            demo_folder,
            image_size=SIZE,
            batch_size=8,
            label_mode="categorical",
            augment=preset,
            seed=3,
            scan_cache=False,
        )
        return [(np.asarray(x), np.asarray(y)) for x, y in train]

    first, second = augmented_batches(), augmented_batches()
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)

    images, labels = batch()
    layer = kr.data.augmentation(preset, image_size=SIZE, seed=0)
    out_images, out_labels = layer((images, labels), training=True)
    assert out_images.shape == images.shape
    changed = not np.array_equal(np.asarray(out_images), np.asarray(images))
    assert changed == (preset != "none")
    if preset in ("mixup", "cutmix"):
        assert not np.array_equal(np.asarray(out_labels), np.asarray(labels))
        np.testing.assert_allclose(np.asarray(out_labels).sum(axis=1), 1.0, rtol=1e-5)
    else:
        np.testing.assert_array_equal(out_labels, labels)
    same = layer((images, labels), training=False)
    assert same[0] is images and same[1] is labels


def identical_images(n=16):
    image = np.random.default_rng(0).uniform(0, 255, (1, *SIZE, 3)).astype("float32")
    return tf.constant(np.repeat(image, n, axis=0))


def distinct(images):
    return len({image.tobytes() for image in np.asarray(images)})


@pytest.mark.parametrize("where", ["model", "tf.data"])
@pytest.mark.parametrize("preset", [p for p in kr.data.PRESETS if p not in ("none", "flip")])
def test_every_image_of_a_batch_is_augmented_on_its_own(preset, where):
    images = identical_images()
    labels = tf.one_hot(np.arange(16) % 4, 4)
    layer = kr.data.augmentation(preset, image_size=SIZE, seed=0)
    if where == "model":
        out = layer((images, labels), training=True)[0]
    else:
        dataset = tf.data.Dataset.from_tensors((images, labels))
        out = next(iter(dataset.map(lambda x, y: layer((x, y), training=True))))[0]
    # One draw per batch gives at most 2 distinct images (flipped or not); per-image draws
    # collide only by chance (the cifar preset has 9 x 9 shifts x 2 flips).
    assert distinct(out) >= 14
    np.testing.assert_array_equal(layer((images, labels), training=False)[0], images)


@pytest.mark.parametrize(
    "layer",
    [
        kr.layers.RandomPaddedCrop(padding=4, seed=0),
        kr.layers.RandomResizedCrop(seed=0),
        kr.layers.RandAugment(seed=0),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_each_random_layer_draws_per_image_and_is_the_identity_at_inference(layer, tmp_path):
    images = identical_images()
    assert distinct(layer(images, training=True)) >= 14
    np.testing.assert_array_equal(layer(images, training=False), images)
    model = keras.Sequential([keras.Input((*SIZE, 3)), layer])
    model.save(tmp_path / "layer.keras")
    loaded = keras.models.load_model(tmp_path / "layer.keras")
    assert type(loaded.layers[0]) is type(layer)
    assert loaded.layers[0].get_config() == layer.get_config()


def coordinate_images(n, height=32, width=48):
    """Images whose channel 0 is x + 1 and channel 1 is y + 1, to read a transform back."""
    y, x = np.mgrid[:height, :width].astype("float32")
    image = np.stack([x + 1, y + 1, np.zeros_like(x)], axis=-1)
    return np.repeat(image[None], n, axis=0)


def test_random_padded_crop_shifts_by_whole_pixels_up_to_the_padding_with_zero_fill():
    images = coordinate_images(256)
    out = np.asarray(kr.layers.RandomPaddedCrop(padding=4, seed=1)(images))
    shift_x = out[:, 16, 24, 0] - images[:, 16, 24, 0]
    shift_y = out[:, 16, 24, 1] - images[:, 16, 24, 1]
    assert set(shift_x.tolist()) == set(range(-4, 5)) == set(shift_y.tolist())
    # Pixels shifted in from outside the image are zero, as after zero padding.
    for image, dx in zip(out[:20], shift_x[:20].astype(int)):
        rows = image[:, 24, 1] > 0  # the rows not shifted in from above or below
        if dx > 0:
            assert (image[:, -dx:] == 0).all() and (image[rows, :-dx, 0] > 0).all()


def test_random_resized_crop_draws_area_and_aspect_ratio_in_range_per_image():
    height, width = 32, 48
    images = coordinate_images(512, height, width)
    out = np.asarray(kr.layers.RandomResizedCrop(scale=(0.08, 1.0), seed=2)(images))
    # Inside the image, output column j reads input x = left + (j + 0.5) * sx - 0.5.
    sx = (out[:, 16, width - 2, 0] - out[:, 16, 1, 0]) / (width - 3)
    sy = (out[:, height - 2, 24, 1] - out[:, 1, 24, 1]) / (height - 3)
    area, ratio = sx * sy, (sx * width) / (sy * height)
    assert area.min() >= 0.08 - 1e-3 and area.max() <= 1 + 1e-3
    assert ratio.min() >= 3 / 4 - 1e-3 and ratio.max() <= 4 / 3 + 1e-3
    # The whole range is drawn; at 3:2 a crop of ratio <= 4/3 covers at most 8/9 of the area.
    assert area.min() < 0.2 and area.max() > 0.8
    left = out[:, 16, 1, 0] - 1 - 1.5 * sx + 0.5
    assert left.min() >= -1e-3 and (left + sx * width).max() <= width + 1e-3
    with pytest.raises(ValueError, match="scale must be"):
        kr.layers.RandomResizedCrop(scale=(0.5, 0.2))


@pytest.mark.parametrize("preset", ["mixup", "cutmix"])
def test_mixing_presets_draw_a_weight_and_a_partner_per_image(preset):
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (16, *SIZE, 3)), "float32")
    labels = tf.one_hot(np.arange(16), 16)
    _, mixed = kr.data.augmentation(preset, image_size=SIZE, seed=0)((images, labels))
    mixed = np.asarray(mixed)
    own = mixed[np.arange(16), np.arange(16)]
    assert len(set(np.round(own, 4).tolist())) >= 12  # one weight per image
    partners = {int(np.argsort(row)[-2]) for row, weight in zip(mixed, own) if weight < 0.999}
    assert len(partners) >= 10  # a permutation of the batch, not one partner for all


@pytest.mark.parametrize("preset", ["cifar", "randaugment"])
def test_preset_inside_a_model_augments_in_fit_only_and_round_trips(preset, tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((*SIZE, 3))
    x = kr.data.augmentation(preset, image_size=SIZE, seed=1)(inputs)
    x = keras.layers.Rescaling(1 / 255.0)(x)
    x = keras.layers.Conv2D(4, 3)(x)
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    plain = keras.Sequential(model.layers[2:])  # the same layers without the augmentation
    images, labels = batch()
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), plain.predict(images, verbose=0)
    )
    trained = np.asarray(model(images, training=True))
    assert not np.allclose(trained, model.predict(images, verbose=0))
    model.compile("sgd", "categorical_crossentropy")
    model.fit(images, labels, epochs=1, verbose=0)
    model.save(tmp_path / "augmented.keras")
    loaded = keras.models.load_model(tmp_path / "augmented.keras")
    assert loaded.layers[1].get_config()["preset"] == preset
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


def test_mixing_presets_need_one_hot_labels_and_the_right_size():
    images, labels = batch()
    mixup = kr.data.augmentation("mixup", image_size=SIZE)
    with pytest.raises(ValueError, match="mixes labels too"):
        mixup(images, training=True)
    with pytest.raises(ValueError, match="mixes labels too"):
        mixup((images, tf.constant([0, 1, 2, 0, 1, 2])), training=True)
    with pytest.raises(ValueError, match="received images of size"):
        kr.data.augmentation("basic", image_size=(64, 64))(images, training=True)
    with pytest.raises(ValueError, match="Unknown augmentation preset 'autoaugment'"):
        kr.data.augmentation("autoaugment", image_size=SIZE)
    with pytest.raises(ValueError, match="needs image_size"):
        kr.data.augmentation("cifar")


def test_augmented_model_mixes_labels_in_the_train_step_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [
            keras.Input((*SIZE, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model = kr.data.AugmentedModel(inner, "cutmix", seed=0)
    model.compile("sgd", "categorical_crossentropy")
    images, labels = batch()
    # The train step sees mixed labels: its loss differs from the plain loss at the same weights.
    plain_loss = float(keras.losses.categorical_crossentropy(labels, inner(images)).numpy().mean())
    history = model.fit(images, labels, batch_size=6, epochs=1, verbose=0, shuffle=False)
    assert abs(history.history["loss"][0] - plain_loss) > 1e-3
    np.testing.assert_array_equal(
        model.predict(images, verbose=0), inner.predict(images, verbose=0)
    )
    model.save(tmp_path / "cutmix.keras")
    loaded = keras.models.load_model(tmp_path / "cutmix.keras")
    assert isinstance(loaded, kr.data.AugmentedModel)
    assert loaded.augmentation.preset == "cutmix"
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6
    )


# --- class imbalance ---------------------------------------------------------------------------


def test_class_weights_are_inverse_frequency_with_mean_one():
    weights = kr.data.class_weights({"common": 950, "rare": 50})
    assert weights == {0: 0.1, 1: 1.9}
    three = kr.data.class_weights([100, 50, 25])
    values = np.array(list(three.values()))
    assert np.isclose(values.mean(), 1.0)
    np.testing.assert_allclose(values * [100, 50, 25], values[0] * 100)
    with pytest.raises(ValueError, match=r"Classes \['dog'\] have no samples"):
        kr.data.class_weights({"cat": 3, "dog": 0})


def test_oversampling_95_to_5_draws_each_class_half_the_time():
    labels = np.array([0] * 950 + [1] * 50, "int32")
    features = np.arange(1000, dtype="float32")[:, None]
    data = tf.data.Dataset.from_tensor_slices((features, labels)).shuffle(1000, seed=0)
    balanced = kr.data.oversample(data, {"common": 950, "rare": 50}, num_samples=10_000, seed=0)
    features, drawn = (np.asarray(t) for t in next(iter(balanced.batch(20_000))))
    assert len(drawn) == 10_000
    assert 0.47 <= drawn.mean() <= 0.53
    # With replacement: the 50 rare samples are each drawn about 100 times.
    assert len(np.unique(features[drawn == 1])) == 50


def test_oversampling_a_batched_image_folder_keeps_batches_and_one_hot_labels(tmp_path):
    folder = kr.data.make_demo_dataset(tmp_path / "d", num_images=24, image_size=32)
    for name in [f"pentagon_{i:05d}.jpg" for i in range(2, 12)]:
        (tmp_path / "d" / "pentagon" / name).unlink()
    train, _, info = kr.data.image_folder(
        folder, image_size=SIZE, batch_size=4, label_mode="categorical", scan_cache=False
    )
    assert info.counts == {"ellipse": 12, "pentagon": 2}
    balanced = kr.data.oversample(train, info.counts, num_samples=400, seed=1)
    batches = list(balanced)
    assert len(batches) == 100 and batches[0][0].shape == (4, *SIZE, 3)
    share = np.concatenate([np.asarray(y) for _, y in batches]).mean(axis=0)
    assert abs(share[1] - 0.5) < 0.08
    with pytest.raises(ValueError, match="cannot read a class from labels"):
        kr.data.oversample(train, [1, 2, 3])


# --- semi-supervised ---------------------------------------------------------------------------


def two_moons(n, rng, noise=0.1):
    t = rng.uniform(0, np.pi, n)
    labels = rng.permutation(np.arange(n) % 2)
    upper = np.stack([np.cos(t), np.sin(t)], 1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    points = np.where(labels[:, None] == 0, upper, lower) + rng.normal(0, noise, (n, 2))
    return points.astype("float32"), labels.astype("int32")


def mlp(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((2,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def test_fixmatch_with_unlabelled_data_beats_labelled_only_on_two_moons():
    # 8 labelled points and 2,000 unlabelled ones: the labelled-only network draws a boundary
    # that cuts through the moons; FixMatch's pseudo-labels carry the labels along each moon.
    rng = np.random.default_rng(0)
    labelled_x, labelled_y = two_moons(8, rng)
    unlabelled_x, _ = two_moons(2000, rng)
    test_x, test_y = two_moons(2000, rng)
    labelled = tf.data.Dataset.from_tensor_slices((labelled_x, labelled_y)).batch(8)

    baseline = mlp(0)
    baseline.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    baseline.fit(labelled.repeat(), steps_per_epoch=32, epochs=10, verbose=0)
    labelled_only = baseline.evaluate(test_x, test_y, verbose=0)[1]

    fixmatch = kr.data.FixMatch(
        mlp(0),
        weak=keras.layers.GaussianNoise(0.1, seed=1),
        strong=keras.layers.GaussianNoise(0.25, seed=2),
        threshold=0.9,
    )
    fixmatch.compile(
        keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    unlabelled = tf.data.Dataset.from_tensor_slices(unlabelled_x).shuffle(2000, seed=0).batch(64)
    history = fixmatch.fit(
        kr.data.semi_supervised_dataset(labelled, unlabelled), epochs=10, verbose=0
    )
    semi_supervised = fixmatch.evaluate(test_x, test_y, verbose=0)[1]

    print(f"two moons: labelled only {labelled_only:.3f}, FixMatch {semi_supervised:.3f}")
    assert semi_supervised >= labelled_only + 0.03, (labelled_only, semi_supervised)
    assert history.history["pseudo_labelled"][-1] > 0.5
    assert len(history.history["accuracy"]) == 10


def test_fixmatch_on_images_with_presets_round_trips(tmp_path, demo_folder):
    labelled, val, _ = kr.data.image_folder(
        demo_folder, image_size=SIZE, batch_size=4, validation_split=0.25, scan_cache=False
    )
    unlabelled, _, _ = kr.data.image_folder(
        demo_folder, image_size=SIZE, batch_size=8, scan_cache=False
    )
    keras.utils.set_random_seed(0)
    inner = keras.Sequential(
        [
            keras.Input((*SIZE, 3)),
            keras.layers.Rescaling(1 / 255.0),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )
    # Presets by name; RandAugment, the default strong view, is the slowest to trace.
    model = kr.data.FixMatch(inner, weak="cifar", strong="basic", threshold=0.5, seed=0)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(
        kr.data.semi_supervised_dataset(labelled, unlabelled),
        validation_data=val,
        epochs=1,
        verbose=0,
    )
    assert {"loss", "accuracy", "pseudo_labelled", "val_accuracy"} <= set(history.history)
    images, _ = next(iter(val))
    model.save(tmp_path / "fixmatch.keras")
    loaded = keras.models.load_model(tmp_path / "fixmatch.keras")
    assert (loaded.weak.preset, loaded.strong.preset, loaded.threshold) == ("cifar", "basic", 0.5)
    np.testing.assert_allclose(
        loaded.predict(images, verbose=0), inner.predict(images, verbose=0), atol=1e-6
    )


def test_fixmatch_trains_under_mirrored_strategy(two_device_strategy):
    rng = np.random.default_rng(1)
    x, y = two_moons(64, rng)
    labelled = tf.data.Dataset.from_tensor_slices((x[:16], y[:16])).batch(8)
    unlabelled = tf.data.Dataset.from_tensor_slices(x[16:]).batch(16)
    with two_device_strategy.scope():
        model = kr.data.FixMatch(
            mlp(0),
            weak=keras.layers.GaussianNoise(0.1),
            strong=keras.layers.GaussianNoise(0.3),
            threshold=0.6,
        )
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(kr.data.semi_supervised_dataset(labelled, unlabelled), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize("where", ["model", "tf.data"])
def test_the_flip_preset_flips_each_image_on_its_own_and_nothing_else(where):
    images = identical_images()
    layer = kr.data.augmentation("flip", seed=0)
    if where == "model":
        out = np.asarray(layer(images, training=True))
    else:
        dataset = tf.data.Dataset.from_tensors(images)
        out = np.asarray(next(iter(dataset.map(lambda x: layer(x, training=True)))))
    flipped = np.asarray(images)[:, :, ::-1]
    is_flipped = [np.allclose(o, f) for o, f in zip(out, flipped)]
    is_same = [np.allclose(o, i) for o, i in zip(out, np.asarray(images))]
    assert all(a or b for a, b in zip(is_flipped, is_same))
    assert 0 < sum(is_flipped) < len(out)
