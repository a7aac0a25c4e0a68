"""The cheap-student recipe: robust augmentation, distillation, slimming, MAC counting, FER+
unusable faces."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ml.ml_testdata import synthetic_faces

# --- augmentation -------------------------------------------------------------------------------


def test_augment_batch_keeps_shape_scale_and_degrades_most_faces():
    from ml.augment import augment_batch, robust_augmentation

    images, _ = synthetic_faces(64, seed=3)
    out = augment_batch(robust_augmentation(seed=1), images)
    assert out.shape == (64, 48, 48, 1) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    changed = [
        not np.array_equal(np.rint(o[:, :, 0] * 255).astype(np.uint8), i)
        for o, i in zip(out, images, strict=True)
    ]
    assert np.mean(changed) > 0.8
    # Seeded: the same seed gives the same faces.
    again = augment_batch(robust_augmentation(seed=1), images)
    np.testing.assert_array_equal(out, again)


def test_augment_batch_rejects_other_inputs():
    from ml.augment import augment_batch, robust_augmentation

    pipeline = robust_augmentation(seed=0)
    with pytest.raises(ValueError, match="uint8"):
        augment_batch(pipeline, np.zeros((2, 48, 48), np.float32))
    with pytest.raises(ValueError, match="shape"):
        augment_batch(pipeline, np.zeros((48, 48), np.uint8))


def test_augmentation_covers_dim_light_blur_and_far_faces():
    """Over many draws the pipeline produces the degradations the suite measures."""
    import cv2

    from ml.augment import augment_batch, robust_augmentation

    rng = np.random.default_rng(0)
    face = (rng.random((48, 48)) * 255).astype(np.uint8)
    face = cv2.GaussianBlur(face, (0, 0), 1.0)
    out = augment_batch(robust_augmentation(seed=5), np.repeat(face[None], 400, axis=0))[..., 0]
    means = out.mean(axis=(1, 2))
    sharp = np.array([cv2.Laplacian((o * 255).astype(np.uint8), cv2.CV_64F).var() for o in out])
    base_sharp = cv2.Laplacian(face, cv2.CV_64F).var()
    assert (means < 0.5 * face.mean() / 255).mean() > 0.05  # dimmed to under half
    assert (sharp < 0.3 * base_sharp).mean() > 0.05  # blurred or shrunk
    assert (np.abs(means - face.mean() / 255) < 0.02).mean() > 0.05  # some keep their light


def test_robust_v2_draws_dim_noisy_faces_more_often_than_robust():
    """A flat gray face stays flat under every step but light, noise and occlusion, so a dim
    face with pixel spread is a dim *and* noisy draw (or an occluded dim one)."""
    from ml.augment import augment_batch, robust_augmentation

    flat = np.full((800, 48, 48), 160, np.uint8)

    def dim_noisy_share(variant: str) -> float:
        out = augment_batch(robust_augmentation(seed=7, variant=variant), flat)[..., 0]
        dim = out.mean(axis=(1, 2)) < 0.6 * 160 / 255
        return float((dim & (out.std(axis=(1, 2)) > 0.015)).mean())

    first, second = dim_noisy_share("robust"), dim_noisy_share("robust-v2")
    assert second > 0.1 and second > 2 * first


def test_robust_augmentation_names_its_variants():
    from ml.augment import VARIANTS, robust_augmentation
    from ml.train import ROBUST_AUGMENTATIONS

    assert ROBUST_AUGMENTATIONS == VARIANTS
    with pytest.raises(ValueError, match="robust-v2"):
        robust_augmentation(seed=0, variant="robust-v3")


def test_training_input_runs_the_chosen_variant():
    """``--augment robust-v2`` reaches the tf.data pipeline: with the same seed and faces, the
    same variant gives the same batch twice and the other variant a different one."""
    from ml.train import _dataset

    images, labels = synthetic_faces(32, seed=4)
    weights = np.ones(len(labels), np.float32)

    def first_batch(variant: str) -> np.ndarray:
        ds = _dataset(images[..., None], labels, weights, 32, train=True, seed=3, augment=variant)
        x, _, _ = next(iter(ds))
        return np.asarray(x)

    v1, v2 = first_batch("robust"), first_batch("robust-v2")
    for x in (v1, v2):
        assert x.dtype == np.float32 and x.shape == (32, 48, 48, 1)
        assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_array_equal(first_batch("robust-v2"), v2)
    assert not np.array_equal(v1, v2)


# --- distillation --------------------------------------------------------------------------------


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_distillation_loss_matches_the_formula():
    from ml.distill import DistillationLoss, pack_targets

    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 7)).astype(np.float32), rng.normal(size=(5, 7)).astype(np.float32)
    y = np.eye(7, dtype=np.float32)[[0, 3, 6, 2, 1]]
    alpha, temp, ls = 0.6, 3.0, 0.1
    loss = DistillationLoss(alpha=alpha, temperature=temp, label_smoothing=ls)
    got = float(loss(pack_targets(y, t), s))
    smooth = y * (1 - ls) + ls / 7
    hard = -(smooth * np.log(_softmax(s))).sum(1)
    pt, ps = _softmax(t / temp), _softmax(s / temp)
    kl = (pt * (np.log(pt) - np.log(ps))).sum(1)
    expected = ((1 - alpha) * hard + alpha * temp**2 * kl).mean()
    assert got == pytest.approx(expected, rel=1e-5)
    # The soft term vanishes when the student equals the teacher.
    only_soft = DistillationLoss(alpha=1.0, temperature=temp)
    assert float(only_soft(pack_targets(y, t), t)) == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_checks_its_arguments_and_round_trips():
    from ml.distill import DistillationLoss, pack_targets

    for kwargs in ({"alpha": 1.5}, {"temperature": 0}, {"label_smoothing": 1.0}):
        with pytest.raises(ValueError):
            DistillationLoss(**kwargs)
    loss = DistillationLoss(alpha=0.3, temperature=4.0, label_smoothing=0.05)
    clone = DistillationLoss.from_config(loss.get_config())
    assert (clone.alpha, clone.temperature, clone.label_smoothing) == (0.3, 4.0, 0.05)
    with pytest.raises(ValueError, match="must both be"):
        pack_targets(np.zeros((2, 7)), np.zeros((3, 7)))


def test_target_accuracy_reads_the_target_columns():
    from ml.distill import pack_targets, target_accuracy

    y = np.eye(7, dtype=np.float32)[[1, 2]]
    teacher = np.eye(7, dtype=np.float32)[[5, 5]] * 10  # the teacher is ignored
    pred = np.eye(7, dtype=np.float32)[[1, 4]]
    acc = np.asarray(target_accuracy(pack_targets(y, teacher), pred))
    np.testing.assert_array_equal(acc, [1.0, 0.0])


def test_teacher_logits_are_cached_per_teacher_and_data(tmp_path, tiny_keras_model):
    from ml.distill import teacher_logits
    from ml.modelio import load_keras_model

    images, _ = synthetic_faces(10, seed=2)
    x = (images / 255.0).astype(np.float32)[..., None]
    cache = tmp_path / "t.npz"
    first = teacher_logits(tiny_keras_model, {"Training": x}, cache, data_sha256="abc")
    expected = np.asarray(load_keras_model(tiny_keras_model)(x, training=False))
    np.testing.assert_allclose(first["Training"], expected, rtol=1e-5, atol=1e-6)
    # A cached file with the same key is read back, not recomputed.
    with np.load(cache) as z:
        saved = {k: z[k] for k in z.files}
    saved["Training"] = saved["Training"] + 1.0
    np.savez(cache, **saved)
    assert np.allclose(
        teacher_logits(tiny_keras_model, {"Training": x}, cache, data_sha256="abc")["Training"],
        first["Training"] + 1.0,
    )
    # Other data: recomputed.
    other = teacher_logits(tiny_keras_model, {"Training": x}, cache, data_sha256="def")
    np.testing.assert_allclose(other["Training"], first["Training"], rtol=1e-5, atol=1e-6)
    with pytest.raises(FileNotFoundError):
        teacher_logits(tmp_path / "missing.keras", {"Training": x}, cache)
    # A teacher that ends in a softmax gives probabilities, which are not logits.
    import keras

    inp = keras.Input((48, 48, 1))
    probs = keras.layers.Dense(7, activation="softmax")(keras.layers.Flatten()(inp))
    keras.Model(inp, probs).save(tmp_path / "softmax.keras")
    with pytest.raises(ValueError, match="probabilities"):
        teacher_logits(tmp_path / "softmax.keras", {"Training": x}, tmp_path / "s.npz")


def test_ensemble_teacher_logits_are_the_members_mean_and_cached_apart(tmp_path, tiny_keras_model):
    import keras

    from ml.distill import teacher_logits
    from ml.modelio import load_keras_model
    from ml.models import build_model

    keras.utils.set_random_seed(11)
    other = tmp_path / "other.keras"
    build_model("cnn", width=0.125).save(other)
    images, _ = synthetic_faces(6, seed=3)
    x = (images / 255.0).astype(np.float32)[..., None]
    a = np.asarray(load_keras_model(tiny_keras_model)(x, training=False))
    b = np.asarray(load_keras_model(other)(x, training=False))
    assert not np.allclose(a, b)
    cache = tmp_path / "t.npz"
    both = teacher_logits([tiny_keras_model, other], {"Training": x}, cache, batch_size=4)
    np.testing.assert_allclose(both["Training"], (a + b) / 2, rtol=1e-5, atol=1e-6)
    # One member alone is another teacher: the ensemble's cache is not reused for it.
    alone = teacher_logits([tiny_keras_model], {"Training": x}, cache)
    np.testing.assert_allclose(alone["Training"], a, rtol=1e-5, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing"):
        teacher_logits([tiny_keras_model, tmp_path / "missing.keras"], {"Training": x}, cache)
    with pytest.raises(ValueError, match="no teacher"):
        teacher_logits([], {"Training": x}, cache)


# --- slimming and cost ---------------------------------------------------------------------------


def test_slim_cnn_keeps_the_channels_with_the_largest_batchnorm_scale():
    import keras

    from ml.models.cnn import build_cnn, slim_cnn

    keras.utils.set_random_seed(4)
    source = build_cnn(width=0.25)  # 16/32/64/128 channels
    rng = np.random.default_rng(0)
    for layer in source.layers:
        if layer.name.endswith("_bn"):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.normal(size=g.shape).astype(np.float32), b, m, v + 0.5])
    small = slim_cnn(source, 0.125)  # 8/16/32/64
    assert small.get_layer("s1a_conv").filters == 8
    gamma = source.get_layer("s1a_bn").get_weights()[0]
    kept = np.sort(np.argsort(-np.abs(gamma))[:8])
    np.testing.assert_array_equal(small.get_layer("s1a_bn").get_weights()[0], gamma[kept])
    kept_b = np.sort(np.argsort(-np.abs(source.get_layer("s1b_bn").get_weights()[0]))[:8])
    np.testing.assert_array_equal(
        small.get_layer("s1b_conv").get_weights()[0],
        source.get_layer("s1b_conv").get_weights()[0][:, :, kept][..., kept_b],
    )
    np.testing.assert_array_equal(
        small.get_layer("logits").get_weights()[0], source.get_layer("logits").get_weights()[0]
    )
    with pytest.raises(ValueError, match="fewer than"):
        slim_cnn(small, 0.25)
    with pytest.raises(ValueError, match="not a build_cnn model"):
        slim_cnn(keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten()]), 0.125)


def test_count_macs_by_hand_and_per_view():
    import keras

    from ml.complexity import count_macs
    from ml.models.tta import with_tta

    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inp)  # 8*8*9*3*4 = 6912
    x = keras.layers.DepthwiseConv2D(3, padding="valid")(x)  # 6*6*9*4 = 1296
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(5)(x)  # 20
    assert count_macs(keras.Model(inp, out)) == 6912 + 1296 + 20

    from ml.models.cnn import build_cnn

    cnn = build_cnn(width=0.125)
    single = count_macs(cnn)
    views = count_macs(with_tta(cnn, ("full", "top_right_flip", "bottom_left_flip")))
    assert views == 3 * single + 2 * 48 * 48 * 48  # plus the mirror of the 2 flipped views


def test_cpu_description_names_the_instruction_sets():
    from ml.complexity import cpu_description, instruction_sets

    info = "processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu avx2 avx512f amx_tile\n"
    text = cpu_description(info)
    assert text.startswith("Test CPU 9000,") and "AVX2 AVX-512" in text and text.endswith("AMX")
    assert "no AMX" in cpu_description("model name\t: X\nflags\t: avx2\n")
    assert instruction_sets({"sse4_2"}) == []


# --- FER+ unusable faces ---------------------------------------------------------------------------


def test_ferplus_unusable_marks_not_a_face_and_unknown_majorities(tmp_path):
    from ml.datasets import DatasetError, ferplus_unusable

    header = (
        "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    )
    rows = [
        "Training,a.png,6,0,0,0,0,0,0,0,2,2",  # neutral wins
        "Training,b.png,1,0,0,0,0,0,0,0,1,8",  # not a face
        "Training,c.png,2,0,0,0,0,0,0,0,6,2",  # unknown
        "Training,d.png,0,0,0,0,0,0,0,5,5,0",  # tie with contempt: usable
        "Training,e.png,0,0,0,0,0,0,0,0,0,0",  # no votes at all
    ]
    path = tmp_path / "p.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    np.testing.assert_array_equal(ferplus_unusable(path), [False, True, True, False, True])

    from ml.datasets import Split

    split = Split(
        images=np.arange(5 * 4, dtype=np.uint8).reshape(5, 2, 2),
        labels=np.arange(5),
        rows=np.arange(10, 15),
        soft_labels=np.eye(7, dtype=np.float32)[:5],
    )
    kept = split.select(~ferplus_unusable(path))
    np.testing.assert_array_equal(kept.rows, [10, 13])
    np.testing.assert_array_equal(kept.labels, [0, 3])
    np.testing.assert_array_equal(kept.images, split.images[[0, 3]])
    np.testing.assert_array_equal(kept.soft_labels, split.soft_labels[[0, 3]])
    with pytest.raises(DatasetError, match="5 rows, but FER2013 has 4"):
        ferplus_unusable(path, expected_rows=4)


# --- the recipe end to end -------------------------------------------------------------------------


@pytest.mark.slow
def test_distilled_slimmed_robust_run_trains_resumes_and_loads(
    tmp_path, tiny_csv, tiny_keras_model
):
    import keras

    from ml.inference import ExpressionClassifier
    from ml.models.tta import with_tta
    from ml.train import TrainConfig, train

    # A teacher wrapped in test-time views, as the shipped file is; slimming reads the CNN inside.
    teacher = tmp_path / "teacher.keras"
    from ml.modelio import load_keras_model

    with_tta(load_keras_model(tiny_keras_model)).save(teacher)
    cfg = TrainConfig(
        arch="cnn",
        data=str(tiny_csv),
        out=str(tmp_path / "run"),
        epochs=1,
        batch_size=16,
        warmup_epochs=0,
        patience=0,
        mixed_precision="off",
        model_kwargs={"width": 0.0625},
        verbose=0,
        augment="robust",
        teacher=str(teacher),
        slim_from=str(teacher),
    )
    summary = train(cfg)
    run = tmp_path / "run"
    assert (run / "teacher_logits.npz").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["teacher"] == str(teacher) and config["augment"] == "robust"
    cfg.epochs = 2
    summary = train(cfg, resume=True)
    assert summary["epochs_run"] == 2
    model = load_keras_model(run / "best.keras")
    assert model.get_layer("s4b_conv").filters == 32  # width 0.0625 of 512
    p = ExpressionClassifier.load(run / "best.keras").predict_proba(np.zeros((2, 48, 48), np.uint8))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)
    keras.backend.clear_session()
    with pytest.raises(ValueError, match="augment must be one of"):
        train(TrainConfig(data=str(tiny_csv), out=str(tmp_path / "x"), augment="heavy"))
    with pytest.raises(ValueError, match="needs a FER"):
        train(TrainConfig(data=str(tiny_csv), out=str(tmp_path / "x"), ferplus_drop_unusable=True))


def test_export_records_macs_and_benchmark_prints_cpu_and_cost(exported_tiny, capsys):
    from ml import benchmark
    from ml.complexity import count_macs
    from ml.modelio import load_keras_model

    folder, meta = exported_tiny
    expected = count_macs(load_keras_model(folder / "expression_cnn.keras"))
    assert meta["model"]["macs_per_face"] == expected > 0
    assert "AMX" in meta["latency_ms_per_face_batch1"]["hardware"]  # "AMX" or "no AMX"
    assert (
        benchmark.main([str(folder / "expression_cnn.tflite"), "--batch", "1", "--repeats", "3"])
        == 0
    )
    out = capsys.readouterr().out
    assert "CPU: " in out and f"cost: {expected / 1e6:.1f} M multiply-adds per face" in out
    assert "batch   1:" in out
