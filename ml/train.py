"""Train an expression classifier on FER2013.

Library entry point :func:`train` (takes a :class:`TrainConfig`), CLI :func:`main`::

    python -m ml.train --arch cnn --data ../shared/data/fer2013/fer2013.csv.gz \
        --out runs/cnn --epochs 40

Model selection (best checkpoint, early stopping) uses **PublicTest only**; PrivateTest is never
read here. Every epoch writes ``last.keras`` (weights + optimizer state, for ``--resume``),
``best.keras`` when PublicTest accuracy improves, and a row of ``log.csv``. The same command
runs unchanged on a GPU when TensorFlow sees one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ml.datasets import load_fer2013
from ml.labels import NUM_CLASSES
from ml.preprocessing import INPUT_SIZE


@dataclass
class TrainConfig:
    """Everything that defines a training run (written to ``config.json`` in the run folder).

    Attributes:
        arch: registry key, ``"cnn"`` or ``"resnet50"``.
        data: FER2013 csv/csv.gz path (``None``: ``$ENGAGEMENT_FER2013_CSV``).
        out: run folder for checkpoints and logs.
        ferplus: optional FER+ csv; when given, targets are the FER+ vote distributions mixed
            with the FER2013 label (``ferplus_weight`` of the target mass on FER+).
        ferplus_weight: share of the target taken from FER+ votes, in ``[0, 1]``.
        epochs: total epochs (a resumed run continues up to this number).
        batch_size: images per step.
        lr: peak learning rate of AdamW after warm-up.
        weight_decay: AdamW decoupled weight decay.
        warmup_epochs: linear warm-up length; cosine decay to 0 afterwards.
        label_smoothing: cross-entropy label smoothing (Szegedy et al., 2016).
        class_weight_power: sample weight per class = (n_max / n_class) ** power; 0 disables,
            0.5 (default) is square-root inverse frequency, which lifts disgust without
            swamping the frequent classes.
        patience: early-stopping patience in epochs on PublicTest accuracy (0 disables).
        seed: seed for numpy, Python and TensorFlow.
        mixed_precision: ``"auto"`` uses bfloat16 on CPUs with AMX/AVX512-BF16 and float16 on
            GPUs; ``"off"`` keeps float32.
        limit: read only this many csv rows (smoke runs).
        model_kwargs: extra arguments for the model builder.
        verbose: Keras verbosity (1 = progress bar, 2 = one line per epoch).
    """

    arch: str = "cnn"
    data: str | None = None
    out: str = "runs/cnn"
    ferplus: str | None = None
    ferplus_weight: float = 0.5
    epochs: int = 40
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_epochs: int = 2
    label_smoothing: float = 0.1
    class_weight_power: float = 0.5
    patience: int = 12
    seed: int = 1234
    mixed_precision: str = "auto"
    limit: int | None = None
    model_kwargs: dict = field(default_factory=dict)
    verbose: int = 1


def class_weights(labels: np.ndarray, power: float) -> np.ndarray:
    """Per-class sample weights ``(n_max / n_c) ** power``, normalised to mean 1 over samples.

    Args:
        labels: ``int`` ``(N,)`` class ids in ``0..6``.
        power: 0 gives all ones.

    Returns:
        ``float32`` ``(7,)``; a class absent from ``labels`` gets weight 1.
    """
    counts = np.bincount(labels, minlength=NUM_CLASSES).astype(np.float64)
    present = counts > 0
    w = np.ones(NUM_CLASSES)
    w[present] = (counts[present].max() / counts[present]) ** power
    w /= (w[labels]).mean()
    return w.astype(np.float32)


def make_targets(labels: np.ndarray, soft: np.ndarray | None, ferplus_weight: float) -> np.ndarray:
    """``float32`` ``(N, 7)`` training targets: one-hot labels, optionally mixed with FER+ votes."""
    onehot = np.eye(NUM_CLASSES, dtype=np.float32)[labels]
    if soft is None or ferplus_weight <= 0:
        return onehot
    return ((1 - ferplus_weight) * onehot + ferplus_weight * soft).astype(np.float32)


def _set_precision(mode: str) -> str:
    import keras
    import tensorflow as tf

    if mode == "off":
        policy = "float32"
    elif tf.config.list_physical_devices("GPU"):
        policy = "mixed_float16"
    else:
        flags = ""
        if Path("/proc/cpuinfo").exists():
            flags = Path("/proc/cpuinfo").read_text()
        policy = "mixed_bfloat16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def augmenter():
    """The training-time augmentation: a ``keras.Sequential`` on ``(N, 48, 48, 1)`` in [0, 1].

    Horizontal flip, shifts of up to 10% (reflect padding), rotations up to +-10 degrees, zoom
    +-10%, brightness +-0.1 and contrast +-20% (then clipped back to [0, 1]).
    """
    import keras
    from keras import layers

    return keras.Sequential(
        [
            layers.RandomFlip("horizontal"),
            layers.RandomRotation(10 / 360, fill_mode="reflect"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="reflect"),
            layers.RandomZoom(0.1, fill_mode="reflect"),
            layers.RandomBrightness(0.1, value_range=(0.0, 1.0)),
            layers.RandomContrast(0.2),
        ],
        name="augment",
    )


def _dataset(x, y, w, batch_size: int, *, train: bool, seed: int):
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y, w) if w is not None else (x, y))
    if train:
        aug = augmenter()
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=True)
        ds = ds.map(
            lambda xb, yb, wb: (tf.clip_by_value(aug(xb, training=True), 0.0, 1.0), yb, wb),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    else:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def _images(split) -> np.ndarray:
    return (split.images.astype(np.float32) / 255.0)[..., None]


def _command_line(argv: list[str]) -> str:
    """The command that started this process, as a user would type it.

    Under ``python -m ml.train`` ``sys.argv[0]`` is the module's file path; write it back as
    ``python -m ml.train`` so the command in ``config.json`` and the model metadata is runnable.
    """
    if not argv:
        return ""
    head = argv[0].replace("\\", "/")
    prefix = ["python", "-m", "ml.train"] if head.endswith("ml/train.py") else [argv[0]]
    return " ".join(shlex.quote(a) for a in [*prefix, *argv[1:]])


def _epoch_timer(path: Path, append: bool):
    """A callback appending ``epoch,seconds,finished_at`` rows to ``path`` (training time)."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            new = not path.exists()
            with open(path, "a", newline="") as fh:
                w = csv.writer(fh)
                if new:
                    w.writerow(["epoch", "seconds", "finished_at"])
                w.writerow([epoch, round(time.time() - self._t0, 2), round(time.time(), 1)])

    if not append and path.exists():
        path.unlink()
    return EpochTimer()


def _early_stopping(patience: int, best: float | None, wait: int):
    """EarlyStopping on PublicTest accuracy that resumes its counters from the log."""
    import keras

    class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
        def on_train_begin(self, logs=None):
            super().on_train_begin(logs)
            if best is not None:
                self.best, self.wait = best, wait

    return ResumableEarlyStopping(
        monitor="val_accuracy", mode="max", patience=patience, baseline=None, start_from_epoch=0
    )


def train(config: TrainConfig, *, resume: bool = False) -> dict:
    """Run (or resume) training.

    The global Keras dtype policy (mixed precision) is set for the run and restored afterwards.

    Args:
        config: the run's settings.
        resume: continue from ``<out>/last.keras`` and ``<out>/log.csv`` if they exist; the
            early-stopping counter continues from the log too.

    Returns:
        Summary dict: best PublicTest accuracy and its epoch, epochs run, seconds, paths.

    Raises:
        ml.datasets.DatasetError: the data file is missing or malformed.
        KeyError: unknown architecture.
        ValueError: Training or PublicTest is empty, or Training has fewer images than one
            batch.
    """
    import keras

    previous_policy = keras.mixed_precision.global_policy()
    try:
        return _train(config, resume=resume)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)


def _train(config: TrainConfig, *, resume: bool) -> dict:
    import keras

    from ml.models import build_model

    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    policy = _set_precision(config.mixed_precision)

    data = load_fer2013(config.data, ferplus_path=config.ferplus, limit=config.limit)
    tr, va = data["Training"], data["PublicTest"]
    if len(tr) == 0 or len(va) == 0:
        raise ValueError("Training and PublicTest must both be non-empty")
    if len(tr) < config.batch_size:
        raise ValueError(
            f"Training has {len(tr)} images, fewer than one batch of {config.batch_size} "
            "(incomplete batches are dropped)"
        )
    x_tr, x_va = _images(tr), _images(va)
    y_tr = make_targets(tr.labels, tr.soft_labels, config.ferplus_weight)
    y_va = np.eye(NUM_CLASSES, dtype=np.float32)[va.labels]
    cw = class_weights(tr.labels, config.class_weight_power)
    w_tr = cw[tr.labels]
    train_ds = _dataset(x_tr, y_tr, w_tr, config.batch_size, train=True, seed=config.seed)
    val_ds = _dataset(x_va, y_va, None, 256, train=False, seed=config.seed)
    steps_per_epoch = max(1, len(x_tr) // config.batch_size)

    last_path, best_path, log_path = out / "last.keras", out / "best.keras", out / "log.csv"
    initial_epoch = 0
    best_acc = -1.0
    epochs_since_best = 0
    if resume and last_path.exists() and log_path.exists():
        model = keras.models.load_model(last_path)
        with open(log_path) as fh:
            rows = list(csv.DictReader(fh))
        initial_epoch = len(rows)
        if rows:
            accs = [float(r["val_accuracy"]) for r in rows]
            best_acc = max(accs)
            epochs_since_best = len(accs) - 1 - int(np.argmax(accs))
        print(
            f"resuming {out} at epoch {initial_epoch + 1}/{config.epochs} (best PublicTest {best_acc:.4f})"
        )
    else:
        model = build_model(config.arch, **config.model_kwargs)
        total = steps_per_epoch * config.epochs
        warmup = steps_per_epoch * config.warmup_epochs
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr * 0.01,
            decay_steps=max(1, total - warmup),
            alpha=0.0,
            warmup_target=config.lr,
            warmup_steps=warmup,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate=schedule, weight_decay=config.weight_decay
            ),
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config.label_smoothing
            ),
            metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        )
        for f in (log_path,):
            if f.exists():
                f.unlink()
    command = _command_line(sys.argv)
    history: dict = {}
    if initial_epoch > 0 and (out / "config.json").exists():
        # Keep the command that started the run; list the resume commands after it.
        try:
            previous = json.loads((out / "config.json").read_text())
        except json.JSONDecodeError:
            previous = {}
        if previous.get("command"):
            history["resumed_with"] = [*previous.get("resumed_with", []), command]
            command = previous["command"]
    (out / "config.json").write_text(
        json.dumps(
            {
                **asdict(config),
                "command": command,
                **history,
                "data_sha256": data.sha256,
                "precision_policy": policy,
                "hardware": _hardware(),
            },
            indent=2,
        )
    )

    callbacks = [
        keras.callbacks.ModelCheckpoint(last_path, save_best_only=False),
        keras.callbacks.ModelCheckpoint(
            best_path,
            monitor="val_accuracy",
            mode="max",
            save_best_only=True,
            initial_value_threshold=best_acc if best_acc >= 0 else None,
        ),
        keras.callbacks.CSVLogger(log_path, append=initial_epoch > 0),
        _epoch_timer(out / "timing.csv", append=initial_epoch > 0),
        keras.callbacks.TerminateOnNaN(),
    ]
    if config.patience > 0:
        callbacks.append(
            _early_stopping(config.patience, best_acc if initial_epoch else None, epochs_since_best)
        )
        if initial_epoch and epochs_since_best >= config.patience:
            print(
                f"early stopping had already stopped {out} ({epochs_since_best} epochs since best)"
            )
            initial_epoch = config.epochs
    started = time.time()
    if initial_epoch < config.epochs:
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=callbacks,
            verbose=config.verbose,
            shuffle=False,  # the tf.data pipeline shuffles; Keras ignores this for datasets
        )
    seconds = time.time() - started
    with open(log_path) as fh:
        rows = list(csv.DictReader(fh))
    best = max(rows, key=lambda r: float(r["val_accuracy"])) if rows else None
    summary = {
        "arch": config.arch,
        "epochs_run": len(rows),
        "best_epoch": int(best["epoch"]) + 1 if best else None,
        "best_public_test_accuracy": float(best["val_accuracy"]) if best else None,
        "seconds_this_call": round(seconds, 1),
        "best_model": str(best_path),
        "last_model": str(last_path),
        "data_sha256": data.sha256,
        "input_size": INPUT_SIZE,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    keras.backend.clear_session()
    return summary


def _hardware() -> str:
    try:
        import tensorflow as tf

        gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    except Exception:  # noqa: BLE001 - hardware description is best effort
        gpus = []
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores" + (
        f", GPUs: {gpus}" if gpus else ", no GPU"
    )


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, bool]:
    """Parse the CLI into a :class:`TrainConfig` and the resume flag."""
    d = TrainConfig()
    p = argparse.ArgumentParser(prog="python -m ml.train", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default=d.arch, help="cnn or resnet50")
    p.add_argument(
        "--data", default=d.data, help="FER2013 csv/csv.gz (default $ENGAGEMENT_FER2013_CSV)"
    )
    p.add_argument("--out", default=None, help="run folder (default runs/<arch>)")
    p.add_argument("--ferplus", default=None, help="FER+ fer2013new.csv for soft targets")
    p.add_argument("--ferplus-weight", type=float, default=d.ferplus_weight)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument("--class-weight-power", type=float, default=d.class_weight_power)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--mixed-precision", choices=["auto", "off"], default=d.mixed_precision)
    p.add_argument("--limit", type=int, default=None, help="read only this many csv rows")
    p.add_argument("--width", type=float, default=None, help="cnn channel multiplier")
    p.add_argument("--weights", default=None, help="resnet50: imagenet (downloads) or none")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="resnet50: side the 48-px face is resized to (default 96; >= 32)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.keras")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    a = p.parse_args(argv)
    kwargs = {}
    if a.width is not None:
        kwargs["width"] = a.width
    if a.weights and a.weights != "none":
        kwargs["weights"] = a.weights
    if a.input_size is not None:
        if a.arch != "resnet50":
            p.error("--input-size applies to --arch resnet50 only")
        kwargs["input_size"] = a.input_size
    cfg = TrainConfig(
        arch=a.arch,
        data=a.data,
        out=a.out or f"runs/{a.arch}",
        ferplus=a.ferplus,
        ferplus_weight=a.ferplus_weight,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        weight_decay=a.weight_decay,
        warmup_epochs=a.warmup_epochs,
        label_smoothing=a.label_smoothing,
        class_weight_power=a.class_weight_power,
        patience=a.patience,
        seed=a.seed,
        mixed_precision=a.mixed_precision,
        limit=a.limit,
        model_kwargs=kwargs,
        verbose=a.verbose,
    )
    return cfg, a.resume


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    from ml.datasets import DatasetError

    config, resume = parse_args(argv)
    try:
        summary = train(config, resume=resume)
    except (DatasetError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
