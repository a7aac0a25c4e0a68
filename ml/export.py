"""Export a trained Keras model for serving: ``.keras``, LiteRT ``.tflite`` and a metadata file.

Library entry point :func:`export_model`, CLI :func:`main`::

    python -m ml.export runs/cnn-v1/best.keras --out ml/shipped --name expression_cnn \
        --data ../shared/data/fer2013/fer2013.csv.gz --quantize float16

Writes into ``--out``:

* ``NAME.keras``: the model rebuilt in float32, without optimizer state (TensorFlow/GPU workers);
* ``NAME.tflite``: LiteRT flatbuffer (``float16`` weights by default; ``int8`` full-integer
  quantization calibrated on Training faces; or ``none`` = float32) for CPU workers;
* ``NAME.json``: metadata (labels, input size, preprocessing, input/output description,
  PublicTest and PrivateTest accuracy and macro-F1 measured on the exported ``.tflite``, data
  sha256, the training command and settings read from the run folder, the parity figure).

Parity check: the Keras model and the ``.tflite`` must give the same argmax on at least
``min_parity`` (99.5%) of the PrivateTest faces (all 3,589 of them; at least 1,000 required).
Every file is built in a temporary folder and moved into ``--out`` only when the check passes,
so a failed export never replaces a shipped model. The CLI exits with status 1 on a parity
failure and 2 on bad arguments or data. ``--selection`` exports a candidate that is still being
chosen: its PrivateTest accuracy is neither measured nor printed (the parity check, which needs
no labels, still runs there), so the choice cannot lean on it.

Why one module of about 550 lines: one job, exporting a model, and the steps only it uses
(rebuild in float32, convert and quantize, the parity check, the metrics and the metadata file,
the CLI); they run in one order on one model and are tested together.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ml.datasets import DatasetError, file_sha256, load_fer2013
from ml.labels import EXPRESSIONS, NUM_CLASSES
from ml.metrics import classification_report
from ml.preprocessing import PREPROCESSING, preprocess_faces

QUANTIZATIONS: tuple[str, ...] = ("float16", "dynamic", "int8", "none")
METADATA_VERSION = 1


class ParityError(RuntimeError):
    """The exported ``.tflite`` disagrees with the Keras model on too many faces."""


def convert_to_tflite(
    model, quantize: str = "float16", calibration: np.ndarray | None = None
) -> bytes:
    """Convert a Keras model to a LiteRT flatbuffer.

    Args:
        model: a float32 ``keras.Model`` with input ``(None, S, S, 1)``.
        quantize: ``"float16"`` (weights stored as float16, computed in float32; about half the
            size, accuracy unchanged in practice), ``"dynamic"`` (dynamic-range quantization:
            int8 weights, activations quantized per batch at run time, which XNNPACK runs as
            int8 kernels; no calibration, closer to float32 than ``int8``), ``"int8"``
            (post-training full-integer quantization of weights and activations with calibrated
            ranges, float32 input/output kept), or ``"none"``. Source: TensorFlow's
            "Post-training quantization" guide.
        calibration: ``float32`` ``(M, S, S, 1)`` representative inputs, required for ``int8``
            (TensorFlow's post-training integer quantization guide suggests ~100-500 samples).

    Returns:
        The ``.tflite`` file content.

    Raises:
        ValueError: unknown ``quantize``, or ``int8`` without calibration data.
    """
    import tensorflow as tf

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 quantization needs calibration images")
        calib = np.asarray(calibration, np.float32)

        def representative():
            for i in range(len(calib)):
                yield [calib[i : i + 1]]

        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
    # The Keras exporter prints its SavedModel signature to stdout: keep the CLI output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def _normalise_command(command: str) -> str:
    """``/abs/path/ml/train.py --arch cnn`` (what ``sys.argv`` holds under ``-m``) ->
    ``python -m ml.train --arch cnn``."""
    head, _, rest = command.partition(" ")
    if head.replace("\\", "/").endswith("ml/train.py"):
        return f"python -m ml.train {rest}".strip()
    return command


def _read_json_object(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; ``{}`` when it is unreadable or not an object, ``None`` when
    there is no such file (a run folder's files are optional, and provenance must not stop an
    export)."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def read_training_info(run_dir: str | os.PathLike, _depth: int = 0) -> dict[str, Any]:
    """Summarise a training run folder written by :func:`ml.train.train`.

    Reads ``config.json`` (command and settings), ``log.csv`` (epochs and best PublicTest
    accuracy), ``summary.json`` (the stochastic-weight-averaging result and the selected model)
    and ``timing.csv`` (seconds per epoch) when present. A run started with
    ``--init-from`` also describes the run it started from, under ``initialised_from``.

    Args:
        run_dir: the run folder (the folder of ``best.keras``).

    Returns:
        A JSON-able dict; ``{}`` when the folder has none of these files.
    """
    run = Path(run_dir)
    info: dict[str, Any] = {}
    cfg = _read_json_object(run / "config.json")
    if cfg is not None:
        info["command"] = _normalise_command(str(cfg.get("command", "")))
        info["arch"] = cfg.get("arch")
        info["hardware"] = cfg.get("hardware")
        info["precision_policy"] = cfg.get("precision_policy")
        info["data_sha256"] = cfg.get("data_sha256")
        info["config"] = {
            k: v
            for k, v in cfg.items()
            if k not in {"command", "hardware", "precision_policy", "data_sha256", "verbose"}
        }
    log_path = run / "log.csv"
    if log_path.is_file():
        with open(log_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if rows and "val_accuracy" in rows[0]:
            best = max(rows, key=lambda r: float(r["val_accuracy"]))
            info["epochs_run"] = len(rows)
            info["best_epoch"] = int(best["epoch"]) + 1
            info["best_public_test_accuracy"] = float(best["val_accuracy"])
    summary = _read_json_object(run / "summary.json") or {}
    for key in ("swa_epochs", "swa_public_test_accuracy", "selected_model"):
        if key in summary:
            info[key] = summary[key]
    init_from = (info.get("config") or {}).get("init_from")
    if init_from and _depth < 5:
        # a warm-started run (ml.train --init-from): describe the run it started from too
        # init_from is as typed when training (relative to the directory it ran in)
        info["initialised_from"] = {
            "model": str(init_from),
            **read_training_info(Path(init_from).parent, _depth=_depth + 1),
        }
    timing_path = run / "timing.csv"
    if timing_path.is_file():
        with open(timing_path, newline="") as fh:
            seconds = [float(r["seconds"]) for r in csv.DictReader(fh) if r.get("seconds")]
        if seconds:
            info["training_seconds"] = round(sum(seconds), 1)
            info["seconds_per_epoch"] = round(sum(seconds) / len(seconds), 1)
    return info


def logit_adjustment_offsets(labels: np.ndarray, class_weight_power: float, tau: float = 1.0):
    """Per-class logit offsets that undo class-weighted training (logit adjustment).

    A model trained with per-class sample weights ``w_c`` (:func:`ml.train.class_weights`)
    learns the posterior of a re-weighted class prior, ``p_w(c | x) ~ w_c p(c | x)``. Adding
    ``-tau * log(w_c)`` to its logits gives back the posterior under the training prior, whose
    argmax maximises accuracy (post-hoc logit adjustment, Menon et al. 2021, "Long-tail learning
    via logit adjustment", ICLR; ``tau = 1`` is the exact correction).

    Args:
        labels: ``int`` ``(N,)`` Training class ids in ``0..6``.
        class_weight_power: the run's ``class_weight_power`` (``config.json``).
        tau: strength, ``>= 0`` (0: no change).

    Returns:
        ``float32`` ``(7,)`` offsets to add to the logits.

    Raises:
        ValueError: ``tau`` is negative.
    """
    from ml.train import class_weights

    if tau < 0:
        raise ValueError(f"logit adjustment tau must be >= 0, got {tau}")
    return (-tau * np.log(class_weights(labels, class_weight_power))).astype(np.float32)


def _add_to_logits_bias(model, offsets: np.ndarray) -> None:
    layer = next((lay for lay in model.layers if lay.name == "logits"), None)
    if layer is None or not getattr(layer, "use_bias", False):
        raise ValueError("logit adjustment needs a final Dense layer named 'logits' with a bias")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, bias + offsets.astype(bias.dtype)])


def _file_entry(path: Path) -> dict[str, Any]:
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": file_sha256(path)}


def _latency_ms(clf, size: int, repeats: int = 200) -> float:
    face = np.full((1, size, size), 128, np.uint8)
    clf.predict_proba(face)
    started = time.perf_counter()
    for _ in range(repeats):
        clf.predict_proba(face)
    return (time.perf_counter() - started) / repeats * 1000.0


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("tensorflow", "tensorflow-cpu", "keras", "ai-edge-litert", "numpy"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def export_model(
    model_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str = "expression_cnn",
    data: str | os.PathLike | None = None,
    quantize: str = "float16",
    min_parity: float = 0.995,
    min_parity_samples: int = 1000,
    calibration_samples: int = 500,
    run_dir: str | os.PathLike | None = None,
    safe_mode: bool = True,
    seed: int = 1234,
    progress: bool = False,
    tta_views: Sequence[str] = (),
    logit_adjustment: float = 0.0,
    logit_bias: dict[str, float] | None = None,
    selection: bool = False,
) -> dict[str, Any]:
    """Export a trained model and write its metadata, after a parity check.

    Args:
        model_path: the trained ``.keras`` file (for example ``runs/cnn-v1/best.keras``).
        out_dir: destination folder (created if missing); existing ``NAME.*`` files there are
            replaced only when the export succeeds.
        name: stem of the three output files.
        data: FER2013 csv/csv.gz (``None``: ``$ENGAGEMENT_FER2013_CSV``). PrivateTest is used
            for the parity check and, like PublicTest, for the reported metrics; Training
            only for int8 calibration.
        quantize: ``"float16"``, ``"dynamic"``, ``"int8"`` or ``"none"`` (see
            :func:`convert_to_tflite`).
        min_parity: smallest accepted share of PrivateTest faces with the same argmax in Keras
            and LiteRT, in ``[0, 1]``.
        min_parity_samples: PrivateTest must hold at least this many faces.
        calibration_samples: Training faces drawn (seeded) for int8 calibration.
        run_dir: training run folder to read the command and log from (default: the model's
            folder).
        safe_mode: Keras safe mode when loading ``model_path``.
        seed: seed for drawing calibration faces.
        progress: show tqdm progress bars.
        tta_views: when given, the exported model averages the logits of these views of each
            face (:func:`ml.models.tta.with_tta`, e.g. ``DEFAULT_VIEWS``); parity, metrics and
            latency are then measured on the wrapped model, as the worker runs it.
        logit_adjustment: ``tau`` of :func:`logit_adjustment_offsets`; when positive, the
            offsets (from the Training labels and the run's ``class_weight_power``) are added
            to the bias of the ``logits`` layer, so every file carries the correction.
        logit_bias: ``{label: offset}`` added to those logits too: a label-prior correction
            fitted on PublicTest (``ml.evaluate --fit-logit-bias``); ``None``: none.
        selection: a candidate still being chosen: the metrics hold PublicTest only and the
            parity record no accuracy (Keras/LiteRT argmax agreement on PrivateTest needs no
            labels and is still checked).

    Returns:
        The metadata dict written to ``NAME.json``.

    Raises:
        FileNotFoundError: ``model_path`` does not exist.
        ml.datasets.DatasetError: missing or malformed data file.
        ValueError: fewer than ``min_parity_samples`` PrivateTest faces, bad arguments, or a
            logit adjustment for a model without a ``logits`` layer or a run folder without
            ``class_weight_power``.
        ParityError: agreement below ``min_parity`` (nothing is written to ``out_dir``).
    """
    from ml.complexity import count_macs, cpu_description
    from ml.inference import ExpressionClassifier
    from ml.modelio import load_keras_model, with_float16_weights

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, got {quantize!r}")
    if not 0.0 <= min_parity <= 1.0:
        raise ValueError(f"min_parity must be in [0, 1], got {min_parity}")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"model file not found: {model_path}")
    dataset = load_fer2013(data)
    private, public = dataset["PrivateTest"], dataset["PublicTest"]
    if len(private) < min_parity_samples:
        raise ValueError(
            f"parity check needs at least {min_parity_samples} PrivateTest faces, got {len(private)}"
        )
    model = load_keras_model(model_path, float32=True, safe_mode=safe_mode)
    training = read_training_info(run_dir if run_dir is not None else model_path.parent)
    adjustment = None
    if logit_adjustment:
        power = (training.get("config") or {}).get("class_weight_power")
        if power is None:
            raise ValueError(
                "logit adjustment needs the run's class_weight_power (config.json in --run-dir)"
            )
        offsets = logit_adjustment_offsets(dataset["Training"].labels, power, logit_adjustment)
        _add_to_logits_bias(model, offsets)
        adjustment = {
            "tau": logit_adjustment,
            "class_weight_power": power,
            "offsets": [round(float(o), 6) for o in offsets],
            "source": "Menon et al. 2021, Long-tail learning via logit adjustment",
        }
    bias = None
    if logit_bias:
        unknown = set(logit_bias) - set(EXPRESSIONS)
        if unknown:
            raise ValueError(f"unknown labels in the logit bias: {sorted(unknown)}")
        vector = np.array([logit_bias.get(label, 0.0) for label in EXPRESSIONS], np.float32)
        _add_to_logits_bias(model, vector)
        bias = {
            "offsets": {label: float(logit_bias.get(label, 0.0)) for label in EXPRESSIONS},
            "source": "fitted on PublicTest by ml.evaluate --fit-logit-bias (label-prior "
            "correction, Saerens et al. 2002)",
        }
    if tta_views:
        from ml.models.tta import with_tta

        model = with_tta(model, tta_views)
    in_shape = tuple(model.input_shape)
    out_shape = tuple(model.output_shape)
    if len(in_shape) != 4 or in_shape[1] != in_shape[2] or in_shape[3] != 1:
        raise ValueError(f"expected input (None, S, S, 1), got {in_shape}")
    if out_shape[-1] != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} outputs, got {out_shape}")
    size = int(in_shape[1])
    activation = getattr(getattr(model.layers[-1], "activation", None), "__name__", "")
    output_kind = "probabilities" if activation == "softmax" else "logits"

    calibration = None
    if quantize == "int8":
        train = dataset["Training"]
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(train), size=min(calibration_samples, len(train)), replace=False)
        calibration = preprocess_faces(train.images[np.sort(pick)], size)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-export-", dir=out))
    try:
        keras_file, tflite_file, meta_file = (
            tmp / f"{name}{s}" for s in (".keras", ".tflite", ".json")
        )
        # float16 storage halves the file; loaders rebuild it in float32 (ml.modelio).
        with_float16_weights(model).save(keras_file)
        tflite_file.write_bytes(convert_to_tflite(model, quantize, calibration))
        # Stub metadata so both loaders know the output kind before the real file exists.
        stub = {"labels": list(EXPRESSIONS), "output": {"kind": output_kind}}
        meta_file.write_text(json.dumps(stub))

        ref = ExpressionClassifier.load(keras_file)
        lite = ExpressionClassifier.load(tflite_file)
        reports: dict[str, Any] = {}
        probs_keras_private = _predict(ref, private.images, "Keras PrivateTest", progress)
        probs_lite_private = _predict(lite, private.images, "LiteRT PrivateTest", progress)
        probs_lite_public = _predict(lite, public.images, "LiteRT PublicTest", progress)
        reports["PublicTest"] = classification_report(public.labels, probs_lite_public.argmax(1))
        if not selection:
            reports["PrivateTest"] = classification_report(
                private.labels, probs_lite_private.argmax(1)
            )
        agree = probs_keras_private.argmax(1) == probs_lite_private.argmax(1)
        parity = {
            "split": "PrivateTest",
            "samples": int(agree.size),
            "argmax_agreement": float(agree.mean()),
            "threshold": min_parity,
            "max_abs_probability_diff": float(
                np.abs(probs_keras_private - probs_lite_private).max()
            ),
        }
        if not selection:
            parity["keras_accuracy"] = float(
                np.mean(probs_keras_private.argmax(1) == private.labels)
            )
            parity["tflite_accuracy"] = reports["PrivateTest"]["accuracy"]
        if parity["argmax_agreement"] < min_parity:
            raise ParityError(
                f"Keras and LiteRT ({quantize}) agree on {parity['argmax_agreement']:.2%} of "
                f"{parity['samples']} PrivateTest faces, below the required {min_parity:.2%}; "
                f"nothing was written to {out}"
            )

        if training.get("data_sha256"):
            training["same_data_as_export"] = training["data_sha256"] == dataset.sha256
        metadata: dict[str, Any] = {
            "format_version": METADATA_VERSION,
            "name": name,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "labels": list(EXPRESSIONS),
            "num_classes": NUM_CLASSES,
            "input_size": size,
            "preprocessing": PREPROCESSING,
            "input": {
                "name": model.inputs[0].name,
                "shape": [None, size, size, 1],
                "dtype": "float32",
                "range": [0.0, 1.0],
                "description": "gray faces, NHWC, output of ml.preprocessing.preprocess_faces",
            },
            "output": {
                "shape": [None, NUM_CLASSES],
                "dtype": "float32",
                "kind": output_kind,
                "description": (
                    "class logits in FER2013 order; softmax gives probabilities "
                    "(ml.inference.ExpressionClassifier.predict_proba does it)"
                    if output_kind == "logits"
                    else "class probabilities in FER2013 order"
                ),
            },
            "model": {
                "arch": training.get("arch"),
                "keras_name": model.name,
                "parameters": int(model.count_params()),
                "macs_per_face": count_macs(model),
                "source": str(model_path),
                "test_time_augmentation": (
                    {"views": list(tta_views), "crop_px": 4, "combine": "mean of logits"}
                    if tta_views
                    else None
                ),
                "logit_adjustment": adjustment,
                "logit_bias": bias,
            },
            "files": {
                "keras": _file_entry(keras_file),
                "tflite": {**_file_entry(tflite_file), "quantization": quantize},
            },
            "metrics": {"measured_on": f"{name}.tflite", "selection": selection, **reports},
            "parity": parity,
            "latency_ms_per_face_batch1": {
                "tflite": round(_latency_ms(lite, size), 3),
                "hardware": cpu_description(),
            },
            "data": {
                "file": Path(dataset.path).name,
                "sha256": dataset.sha256,
                "splits": {k: len(v) for k, v in dataset.splits.items()},
                "private_test_used_for": "reporting only (never training or model selection)",
            },
            "training": training,
            "versions": _versions(),
        }
        meta_file.write_text(json.dumps(metadata, indent=2) + "\n")
        for f in (keras_file, tflite_file, meta_file):
            os.replace(f, out / f.name)
        return metadata
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _predict(clf, images: np.ndarray, desc: str, progress: bool, chunk: int = 512) -> np.ndarray:
    from tqdm.auto import tqdm

    parts = []
    for i in tqdm(range(0, len(images), chunk), desc=desc, unit="batch", disable=not progress):
        parts.append(clf.predict_proba(images[i : i + chunk]))
    if not parts:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return np.concatenate(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the CLI arguments (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m ml.export", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="trained .keras file, e.g. runs/cnn-v1/best.keras")
    p.add_argument("--out", default="ml/shipped", help="output folder (default ml/shipped)")
    p.add_argument("--name", default="expression_cnn", help="file stem (default expression_cnn)")
    p.add_argument(
        "--data", default=None, help="FER2013 csv/csv.gz (default $ENGAGEMENT_FER2013_CSV)"
    )
    p.add_argument("--quantize", choices=QUANTIZATIONS, default="float16")
    p.add_argument("--min-parity", type=float, default=0.995, help="required argmax agreement")
    p.add_argument("--calibration-samples", type=int, default=500, help="int8: Training faces")
    p.add_argument("--run-dir", default=None, help="training run folder (default: the model's)")
    p.add_argument(
        "--tta-views",
        default="",
        help=(
            "comma-separated views averaged inside the exported model, e.g. "
            "full,top_right_flip,bottom_left_flip (default: none)"
        ),
    )
    p.add_argument(
        "--logit-adjustment",
        type=float,
        default=0.0,
        metavar="TAU",
        help="subtract TAU*log(class weight) from the logits to undo class-weighted training "
        "(1 = exact; default 0 = off)",
    )
    p.add_argument(
        "--logit-bias",
        default="",
        metavar="LABEL=OFFSET,...",
        help="add these offsets to the logits (from ml.evaluate --fit-logit-bias)",
    )
    p.add_argument(
        "--selection",
        action="store_true",
        help="a candidate still being chosen: measure and print PublicTest only, not PrivateTest",
    )
    p.add_argument(
        "--unsafe-deserialization",
        action="store_true",
        help="load models with Lambda layers (only for files you trust)",
    )
    return p.parse_args(argv)


def _parse_bias(text: str) -> dict[str, float] | None:
    """``"angry=0.3,neutral=-0.3"`` -> ``{"angry": 0.3, "neutral": -0.3}``; ``""`` -> ``None``.

    Raises:
        ValueError: an item is not ``LABEL=NUMBER``.
    """
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        label, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--logit-bias items are LABEL=OFFSET, got {item!r}")
        out[label.strip()] = float(value)
    return out or None


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 parity failure, 2 bad input)."""
    a = parse_args(argv)
    try:
        meta = export_model(
            a.model,
            a.out,
            name=a.name,
            data=a.data,
            quantize=a.quantize,
            min_parity=a.min_parity,
            calibration_samples=a.calibration_samples,
            run_dir=a.run_dir,
            safe_mode=not a.unsafe_deserialization,
            progress=True,
            tta_views=[v.strip() for v in a.tta_views.split(",") if v.strip()],
            logit_adjustment=a.logit_adjustment,
            logit_bias=_parse_bias(a.logit_bias),
            selection=a.selection,
        )
    except ParityError as exc:
        print(f"parity check failed: {exc}", file=sys.stderr)
        return 1
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    par = meta["parity"]
    print(f"wrote {a.out}/{a.name}.keras, .tflite ({a.quantize}), .json")
    print(
        f"parity: {par['argmax_agreement']:.2%} argmax agreement on {par['samples']} PrivateTest "
        f"faces (max |dp| {par['max_abs_probability_diff']:.4f})"
    )
    for split in ("PublicTest", "PrivateTest"):
        if split not in meta["metrics"]:
            print(f"{split:<12} not measured (--selection)")
            continue
        m = meta["metrics"][split]
        print(
            f"{split:<12} accuracy {m['accuracy']:.4f}  macro-F1 {m['macro_f1']:.4f}  (n={m['n']}, tflite)"
        )
    print(
        f"latency: {meta['latency_ms_per_face_batch1']['tflite']:.2f} ms per face at batch 1 (LiteRT)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
