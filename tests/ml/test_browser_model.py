"""The browser's batch-1 copy of the shipped classifier (``ml.browser_model``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml.browser_model import browser_copy_path, fix_batch, main

SHIPPED = Path(__file__).resolve().parents[2] / "ml" / "shipped" / "expression_cnn.tflite"


def _interpreter(content: bytes):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    return interpreter


def _logits(interpreter, x: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def test_the_committed_copy_is_the_shipped_model_with_batch_one():
    committed = browser_copy_path(SHIPPED)
    assert committed.name == "expression_cnn.batch1.tflite"
    data = SHIPPED.read_bytes()
    assert committed.read_bytes() == fix_batch(data), "run: python -m ml.browser_model " + str(
        SHIPPED.relative_to(SHIPPED.parents[2])
    )
    dynamic, fixed = _interpreter(data), _interpreter(committed.read_bytes())
    assert list(dynamic.get_input_details()[0]["shape_signature"]) == [-1, 48, 48, 1]
    assert list(fixed.get_input_details()[0]["shape_signature"]) == [1, 48, 48, 1]
    assert list(fixed.get_output_details()[0]["shape_signature"]) == [1, 7]
    faces = np.random.default_rng(0).random((4, 1, 48, 48, 1), dtype=np.float32)
    for x in faces:  # every weight kept: the same logits, bit for bit
        np.testing.assert_array_equal(_logits(dynamic, x), _logits(fixed, x))


def test_a_model_without_dynamic_dimensions_is_returned_as_it_is():
    fixed = browser_copy_path(SHIPPED).read_bytes()
    assert fix_batch(fixed) is fixed
    with pytest.raises(ValueError, match="batch must be >= 1"):
        fix_batch(fixed, batch=0)


def test_the_command_writes_the_copy_next_to_the_model(tmp_path, capsys):
    model = tmp_path / "m.tflite"
    model.write_bytes(SHIPPED.read_bytes())
    assert main([str(model)]) == 0
    assert (tmp_path / "m.batch1.tflite").read_bytes() == fix_batch(SHIPPED.read_bytes())
    assert "m.batch1.tflite" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([str(tmp_path / "missing.tflite")])
