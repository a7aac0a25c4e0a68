"""Edit a LiteRT (``.tflite``) flatbuffer in memory: unpack, change, repack.

Two callers change a model file without retraining it: :func:`ml.browser_model.fix_batch` (the
browser's batch-1 copy of the classifier) and
:func:`inference_worker.blazeface.redimension_model` (BlazeFace's up-sampling sizes for another
input size). Both go through :func:`rewrite_tflite`, which holds the part they share: the
object API of ``ai_edge_litert.schema_py_generated`` (the generated TFLite schema,
``tensorflow/compiler/mlir/lite/schema/schema.fbs``) and the repacking with the ``TFL3`` file
identifier LiteRT checks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def rewrite_tflite(data: bytes, edit: Callable[[Any], bool]) -> bytes:
    """Apply ``edit`` to the unpacked model and repack it.

    Args:
        data: the ``.tflite`` flatbuffer's bytes.
        edit: called once with the mutable ``schema_py_generated.ModelT``; changes it in place
            and returns whether it changed anything.

    Returns:
        The repacked flatbuffer (file identifier ``TFL3``), or ``data`` itself when ``edit``
        returned ``False``.

    Raises:
        Whatever ``edit`` raises; a buffer that is not a flatbuffer model fails in the
        ``flatbuffers`` unpacking.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    if not edit(model):
        return data
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


__all__ = ["rewrite_tflite"]
