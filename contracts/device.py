"""The numbers message a student's browser sends in an on-device session.

In an on-device session (:class:`contracts.names.AnalysisSite` ``on-device``) the browser runs
the face pipeline itself and sends, instead of a picture, one JSON text message per frame on
``/ws/stream/``::

    {"type": "analysis",
     "seq": int 0..2**32-1,                # the client's frame counter
     "captured_at": float,                 # capture time, ms since the Unix epoch (client clock)
     "width": int 1..8192, "height": int 1..8192,   # the analysed frame, pixels
     "faces": [{                           # at most max_faces
        "box": [x, y, w, h],               # normalised to the frame: 0 <= x, y; w, h > 0;
                                           # x + w <= 1, y + h <= 1 (1e-3 tolerance)
        "score": float 0..1,               # detector confidence
        "probabilities": [7 floats 0..1] | null,  # FER2013 order, summing to 1 (+-0.01)
        "yaw_deg": float -90..90 | null, "pitch_deg": float -90..90 | null,  # both or neither
        "quality_issue": null | one of QUALITY_ISSUES}, ...],
     "timings_ms": {stage: float 0..60000, ...}}   # at most 8 stages, optional

Every key is required except ``timings_ms``, and no other key is accepted. A face has
``probabilities`` or a ``quality_issue``, never both; in an attention-only session neither
(``probabilities`` null and no issue, or an issue from the pose and size checks).

The server does not take the client's word for what it can derive: :func:`parse_device_analysis`
turns the message into the worker's result dict (:class:`contracts.results.FrameResultPayload`)
with the label and confidence taken from the probabilities (argmax, max), ``attentive`` from
the pose (:func:`contracts.pipeline.is_attentive`) and ``assessed`` from the issue. A client can
still send any numbers that pass these checks: how much one client can move the class figures is
bounded by the rate limit (one message per frame interval), one socket per participant and
``max_faces``, and on-device sessions are flagged as such in the report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from contracts.labels import EXPRESSIONS
from contracts.names import QUALITY_ISSUES
from contracts.pipeline import is_attentive
from contracts.results import ContractError, _finite

MESSAGE_TYPE = "analysis"
"""The ``type`` of the numbers message."""

MAX_SIDE_PX = 8192
"""Largest frame width or height a message may state, pixels."""

PROBABILITY_SUM_TOLERANCE = 0.01
"""How far the 7 probabilities may sum from 1 (a client rounding each to 4 decimals is off by at
most 0.00035)."""

BOX_TOLERANCE = 1e-3
"""How far past the frame a normalised box may reach (float rounding in the client)."""

MAX_TIMINGS = 8
MAX_TIMING_MS = 60_000.0

_MESSAGE_KEYS = frozenset({"type", "seq", "captured_at", "width", "height", "faces", "timings_ms"})
_REQUIRED_KEYS = _MESSAGE_KEYS - {"timings_ms"}
_FACE_KEYS = frozenset({"box", "score", "probabilities", "yaw_deg", "pitch_deg", "quality_issue"})


@dataclass(frozen=True, slots=True)
class DeviceAnalysis:
    """A validated numbers message.

    Attributes:
        seq: the client's frame counter, ``0 <= seq < 2**32``.
        captured_at_ms: capture time, ms since the Unix epoch (client clock), finite.
        result: the worker's result dict for ``classroom.services.record_frame_result``
            (:class:`contracts.results.FrameResultPayload` schema; ``presence`` ``None``).
    """

    seq: int
    captured_at_ms: float
    result: dict[str, Any]


def _number(value: Any, what: str, low: float, high: float) -> float:
    value = _finite(value, what)
    if not low <= value <= high:
        raise ContractError(f"{what} must be in [{low:g}, {high:g}], got {value!r}")
    return value


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContractError(f"{what} must be a whole number, got {type(value).__name__}")
    if not low <= value <= high:
        raise ContractError(f"{what} must be in [{low}, {high}], got {value}")
    return value


def _keys(data: dict, allowed: frozenset[str], required: frozenset[str], what: str) -> None:
    unknown = set(data) - allowed
    if unknown:
        raise ContractError(f"{what} has unknown keys: {', '.join(sorted(map(str, unknown)))}")
    missing = required - set(data)
    if missing:
        raise ContractError(f"{what} lacks keys: {', '.join(sorted(missing))}")


def _face(face: Any, index: int, *, with_expression: bool) -> dict[str, Any]:
    what = f"faces[{index}]"
    if not isinstance(face, dict):
        raise ContractError(f"{what} must be an object")
    _keys(face, _FACE_KEYS, _FACE_KEYS, what)
    box = face["box"]
    if not isinstance(box, list) or len(box) != 4:
        raise ContractError(f"{what}.box must be [x, y, w, h]")
    x, y = (_number(v, f"{what}.box", 0.0, 1.0) for v in box[:2])
    w, h = (_number(v, f"{what}.box size", 0.0, 1.0) for v in box[2:])
    if w <= 0.0 or h <= 0.0:
        raise ContractError(f"{what}.box must have w, h > 0")
    if x + w > 1.0 + BOX_TOLERANCE or y + h > 1.0 + BOX_TOLERANCE:
        raise ContractError(f"{what}.box must lie inside the frame")
    score = _number(face["score"], f"{what}.score", 0.0, 1.0)
    yaw, pitch = face["yaw_deg"], face["pitch_deg"]
    if (yaw is None) != (pitch is None):
        raise ContractError(f"{what}: yaw_deg and pitch_deg come together or not at all")
    if yaw is not None:
        yaw = _number(yaw, f"{what}.yaw_deg", -90.0, 90.0)
        pitch = _number(pitch, f"{what}.pitch_deg", -90.0, 90.0)
    issue = face["quality_issue"]
    if issue is not None and issue not in QUALITY_ISSUES:
        raise ContractError(f"{what}.quality_issue must be null or one of {QUALITY_ISSUES}")
    probabilities = face["probabilities"]
    label = confidence = None
    if probabilities is not None:
        if issue is not None:
            raise ContractError(f"{what}: a face with a quality_issue carries no probabilities")
        if not isinstance(probabilities, list) or len(probabilities) != len(EXPRESSIONS):
            raise ContractError(f"{what}.probabilities must be {len(EXPRESSIONS)} numbers")
        probabilities = [_number(p, f"{what}.probabilities", 0.0, 1.0) for p in probabilities]
        total = math.fsum(probabilities)
        if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            raise ContractError(f"{what}.probabilities must sum to 1, got {total:.4f}")
        best = max(range(len(probabilities)), key=probabilities.__getitem__)
        label, confidence = EXPRESSIONS[best], probabilities[best]
    elif with_expression and issue is None:
        raise ContractError(f"{what}: an assessed face needs its probabilities")
    if not with_expression:
        probabilities = label = confidence = None
    return {
        "box": [x, y, w, h],
        "score": score,
        "presence": None,
        "probabilities": probabilities,
        "label": label,
        "confidence": confidence,
        "yaw_deg": yaw,
        "pitch_deg": pitch,
        "attentive": None if yaw is None else is_attentive(yaw, pitch),
        "assessed": issue is None,
        "quality_issue": issue,
    }


def parse_device_analysis(
    text: str | bytes, *, max_faces: int, max_bytes: int, with_expressions: bool = True
) -> DeviceAnalysis:
    """Validate one numbers message (module docstring) and build the worker's result dict.

    Args:
        text: the WebSocket text message (UTF-8 JSON).
        max_faces: most faces one message may carry, ``>= 0``.
        max_bytes: longest message, bytes of UTF-8; checked before parsing.
        with_expressions: ``False`` for an attention-only session: probabilities are not
            required, and any that are sent are dropped unstored.

    Returns:
        The :class:`DeviceAnalysis`; its faces keep the message's order.

    Raises:
        ContractError: too long, not JSON, not the schema (the message names the field), more
            than ``max_faces`` faces, or probabilities that do not sum to 1.
    """
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > max_bytes:
        raise ContractError(f"message is {size} bytes; at most {max_bytes}")
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ContractError(f"message is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ContractError("message must be a JSON object")
    _keys(data, _MESSAGE_KEYS, _REQUIRED_KEYS, "message")
    if data["type"] != MESSAGE_TYPE:
        raise ContractError(f"message type must be {MESSAGE_TYPE!r}")
    seq = _integer(data["seq"], "seq", 0, 2**32 - 1)
    captured_at = _number(data["captured_at"], "captured_at", 0.0, 1e15)
    width = _integer(data["width"], "width", 1, MAX_SIDE_PX)
    height = _integer(data["height"], "height", 1, MAX_SIDE_PX)
    faces = data["faces"]
    if not isinstance(faces, list):
        raise ContractError("faces must be a list")
    if len(faces) > max_faces:
        raise ContractError(f"{len(faces)} faces in one message; at most {max_faces}")
    timings = data.get("timings_ms", {})
    if not isinstance(timings, dict) or len(timings) > MAX_TIMINGS:
        raise ContractError(f"timings_ms must be an object of at most {MAX_TIMINGS} stages")
    clean_timings = {}
    for stage, ms in timings.items():
        if not stage.isidentifier() or len(stage) > 32:
            raise ContractError("timings_ms stage names must be identifiers of <= 32 characters")
        clean_timings[stage] = round(_number(ms, f"timings_ms.{stage}", 0.0, MAX_TIMING_MS), 3)
    return DeviceAnalysis(
        seq=seq,
        captured_at_ms=captured_at,
        result={
            "width": width,
            "height": height,
            "faces": [
                _face(face, i, with_expression=with_expressions) for i, face in enumerate(faces)
            ],
            "timings_ms": clean_timings,
        },
    )


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")
