"""The browser's copy of a shipped classifier: the same LiteRT model with its batch fixed to 1.

An on-device session runs the expression classifier in the student's browser with LiteRT.js
(``@litertjs/core``), which refuses a model whose input has a dynamic batch
(``shape_signature`` ``[-1, 48, 48, 1]``: "TensorBuffer ranked tensor type Float32[1, 48, 48,
1] does not match expected ranked tensor type Float32[-1, 48, 48, 1]"). The worker needs the
dynamic batch (one call per frame for all its faces), so the browser gets a copy in which
every tensor's leading ``-1`` is ``1``; every weight and operator is kept, so the two give the
same logits (``tests/ml/test_browser_model.py``).

Usage (after ``ml.export`` wrote a shipped model)::

    python -m ml.browser_model ml/shipped/expression_cnn.tflite

writes ``ml/shipped/expression_cnn.batch1.tflite``, which the student page downloads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SUFFIX = ".batch1.tflite"
"""The browser copy of ``NAME.tflite`` is ``NAME.batch1.tflite``, next to it."""


def fix_batch(data: bytes, batch: int = 1) -> bytes:
    """A ``.tflite`` flatbuffer with every dynamic leading dimension set to ``batch``.

    Args:
        data: the model file's bytes.
        batch: the batch size to fix, ``>= 1``.

    Returns:
        The new flatbuffer (file identifier ``TFL3``); ``data`` itself when nothing is dynamic.

    Raises:
        ValueError: ``batch < 1``.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    import numpy as np

    from ml.litert_flatbuffer import rewrite_tflite

    def edit(model) -> bool:
        changed = False
        for graph in model.subgraphs:
            for tensor in graph.tensors:
                signature = tensor.shapeSignature
                if signature is None or len(signature) == 0 or signature[0] != -1:
                    continue
                fixed = np.array(signature, dtype=np.int32)
                fixed[0] = batch
                tensor.shapeSignature = fixed
                if tensor.shape is not None and len(tensor.shape):
                    shape = np.array(tensor.shape, dtype=np.int32)
                    shape[0] = batch
                    tensor.shape = shape
                changed = True
        return changed

    return rewrite_tflite(data, edit)


def browser_copy_path(model: Path) -> Path:
    """``dir/NAME.tflite`` -> ``dir/NAME.batch1.tflite``."""
    return model.with_name(model.stem + SUFFIX)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ml.browser_model",
        description="Write the browser's batch-1 copy of a LiteRT classifier (NAME.batch1.tflite).",
    )
    parser.add_argument("model", type=Path, help="the shipped .tflite")
    args = parser.parse_args(argv)
    if args.model.suffix != ".tflite" or not args.model.is_file():
        parser.error(f"{args.model}: not a .tflite file")
    out = browser_copy_path(args.model)
    out.write_bytes(fix_batch(args.model.read_bytes()))
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
