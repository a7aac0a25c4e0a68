"""The typed result of one analysed frame, as the worker hands it to the web side.

The worker builds it from ``inference_worker.pipeline.FrameAnalysis.to_dict()``; the web side
(``classroom.services.record_frame_result``) reads it only through
:meth:`FrameResultPayload.from_dict`, which validates every field and raises one error type,
:class:`ContractError`. Only numbers travel: no pixel, crop or embedding is part of it.

The dict form (JSON-able, plain Python types)::

    {"width": int >= 0, "height": int >= 0,            # frame size, pixels
     "faces": [{
        "box": [x, y, w, h],            # normalised to the frame, 0..1 (clipped on reading)
        "score": float 0..1 | None,     # detector confidence (clamped on reading)
        "presence": float 0..1 | None,  # second-stage face check's face presence (None: no check)
        "probabilities": [7 floats] | None,   # FER2013 order (contracts.EXPRESSIONS)
        "label": str | None,            # one of EXPRESSIONS
        "confidence": float 0..1 | None,
        "yaw_deg": float in [-180, 180] | None,
        "pitch_deg": float in [-90, 90] | None,
        "attentive": bool | None,
        "assessed": bool | None,        # passed the face-quality gate (None: not checked)
        "quality_issue": str | None}, ...],   # why not, one of QUALITY_ISSUES
     "timings_ms": {stage: float ms, ...}}

``probabilities``, ``label`` and ``confidence`` are all given or all ``None`` (a face analysed
without the classifier: attention-only sessions). A face with ``assessed`` false has a
``quality_issue`` and no expression; one with ``assessed`` true or ``None`` has no
``quality_issue``. Missing face keys read as ``None``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

from contracts.labels import EXPRESSIONS
from contracts.names import QUALITY_ISSUES

#: Largest |yaw| and |pitch| accepted, degrees.
MAX_YAW_DEG = 180.0
MAX_PITCH_DEG = 90.0


class ContractError(ValueError):
    """A payload does not follow its contract (a bug in the sender); the message says where."""


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ContractError(f"{what} must be a finite number, got {type(value).__name__}")
    return float(value)


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))


def _angle(value: Any, what: str, limit: float) -> float | None:
    if value is None:
        return None
    angle = _finite(value, what)
    if not -limit <= angle <= limit:
        raise ContractError(f"{what} must be in [-{limit:g}, {limit:g}] degrees, got {angle:g}")
    return angle


@dataclass(frozen=True, slots=True)
class FacePayload:
    """One face of a :class:`FrameResultPayload`, validated.

    Attributes:
        box: ``(x, y, w, h)`` normalised to the frame and clipped to ``[0, 1]`` (detector
            boxes may reach past the frame's edges: the visible part is kept); ``w, h >= 0``.
        score: detector confidence clamped to ``[0, 1]``, or ``None``.
        presence: the second-stage face check's face-presence score clamped to ``[0, 1]``
            (``inference_worker.facecheck``), or ``None`` when no check ran; kept so that a
            false box can be explained.
        probabilities: 7 finite floats in :data:`~contracts.labels.EXPRESSIONS` order, or
            ``None`` when no expression was computed.
        label: one of ``EXPRESSIONS``, or ``None`` (with ``probabilities``).
        confidence: clamped to ``[0, 1]``, or ``None`` (with ``probabilities``).
        yaw_deg: head yaw in ``[-180, 180]`` degrees, or ``None``.
        pitch_deg: head pitch in ``[-90, 90]`` degrees, or ``None``.
        attentive: facing the screen, or ``None`` without a head pose.
        assessed: passed the face-quality gate; ``False`` means no expression was computed
            (``quality_issue`` says why); ``None`` when the gate was not run.
        quality_issue: one of :data:`~contracts.names.QUALITY_ISSUES` when ``assessed`` is
            false, else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float | None = None
    presence: float | None = None
    probabilities: tuple[float, ...] | None = None
    label: str | None = None
    confidence: float | None = None
    yaw_deg: float | None = None
    pitch_deg: float | None = None
    attentive: bool | None = None
    assessed: bool | None = None
    quality_issue: str | None = None

    @property
    def has_expression(self) -> bool:
        """Whether an expression was computed for this face."""
        return self.label is not None

    @classmethod
    def from_dict(cls, face: Any, *, with_expression: bool = True) -> FacePayload:
        """Validate one face dict (see the module docstring).

        Args:
            face: the dict.
            with_expression: ``False`` drops the expression fields without reading them (an
                attention-only session stores none, whatever the worker sent).

        Raises:
            ContractError: the dict does not follow the schema.
        """
        if not isinstance(face, dict):
            raise ContractError("each face must be a dict")
        box = face.get("box")
        if not isinstance(box, list | tuple) or len(box) != 4:
            raise ContractError("face box must be [x, y, w, h]")
        x, y, w, h = (_finite(v, "box value") for v in box)
        x0, y0 = _unit(x), _unit(y)
        x1, y1 = _unit(x + max(w, 0.0)), _unit(y + max(h, 0.0))
        score = face.get("score")
        presence = face.get("presence")
        attentive = face.get("attentive")
        if attentive is not None and not isinstance(attentive, bool):
            raise ContractError("face attentive must be true, false or null")
        assessed = face.get("assessed")
        if assessed is not None and not isinstance(assessed, bool):
            raise ContractError("face assessed must be true, false or null")
        issue = face.get("quality_issue")
        if assessed is False and issue not in QUALITY_ISSUES:
            raise ContractError(f"an unassessed face needs a quality_issue in {QUALITY_ISSUES}")
        if assessed is not False and issue is not None:
            raise ContractError("quality_issue is only for faces with assessed false")
        label, confidence, probabilities = (
            _expression(face) if with_expression else (None, None, None)
        )
        if assessed is False and label is not None:
            raise ContractError("an unassessed face carries no expression")
        return cls(
            box=(x0, y0, x1 - x0, y1 - y0),
            score=None if score is None else _unit(_finite(score, "score")),
            presence=None if presence is None else _unit(_finite(presence, "presence")),
            probabilities=probabilities,
            label=label,
            confidence=confidence,
            yaw_deg=_angle(face.get("yaw_deg"), "yaw_deg", MAX_YAW_DEG),
            pitch_deg=_angle(face.get("pitch_deg"), "pitch_deg", MAX_PITCH_DEG),
            attentive=attentive,
            assessed=assessed,
            quality_issue=issue,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict form (see the module docstring)."""
        return {
            "box": list(self.box),
            "score": self.score,
            "presence": self.presence,
            "probabilities": None if self.probabilities is None else list(self.probabilities),
            "label": self.label,
            "confidence": self.confidence,
            "yaw_deg": self.yaw_deg,
            "pitch_deg": self.pitch_deg,
            "attentive": self.attentive,
            "assessed": self.assessed,
            "quality_issue": self.quality_issue,
        }


def _expression(face: dict) -> tuple[str | None, float | None, tuple[float, ...] | None]:
    probabilities = face.get("probabilities")
    label = face.get("label")
    confidence = face.get("confidence")
    if probabilities is None and label is None and confidence is None:
        return None, None, None
    if not isinstance(probabilities, list | tuple) or len(probabilities) != len(EXPRESSIONS):
        raise ContractError(f"face probabilities must be {len(EXPRESSIONS)} numbers")
    if label not in EXPRESSIONS:
        raise ContractError(f"unknown expression label {label!r}")
    return (
        label,
        _unit(_finite(confidence, "confidence")),
        tuple(_finite(p, "probability") for p in probabilities),
    )


@dataclass(frozen=True, slots=True)
class FrameResultPayload:
    """The validated result of one analysed frame.

    Attributes:
        width: frame width, pixels, ``>= 0``.
        height: frame height, pixels, ``>= 0``.
        faces: the faces, in the order the worker sent them.
        timings_ms: stage name -> wall time in ms, rounded to 3 decimals.
    """

    width: int
    height: int
    faces: tuple[FacePayload, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, *, with_expressions: bool = True) -> FrameResultPayload:
        """Validate a result dict (see the module docstring).

        Args:
            data: the dict, e.g. ``FrameAnalysis.to_dict()``.
            with_expressions: ``False`` for an attention-only session: every face's expression
                fields are dropped unread.

        Returns:
            The payload.

        Raises:
            ContractError: ``data`` does not follow the schema; the message names the field.
        """
        if not isinstance(data, dict):
            raise ContractError("result must be a dict")
        width = int(_finite(data.get("width"), "width"))
        height = int(_finite(data.get("height"), "height"))
        if width < 0 or height < 0:
            raise ContractError("width and height must be >= 0")
        faces = data.get("faces", [])
        if not isinstance(faces, list):
            raise ContractError("result['faces'] must be a list")
        timings = data.get("timings_ms") or {}
        if not isinstance(timings, dict):
            raise ContractError("result['timings_ms'] must be a dict")
        return cls(
            width=width,
            height=height,
            faces=tuple(
                FacePayload.from_dict(face, with_expression=with_expressions) for face in faces
            ),
            timings_ms={str(k): round(_finite(v, "timing"), 3) for k, v in timings.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-able dict form; ``from_dict(p.to_dict()) == p`` for a valid payload."""
        return {
            "width": self.width,
            "height": self.height,
            "faces": [face.to_dict() for face in self.faces],
            "timings_ms": dict(self.timings_ms),
        }
