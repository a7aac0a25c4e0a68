"""Time the classifier as the worker calls it: ``ExpressionClassifier.predict_proba`` on crops.

CLI::

    python -m ml.benchmark [MODEL] [--batch 1 8 32] [--repeats 300] [--threads N]

``MODEL`` defaults to the shipped model. Each timing includes preprocessing (gray conversion,
resize, scaling) of random 96x96 RGB crops, so it is the cost per face the worker pays. The
first lines name the CPU with its vector instruction sets (AVX2, AVX-512, AMX: the same model
runs several times faster with AMX) and the model's multiply-adds per face (from its metadata,
or counted on a ``.keras`` file by :func:`ml.complexity.count_macs`). The figures depend on the
machine and its load; this is a command to read, not a timed test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np


def benchmark(clf, batch: int, repeats: int, crop: int = 96, seed: int = 0) -> dict[str, float]:
    """Time ``clf.predict_proba`` on ``batch`` random ``uint8`` RGB crops.

    Args:
        clf: an :class:`ml.inference.ExpressionClassifier` (or anything with ``predict_proba``).
        batch: faces per call (>= 1).
        repeats: timed calls after 10 warm-up calls.
        crop: side of the square random crops in pixels.
        seed: random seed for the crops.

    Returns:
        ``{"batch", "median_ms_per_call", "median_ms_per_face", "p90_ms_per_face"}``.
    """
    if batch < 1 or repeats < 1:
        raise ValueError("batch and repeats must be >= 1")
    faces = np.random.default_rng(seed).integers(0, 256, (batch, crop, crop, 3), dtype=np.uint8)
    for _ in range(10):
        clf.predict_proba(faces)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        clf.predict_proba(faces)
        times.append((time.perf_counter() - t0) * 1000.0)
    times.sort()
    median = statistics.median(times)
    return {
        "batch": batch,
        "median_ms_per_call": median,
        "median_ms_per_face": median / batch,
        "p90_ms_per_face": times[int(0.9 * (len(times) - 1))] / batch,
    }


def model_macs(clf) -> int | None:
    """Multiply-adds per face of a loaded classifier, views included, or ``None`` if unknown.

    Read from the metadata (``model.macs_per_face``, written by :mod:`ml.export`); without it,
    counted on the ``.keras`` file of the same name (the model itself or its exported twin).
    """
    from pathlib import Path

    macs = ((clf.metadata or {}).get("model") or {}).get("macs_per_face")
    if macs:
        return int(macs)
    keras_file = Path(clf.path).with_suffix(".keras")
    if keras_file.is_file():
        from ml.complexity import count_macs
        from ml.modelio import load_keras_model

        return count_macs(load_keras_model(keras_file))
    return None


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints one line per batch size and returns the exit status."""
    from ml.inference import ExpressionClassifier

    p = argparse.ArgumentParser(prog="python -m ml.benchmark", description=__doc__.split("\n\n")[0])
    p.add_argument("model", nargs="?", default=None, help="model file (default: shipped)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--repeats", type=int, default=300)
    p.add_argument("--threads", type=int, default=None, help="LiteRT threads (default LiteRT's)")
    a = p.parse_args(argv)
    try:
        clf = ExpressionClassifier.load(a.model, num_threads=a.threads)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ml.complexity import cpu_description

    print(f"{clf!r}, threads={a.threads}")
    print(f"CPU: {cpu_description()}")
    macs = model_macs(clf)
    print(f"cost: {macs / 1e6:.1f} M multiply-adds per face" if macs else "cost: unknown MACs")
    for b in a.batch:
        r = benchmark(clf, b, a.repeats)
        print(
            f"batch {b:>3}: {r['median_ms_per_face']:.3f} ms per face (median; p90 "
            f"{r['p90_ms_per_face']:.3f}), {r['median_ms_per_call']:.3f} ms per call"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
