"""Train an expression classifier on FER2013.

Library entry point :func:`train` (takes a :class:`TrainConfig`), CLI :func:`main`::

    python -m ml.train --arch cnn --data ../shared/data/fer2013/fer2013.csv.gz \
        --out runs/cnn --epochs 40

Model selection (best checkpoint, early stopping) uses **PublicTest only**; PrivateTest is never
read here. Every epoch writes ``last.keras`` (weights + optimizer state, for ``--resume``),
``best.keras`` when PublicTest accuracy improves, and a row of ``log.csv``. The same command
runs unchanged on a GPU when TensorFlow sees one.

It also runs on Keras 3's JAX and PyTorch back ends (``KERAS_BACKEND=jax`` or ``torch``), for a
GPU machine that has JAX or PyTorch but no TensorFlow: the input is then a
``keras.utils.PyDataset`` (NumPy batches, shuffled per epoch, augmented in worker threads by the
same Keras layers or albumentations pipeline) instead of ``tf.data``, and the ``.keras`` files it
writes load, export and evaluate under TensorFlow as the others do.

Why one module of about 950 lines: it is one job, the training loop and the pieces only it uses
(the config, the ``tf.data`` or ``PyDataset`` input with augmentation, class weights, the
learning-rate schedule, weight averaging, checkpoints and ``--resume``, the CLI); each is a
function of its own, and splitting them would scatter one recipe over files that are never used
apart.

Two options continue from a finished run instead of starting from random weights:

* ``--init-from PATH`` starts from a trained model's weights (same ``--arch`` and ``--width``)
  with a fresh optimiser and schedule (a warm restart, Loshchilov & Hutter 2017).
* ``--swa-start-epoch K`` turns on stochastic weight averaging (SWA, Izmailov et al. 2018,
  "Averaging Weights Leads to Wider Optima and Better Generalization"): the learning rate decays
  to ``--swa-lr`` by epoch ``K`` and stays there, the weights at the end of every epoch from
  ``K`` on are averaged, the batch-norm statistics are recomputed for the averaged weights, and
  the result is written to ``swa.keras``. ``summary.json`` names the selected model: the SWA
  model or ``best.keras``, whichever has the higher PublicTest accuracy.
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
        init_from: a trained ``.keras`` of the same architecture to take the initial weights
            from (not the optimiser state: the schedule starts over).
        swa_start_epoch: first epoch (1-based) whose end-of-epoch weights enter the stochastic
            weight average; 0 disables SWA.
        swa_lr: constant learning rate from ``swa_start_epoch`` on (default ``lr / 10``).
        augment: ``"basic"`` (flip, small rotation/shift/zoom, mild light: :func:`augmenter`),
            ``"robust"`` or ``"robust-v2"`` (:func:`ml.augment.robust_augmentation`: the
            classroom degradations; v2 draws dim noisy faces, defocus and far faces more).
        ferplus_drop_unusable: with ``ferplus``, leave out the Training faces whose FER+
            majority vote is "not a face" or "unknown" (:func:`ml.datasets.ferplus_unusable`).
        teacher: a trained model file whose logits on the clean Training and PublicTest faces
            become soft targets (knowledge distillation, Hinton et al. 2015), or a list of them
            (an ensemble teacher: mean logits, :func:`ml.distill.teacher_logits`); ``None``: no
            distillation. The logits are computed once and cached in the run folder.
        distill_weight: share ``alpha`` of the loss on the teacher, in ``[0, 1]``.
        distill_temperature: softmax temperature ``T`` of the distillation term (> 0).
        slim_from: a trained wider ``cnn`` model (or a model wrapping one, like the shipped
            file) to initialise from by network slimming (:func:`ml.models.cnn.slim_cnn`);
            ``--arch cnn`` only.
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
    init_from: str | None = None
    swa_start_epoch: int = 0
    swa_lr: float | None = None
    augment: str = "basic"
    ferplus_drop_unusable: bool = False
    teacher: str | list[str] | None = None
    distill_weight: float = 0.5
    distill_temperature: float = 2.0
    slim_from: str | None = None

    def swa_learning_rate(self) -> float:
        """The constant learning rate of the SWA phase (default ``lr / 10``)."""
        return self.swa_lr if self.swa_lr is not None else self.lr / 10


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


def gpu_names() -> list[str]:
    """The GPUs Keras's back end sees (TensorFlow, JAX or PyTorch); ``[]`` on a CPU.

    Returns:
        One name per GPU, as the back end spells it (for ``config.json``'s hardware line).
    """
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return [d.name for d in tf.config.list_physical_devices("GPU")]
        if backend == "jax":
            import jax

            return [str(d) for d in jax.devices() if d.platform == "gpu"]
        if backend == "torch":
            import torch

            return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - a back end without GPU support raises here
        return []
    return []


def _set_precision(mode: str) -> str:
    import keras

    if mode == "off":
        policy = "float32"
    elif gpu_names():
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


def _dataset(x, y, w, batch_size: int, *, train: bool, seed: int, augment: str = "basic"):
    """A ``tf.data`` pipeline; training batches are shuffled and augmented.

    ``x`` is ``float32`` in ``[0, 1]`` for ``augment="basic"`` and validation, ``uint8`` for
    the albumentations pipelines (``"robust"``, ``"robust-v2"``: they work on 8-bit images).
    On a Keras back end other than TensorFlow: :func:`array_batches`, the same batches.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return array_batches(x, y, w, batch_size, train=train, seed=seed, augment=augment)
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y, w) if w is not None else (x, y))
    if train:
        ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=True)
        if augment in ROBUST_AUGMENTATIONS:
            from ml.augment import tf_augment

            robust = tf_augment(seed, augment)
            ds = ds.map(
                lambda xb, yb, wb: (robust(xb), yb, wb), num_parallel_calls=tf.data.AUTOTUNE
            )
        else:
            aug = augmenter()
            ds = ds.map(
                lambda xb, yb, wb: (tf.clip_by_value(aug(xb, training=True), 0.0, 1.0), yb, wb),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
    else:
        ds = ds.batch(batch_size)
    return ds.prefetch(tf.data.AUTOTUNE)


def array_batches(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    batch_size: int,
    *,
    train: bool,
    seed: int,
    augment: str = "basic",
    workers: int | None = None,
):
    """The input of :func:`_dataset` without TensorFlow: a ``keras.utils.PyDataset``.

    Training batches are drawn from a new permutation every epoch (seeded by ``seed`` and the
    epoch), the last incomplete batch is dropped, and each batch is augmented as the ``tf.data``
    pipeline augments it: the Keras layers of :func:`augmenter` then clipping to ``[0, 1]``
    (``augment="basic"``), or the albumentations pipeline of :mod:`ml.augment`, one per worker
    thread, reseeded for every batch from ``(seed, epoch, batch index)`` so that a robust batch
    does not depend on which thread builds it. Validation batches are neither shuffled nor
    augmented, the last one kept.

    Args:
        x: ``(N, 48, 48, 1)`` faces: ``float32`` in ``[0, 1]``, or ``uint8`` for the
            albumentations pipelines (``"robust"``, ``"robust-v2"``).
        y: ``float32`` ``(N, K)`` targets.
        w: ``float32`` ``(N,)`` sample weights, or ``None``.
        batch_size: faces per batch.
        train: shuffle, drop the incomplete batch and augment.
        seed: seeds the permutations and the albumentations pipelines.
        augment: one of :data:`AUGMENTATIONS`.
        workers: threads that build batches (default: the CPU count, at most 8; 1 when not
            training).

    Returns:
        A ``keras.utils.PyDataset`` of ``(x, y)`` or ``(x, y, w)`` NumPy batches, ``float32``
        faces ``(B, 48, 48, 1)`` in ``[0, 1]``; its ``start_at(epoch)`` moves the permutations
        to a later epoch (``--resume``).

    Raises:
        ValueError: ``augment`` is not one of :data:`AUGMENTATIONS`, or ``x`` has fewer faces
            than one batch when training.
    """
    import threading

    import keras

    if augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {augment!r}")
    if train and len(x) < batch_size:
        raise ValueError(f"{len(x)} faces are fewer than one batch of {batch_size}")
    if workers is None:
        workers = min(8, os.cpu_count() or 1) if train else 1
    robust = augment in ROBUST_AUGMENTATIONS
    if robust:
        from ml.augment import augment_batch, robust_augmentation

    class ArrayBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=False)
            self.epoch = 0
            self.order = self._order()
            self.local = threading.local()

        def start_at(self, epoch: int) -> None:
            """Continue the permutations at ``epoch`` (0-based), as ``--resume`` does."""
            self.epoch = epoch
            self.order = self._order()

        def _order(self) -> np.ndarray:
            if not train:
                return np.arange(len(x))
            return np.random.default_rng([seed, self.epoch]).permutation(len(x))

        def __len__(self) -> int:
            if train:
                return len(x) // batch_size
            return -(-len(x) // batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            xb = x[rows]
            if train and robust:
                if not hasattr(self.local, "pipeline"):
                    self.local.pipeline = robust_augmentation(seed, augment)
                # Seeded per (seed, epoch, batch): the same batches whichever thread builds them.
                self.local.pipeline.set_random_seed(
                    int(np.random.default_rng([seed, self.epoch, index]).integers(2**31))
                )
                xb = augment_batch(self.local.pipeline, xb)
            elif train:
                if not hasattr(self.local, "basic"):  # Keras layers are not shared across threads
                    self.local.basic = augmenter()
                out = self.local.basic(xb, training=True)
                xb = keras.ops.convert_to_numpy(keras.ops.clip(out, 0.0, 1.0))
            xb = np.asarray(xb, np.float32)
            return (xb, y[rows]) if w is None else (xb, y[rows], w[rows])

        def on_epoch_end(self):
            self.epoch += 1
            self.order = self._order()

    return ArrayBatches()


ROBUST_AUGMENTATIONS: tuple[str, ...] = ("robust", "robust-v2")
"""The albumentations pipelines (``ml.augment.VARIANTS``, kept here so that a ``basic`` run
does not import albumentations); a test checks the two lists agree."""

AUGMENTATIONS: tuple[str, ...] = ("basic", *ROBUST_AUGMENTATIONS)
"""Values of ``TrainConfig.augment``."""


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


def load_initial_weights(model, path: str | os.PathLike) -> None:
    """Copy the weights of a trained model file into ``model`` (``--init-from``).

    Args:
        model: a built ``keras.Model``.
        path: a ``.keras`` file saved by :func:`train` for the same architecture and width.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file cannot be loaded, or its weights do not fit ``model`` (another
            architecture or width).
    """
    from ml.modelio import load_keras_model

    source = load_keras_model(path)
    theirs, ours = source.get_weights(), model.get_weights()
    if [w.shape for w in theirs] != [w.shape for w in ours]:
        raise ValueError(
            f"--init-from {path}: its weights do not fit {model.name!r} with these settings "
            f"({len(theirs)} arrays vs {len(ours)}; check --arch and --width)"
        )
    model.set_weights(theirs)


def recompute_batchnorm_statistics(model, images: np.ndarray, batch_size: int = 256) -> int:
    """Recompute every batch-norm layer's moving mean and variance on ``images``.

    Averaged weights need their own activation statistics (Izmailov et al. 2018, section 3.2):
    the moving statistics are reset and set to the running mean, over the batches, of the batch
    statistics, as PyTorch's ``torch.optim.swa_utils.update_bn`` does. The forward passes run in
    training mode (dropout active, as when the statistics were first gathered) but no weight
    other than the statistics changes.

    Args:
        model: a built ``keras.Model`` (nested models are searched too).
        images: ``float32`` ``(N, H, W, 1)`` model inputs in ``[0, 1]``.
        batch_size: images per forward pass.

    Returns:
        The number of batch-norm layers updated (0 leaves the model unchanged).
    """
    import keras

    from ml.modelio import all_layers

    bns = [
        layer for layer in all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not bns or len(images) == 0:
        return 0
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, np.float32))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, np.float32))
    try:
        for i, start in enumerate(range(0, len(images), batch_size)):
            # new = old * i/(i+1) + batch/(i+1): a cumulative mean over the batches.
            for layer in bns:
                layer.momentum = i / (i + 1)
            model(images[start : start + batch_size], training=True)
    finally:
        for layer, m in zip(bns, momenta, strict=True):
            layer.momentum = m
    return len(bns)


def _swa_callback(state_path: Path, start_epoch: int):
    """A callback keeping the running sum of the weights at the end of epochs >= start_epoch.

    The sum (float64) and the list of averaged epochs are written to ``state_path`` (``.npz``)
    after every averaged epoch, so ``--resume`` continues the average.
    """
    import keras

    class StochasticWeightAveraging(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.total: list[np.ndarray] | None = None
            self.epochs: list[int] = []
            if state_path.exists():
                with np.load(state_path) as z:
                    self.epochs = [int(e) for e in z["epochs"]]
                    self.total = [z[f"w{i}"] for i in range(len(z.files) - 1)]

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 < start_epoch or epoch in self.epochs:
                return
            weights = self.model.get_weights()
            if self.total is None:
                self.total = [w.astype(np.float64) for w in weights]
            else:
                for t, w in zip(self.total, weights, strict=True):
                    t += w
            self.epochs.append(epoch)
            tmp = state_path.with_suffix(".tmp.npz")
            np.savez(
                tmp, epochs=np.array(self.epochs), **{f"w{i}": t for i, t in enumerate(self.total)}
            )
            os.replace(tmp, state_path)

        def average(self) -> list[np.ndarray] | None:
            if not self.epochs or self.total is None:
                return None
            return [t / len(self.epochs) for t in self.total]

    return StochasticWeightAveraging()


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
        ValueError: Training or PublicTest is empty, Training has fewer images than one
            batch, ``swa_start_epoch`` is outside ``0..epochs``, or ``init_from`` does not fit
            the architecture.
        FileNotFoundError: ``init_from`` does not exist.
    """
    import keras

    if not 0 <= config.swa_start_epoch <= config.epochs:
        raise ValueError(
            f"swa_start_epoch must be in 0..{config.epochs} (epochs), got {config.swa_start_epoch}"
        )
    if config.augment not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {config.augment!r}")
    if config.ferplus_drop_unusable and not config.ferplus:
        raise ValueError("ferplus_drop_unusable needs a FER+ csv (ferplus)")
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
    if config.ferplus_drop_unusable:
        from ml.datasets import ferplus_unusable

        unusable = ferplus_unusable(config.ferplus)
        keep = ~unusable[tr.rows]
        tr = tr.select(keep)
        print(f"left out {int((~keep).sum())} Training faces FER+ marks not-a-face or unknown")
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
    distilling = config.teacher is not None
    if distilling:
        from ml.distill import pack_targets, teacher_logits

        logits = teacher_logits(
            config.teacher,
            {"Training": x_tr, "PublicTest": x_va},
            out / "teacher_logits.npz",
            data_sha256=data.sha256,
        )
        y_tr = pack_targets(y_tr, logits["Training"])
        y_va = pack_targets(y_va, logits["PublicTest"])
    cw = class_weights(tr.labels, config.class_weight_power)
    w_tr = cw[tr.labels]
    x_train_input = tr.images[..., None] if config.augment in ROBUST_AUGMENTATIONS else x_tr
    train_ds = _dataset(
        x_train_input,
        y_tr,
        w_tr,
        config.batch_size,
        train=True,
        seed=config.seed,
        augment=config.augment,
    )
    val_ds = _dataset(x_va, y_va, None, 256, train=False, seed=config.seed)
    steps_per_epoch = max(1, len(x_tr) // config.batch_size)

    last_path, best_path, log_path = out / "last.keras", out / "best.keras", out / "log.csv"
    initial_epoch = 0
    best_acc = -1.0
    epochs_since_best = 0
    if resume and last_path.exists() and log_path.exists():
        import ml.distill  # noqa: F401 - registers the distillation loss and metric for loading

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
        if hasattr(train_ds, "start_at"):  # array_batches: the resumed epochs' own permutations
            train_ds.start_at(initial_epoch)
    else:
        if config.slim_from:
            model = _slimmed_model(config)
        else:
            model = build_model(config.arch, **config.model_kwargs)
        if config.init_from:
            load_initial_weights(model, config.init_from)
        total = steps_per_epoch * config.epochs
        warmup = steps_per_epoch * config.warmup_epochs
        decay_end, alpha = total, 0.0
        if config.swa_start_epoch:
            # Cosine down to the SWA rate by the first averaged epoch, then constant: CosineDecay
            # holds alpha * peak after decay_steps.
            decay_end = steps_per_epoch * (config.swa_start_epoch - 1)
            alpha = config.swa_learning_rate() / config.lr
        schedule = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.lr * 0.01,
            decay_steps=max(1, decay_end - warmup),
            alpha=alpha,
            warmup_target=config.lr,
            warmup_steps=warmup,
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(
                learning_rate=schedule, weight_decay=config.weight_decay
            ),
            loss=_loss(config),
            metrics=[_accuracy_metric(distilling)],
        )
        for f in (log_path, out / "swa_state.npz", out / "swa.keras"):
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
    swa = _swa_callback(out / "swa_state.npz", config.swa_start_epoch)
    if config.swa_start_epoch:
        callbacks.append(swa)
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
    swa_summary: dict = {}
    averaged = swa.average() if config.swa_start_epoch else None
    if averaged is not None:
        model.set_weights(averaged)
        recompute_batchnorm_statistics(model, x_tr)
        _, swa_acc = model.evaluate(val_ds, verbose=0)
        model.save(out / "swa.keras")
        swa_summary = {
            "swa_epochs": [e + 1 for e in swa.epochs],
            "swa_public_test_accuracy": float(swa_acc),
            "swa_model": str(out / "swa.keras"),
        }
    best_acc_final = float(best["val_accuracy"]) if best else None
    selected = best_path
    if swa_summary and (
        best_acc_final is None or swa_summary["swa_public_test_accuracy"] > best_acc_final
    ):
        selected = out / "swa.keras"
    summary = {
        "arch": config.arch,
        "epochs_run": len(rows),
        "best_epoch": int(best["epoch"]) + 1 if best else None,
        "best_public_test_accuracy": float(best["val_accuracy"]) if best else None,
        "seconds_this_call": round(seconds, 1),
        "best_model": str(best_path),
        "last_model": str(last_path),
        **swa_summary,
        "selected_model": str(selected),
        "data_sha256": data.sha256,
        "input_size": INPUT_SIZE,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    keras.backend.clear_session()
    return summary


def _loss(config: TrainConfig):
    import keras

    if config.teacher is None:
        return keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        )
    from ml.distill import DistillationLoss

    return DistillationLoss(
        alpha=config.distill_weight,
        temperature=config.distill_temperature,
        label_smoothing=config.label_smoothing,
    )


def _accuracy_metric(distilling: bool):
    import keras

    if not distilling:
        return keras.metrics.CategoricalAccuracy(name="accuracy")
    from ml.distill import target_accuracy

    return keras.metrics.MeanMetricWrapper(target_accuracy, name="accuracy")


def _slimmed_model(config: TrainConfig):
    """``--slim-from``: a ``cnn`` of ``--width`` initialised from a wider trained one."""
    import keras

    from ml.modelio import load_keras_model
    from ml.models.cnn import slim_cnn

    if config.arch != "cnn":
        raise ValueError("--slim-from applies to --arch cnn only")
    source = load_keras_model(config.slim_from)
    # The shipped file wraps the CNN in test-time views: slim the CNN inside.
    inner = [layer for layer in source.layers if isinstance(layer, keras.Model)]
    if inner:
        source = inner[0]
    kwargs = dict(config.model_kwargs)
    width = kwargs.pop("width", 0.5)
    return slim_cnn(source, width, **kwargs)


def _hardware() -> str:
    import keras

    gpus = gpu_names()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
        + (f", GPUs: {gpus}" if gpus else ", no GPU")
        + f", Keras back end {keras.backend.backend()}"
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
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="dropout rate of the model (default 0.3; the cnn halves it in stages 1-2)",
    )
    p.add_argument("--weights", default=None, help="resnet50: imagenet (downloads) or none")
    p.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="resnet50: side the 48-px face is resized to (default 96; >= 32)",
    )
    p.add_argument(
        "--init-from",
        default=None,
        help="start from this trained .keras (same --arch/--width), new optimiser and schedule",
    )
    p.add_argument(
        "--swa-start-epoch",
        type=int,
        default=0,
        help="average the weights of epochs >= this one (1-based) into swa.keras; 0 = off",
    )
    p.add_argument(
        "--swa-lr", type=float, default=None, help="constant learning rate while averaging (lr/10)"
    )
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=d.augment,
        help="basic (flip, small rotation/shift/zoom/light), robust (classroom degradations) "
        "or robust-v2 (more dim noisy faces, defocus and far faces)",
    )
    p.add_argument(
        "--ferplus-drop-unusable",
        action="store_true",
        help="with --ferplus: leave out Training faces FER+ votes not-a-face or unknown",
    )
    p.add_argument(
        "--teacher",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="distil from this trained .keras (logits on clean faces); several: an ensemble "
        "teacher (mean logits)",
    )
    p.add_argument("--distill-weight", type=float, default=d.distill_weight, help="alpha")
    p.add_argument("--distill-temperature", type=float, default=d.distill_temperature, help="T")
    p.add_argument(
        "--slim-from",
        default=None,
        help="cnn only: initialise --width channels from this wider trained model (slimming)",
    )
    p.add_argument("--resume", action="store_true", help="continue from <out>/last.keras")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2])
    a = p.parse_args(argv)
    kwargs = {}
    if a.width is not None:
        kwargs["width"] = a.width
    if a.dropout is not None:
        if not 0.0 <= a.dropout < 1.0:
            p.error(f"--dropout must be in [0, 1), got {a.dropout}")
        kwargs["dropout"] = a.dropout
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
        init_from=a.init_from,
        swa_start_epoch=a.swa_start_epoch,
        swa_lr=a.swa_lr,
        augment=a.augment,
        ferplus_drop_unusable=a.ferplus_drop_unusable,
        teacher=a.teacher[0] if a.teacher and len(a.teacher) == 1 else a.teacher,
        distill_weight=a.distill_weight,
        distill_temperature=a.distill_temperature,
        slim_from=a.slim_from,
    )
    return cfg, a.resume


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the process exit status."""
    from ml.datasets import DatasetError

    config, resume = parse_args(argv)
    try:
        summary = train(config, resume=resume)
    except (DatasetError, KeyError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
