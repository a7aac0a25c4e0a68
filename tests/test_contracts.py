"""The contracts package: the typed result payload, the frame header, and that both sides use it."""

from __future__ import annotations

import math
import struct
import subprocess
import sys

import pytest

import contracts
from contracts import ContractError, FrameResultPayload


def _face(**overrides) -> dict:
    face = {
        "box": [0.1, 0.2, 0.3, 0.4],
        "score": 0.9,
        "probabilities": [0.1, 0.0, 0.0, 0.7, 0.1, 0.0, 0.1],
        "label": "happy",
        "confidence": 0.7,
        "yaw_deg": 10.0,
        "pitch_deg": -5.0,
        "attentive": True,
    }
    return face | overrides


def _result(*faces, **overrides) -> dict:
    return {"width": 640, "height": 480, "faces": list(faces), "timings_ms": {"total": 5.0}} | (
        overrides
    )


def test_a_valid_result_round_trips():
    payload = FrameResultPayload.from_dict(
        _result(_face(), _face(label=None, probabilities=None, confidence=None))
    )
    assert payload.width == 640 and payload.height == 480
    first, second = payload.faces
    assert first.label == "happy" and first.has_expression
    assert first.probabilities == pytest.approx((0.1, 0.0, 0.0, 0.7, 0.1, 0.0, 0.1))
    assert not second.has_expression and second.probabilities is None
    assert FrameResultPayload.from_dict(payload.to_dict()) == payload


def test_boxes_are_clipped_to_the_frame_and_scores_clamped():
    (face,) = FrameResultPayload.from_dict(
        _result(_face(box=[-0.1, 0.9, 0.3, 0.3], score=1.5, confidence=2.0))
    ).faces
    assert face.box == pytest.approx((0.0, 0.9, 0.2, 0.1))
    assert face.score == 1.0 and face.confidence == 1.0


def test_timings_are_rounded_and_missing_face_keys_read_as_none():
    payload = FrameResultPayload.from_dict(
        {
            "width": 1,
            "height": 1,
            "faces": [{"box": [0, 0, 1, 1]}],
            "timings_ms": {"total": 1.23456},
        }
    )
    assert payload.timings_ms == {"total": 1.235}
    (face,) = payload.faces
    assert (face.score, face.label, face.yaw_deg, face.attentive) == (None, None, None, None)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ([], "result must be a dict"),
        (_result(width=math.nan), "width must be a finite number"),
        (_result(height=-1), "must be >= 0"),
        (_result(width=True), "width must be a finite number"),
        ({"width": 1, "height": 1, "faces": {}}, "must be a list"),
        (_result(timings_ms=[1.0]), "timings_ms'] must be a dict"),
        (_result(timings_ms={"total": "fast"}), "timing must be a finite number"),
        (_result("face"), "each face must be a dict"),
        (_result(_face(box=[0, 0, 1])), "box must be"),
        (_result(_face(box=[0, 0, math.inf, 1])), "box value"),
        (_result(_face(label="bored")), "unknown expression label"),
        (_result(_face(probabilities=[1.0] * 6)), "7 numbers"),
        (_result(_face(confidence=None)), "confidence must be a finite number"),
        (_result(_face(yaw_deg=181.0)), "yaw_deg must be in"),
        (_result(_face(pitch_deg=-91.0)), "pitch_deg must be in"),
        (_result(_face(attentive="yes")), "attentive must be"),
        (_result(_face(assessed="no")), "assessed must be"),
        (_result(_face(assessed=False)), "needs a quality_issue"),
        (_result(_face(assessed=False, quality_issue="dark")), "needs a quality_issue"),
        (_result(_face(assessed=True, quality_issue="blurred")), "only for faces with assessed"),
        (_result(_face(assessed=False, quality_issue="blurred")), "carries no expression"),
    ],
)
def test_a_malformed_result_raises_one_error_type_naming_the_field(result, message):
    with pytest.raises(ContractError, match=message):
        FrameResultPayload.from_dict(result)


def test_without_expressions_the_expression_fields_are_dropped_unread():
    payload = FrameResultPayload.from_dict(
        _result(_face(label="bored", probabilities="junk")), with_expressions=False
    )
    (face,) = payload.faces
    assert (face.label, face.probabilities, face.confidence) == (None, None, None)
    assert face.yaw_deg == 10.0 and face.attentive is True


def test_an_unassessed_face_round_trips_with_its_issue_and_no_expression():
    unread = _face(
        assessed=False, quality_issue="too_small", label=None, probabilities=None, confidence=None
    )
    payload = FrameResultPayload.from_dict(_result(_face(assessed=True), unread))
    read, small = payload.faces
    assert (read.assessed, read.quality_issue, read.has_expression) == (True, None, True)
    assert (small.assessed, small.quality_issue, small.has_expression) == (
        False,
        "too_small",
        False,
    )
    assert small.attentive is True and small.yaw_deg == 10.0  # pose and attention are kept
    assert FrameResultPayload.from_dict(payload.to_dict()) == payload
    assert contracts.QUALITY_ISSUES == ("too_small", "turned_away", "too_dark", "blurred")
    assert list(contracts.QUALITY_ISSUE_LABELS) == list(contracts.QUALITY_ISSUES)


def test_contract_error_is_a_value_error():
    assert issubclass(ContractError, ValueError)


def test_frame_header_round_trip_and_bounds():
    message = contracts.encode_frame(7, 1.7e12, b"\xff\xd8img")
    assert len(contracts.FRAME_HEADER.pack(0, 0.0)) == contracts.FRAME_HEADER_SIZE == 12
    header, image = contracts.parse_frame_header(message)
    assert (header.seq, header.captured_at_ms, image) == (7, 1.7e12, b"\xff\xd8img")
    assert contracts.peek_seq(message) == 7
    assert contracts.peek_seq(message[:11]) is None
    assert contracts.parse_frame_header(message[:12]) is None  # no image bytes
    assert contracts.parse_frame_header(contracts.encode_frame(1, math.nan, b"x")) is None
    with pytest.raises(struct.error):
        contracts.encode_frame(2**32, 0.0, b"")


def test_the_web_side_choices_are_the_contract_values():
    from classroom.choices import EXPRESSION_CHOICES, AnalysisMode, StreamSource

    assert [value for value, _ in EXPRESSION_CHOICES] == list(contracts.EXPRESSIONS)
    assert set(StreamSource.values) == {s.value for s in contracts.StreamSource}
    assert set(AnalysisMode.values) == {m.value for m in contracts.AnalysisMode}


def test_the_worker_output_is_a_valid_payload():
    """What the pipeline produces is exactly what the web side accepts."""
    import numpy as np

    from inference_worker.pipeline import Detection, analyze_frame
    from tests.inference_worker.worker_fakes import FakeClassifier, FakeDetector

    rgb = np.zeros((120, 160, 3), np.uint8)
    detector = FakeDetector([Detection(box=(40.0, 20.0, 50.0, 60.0), score=0.9)])
    produced = analyze_frame(rgb, detector, FakeClassifier()).to_dict()
    payload = FrameResultPayload.from_dict(produced)
    assert payload.to_dict()["faces"] == produced["faces"]


def test_importing_contracts_loads_nothing_of_the_project_or_django():
    code = "import sys, contracts; print(sorted(m for m in sys.modules if m.split('.')[0] in {'django', 'classroom', 'inference_worker', 'ml', 'engagement', 'celery', 'numpy'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_face_check_presence_round_trips_and_is_clamped():
    from contracts import FacePayload

    face = FacePayload.from_dict({"box": [0.1, 0.1, 0.2, 0.2], "presence": 0.7})
    assert face.presence == 0.7 and FacePayload.from_dict(face.to_dict()) == face
    assert FacePayload.from_dict({"box": [0, 0, 1, 1], "presence": 1.5}).presence == 1.0
    assert FacePayload.from_dict({"box": [0, 0, 1, 1]}).presence is None
    with pytest.raises(ContractError):
        FacePayload.from_dict({"box": [0, 0, 1, 1], "presence": "high"})
