"""The numbers message of an on-device session (``contracts.device``) and the shared pipeline
definition (``contracts.pipeline``)."""

from __future__ import annotations

import json

import pytest

from contracts import ContractError, FrameResultPayload, parse_device_analysis
from contracts import pipeline as shared
from contracts.device import PROBABILITY_SUM_TOLERANCE

LIMITS = {"max_faces": 3, "max_bytes": 4096}


def face(**overrides) -> dict:
    base = {
        "box": [0.25, 0.2, 0.3, 0.4],
        "score": 0.91,
        "probabilities": [0.05, 0.01, 0.04, 0.6, 0.1, 0.05, 0.15],
        "yaw_deg": 10.0,
        "pitch_deg": -5.0,
        "quality_issue": None,
    }
    return {**base, **overrides}


def message(*faces, **overrides) -> dict:
    base = {
        "type": "analysis",
        "seq": 7,
        "captured_at": 1.7e12,
        "width": 640,
        "height": 480,
        "faces": list(faces),
        "timings_ms": {"detect": 12.5, "classify": 3.25},
    }
    return {**base, **overrides}


def parse(data, **kwargs):
    text = data if isinstance(data, str) else json.dumps(data)
    return parse_device_analysis(text, **{**LIMITS, **kwargs})


def test_a_valid_message_becomes_the_workers_result_with_derived_fields():
    turned = face(yaw_deg=35.0, probabilities=None, quality_issue=None)
    parsed = parse(
        message(face(), turned, face(probabilities=None, quality_issue="blurred")),
        with_expressions=False,
    )
    assert (parsed.seq, parsed.captured_at_ms) == (7, 1.7e12)
    first, second, third = parsed.result["faces"]
    # attention-only: no expression stored, even the one that was sent
    assert first["label"] is None and first["probabilities"] is None
    assert (first["attentive"], second["attentive"]) == (True, False)  # yaw 35 > 30
    assert (first["assessed"], third["assessed"], third["quality_issue"]) == (
        True,
        False,
        "blurred",
    )

    parsed = parse(message(face(), face(probabilities=None, quality_issue="too_dark")))
    happy, dark = parsed.result["faces"]
    assert (happy["label"], happy["confidence"]) == ("happy", 0.6)  # argmax, not the client's word
    assert happy["box"] == [0.25, 0.2, 0.3, 0.4] and happy["presence"] is None
    assert dark["label"] is None and dark["assessed"] is False
    assert parsed.result["timings_ms"] == {"detect": 12.5, "classify": 3.25}
    # the web side's own contract accepts it unchanged
    payload = FrameResultPayload.from_dict(parsed.result)
    assert payload.faces[0].label == "happy" and payload.faces[1].quality_issue == "too_dark"


def test_a_face_without_pose_has_no_attention_and_no_faces_is_fine():
    parsed = parse(message(face(yaw_deg=None, pitch_deg=None)))
    assert parsed.result["faces"][0]["attentive"] is None
    assert parse(message()).result["faces"] == []


BAD = {
    "not json": "{",
    "NaN": '{"type": "analysis", "seq": NaN}',
    "not an object": [1, 2],
    "unknown key": message(extra=1),
    "missing key": {k: v for k, v in message().items() if k != "width"},
    "wrong type": message(type="frame"),
    "seq too big": message(seq=2**32),
    "seq a bool": message(seq=True),
    "seq a float": message(seq=1.5),
    "zero width": message(width=0),
    "huge height": message(height=10_000),
    "faces not a list": message(faces={}),
    "too many faces": message(face(), face(), face(), face()),
    "face not an object": message([1]),
    "face unknown key": message(face(landmarks=[])),
    "face missing key": message({k: v for k, v in face().items() if k != "score"}),
    "box of 3": message(face(box=[0, 0, 1])),
    "box negative": message(face(box=[-0.1, 0, 0.2, 0.2])),
    "box past the frame": message(face(box=[0.9, 0, 0.2, 0.2])),
    "box empty": message(face(box=[0.1, 0.1, 0.0, 0.2])),
    "box of strings": message(face(box=["0", 0, 0.2, 0.2])),
    "score above 1": message(face(score=1.5)),
    "6 probabilities": message(face(probabilities=[0.5, 0.1, 0.1, 0.1, 0.1, 0.1])),
    "probabilities not summing to 1": message(face(probabilities=[0.1] * 7)),
    "negative probability": message(face(probabilities=[-0.2, 0.2, 0.1, 0.6, 0.1, 0.1, 0.1])),
    "probabilities and an issue": message(face(quality_issue="blurred")),
    "unknown issue": message(face(probabilities=None, quality_issue="ugly")),
    "assessed without probabilities": message(face(probabilities=None)),
    "yaw without pitch": message(face(pitch_deg=None)),
    "yaw out of range": message(face(yaw_deg=120.0)),
    "timings not an object": message(timings_ms=[1]),
    "timing name not an identifier": message(timings_ms={"a b": 1.0}),
    "timing negative": message(timings_ms={"detect": -1.0}),
    "too many timings": message(timings_ms={f"s{i}": 1.0 for i in range(9)}),
}


@pytest.mark.parametrize("name", list(BAD))
def test_malformed_messages_raise_one_error_type_naming_the_problem(name):
    with pytest.raises(ContractError) as excinfo:
        parse(BAD[name])
    assert str(excinfo.value)


def test_size_is_checked_before_parsing():
    text = json.dumps(message(face()))
    with pytest.raises(ContractError, match="bytes; at most"):
        parse(text, max_bytes=len(text) - 1)
    assert parse(text, max_bytes=len(text)).seq == 7


def test_rounded_probabilities_within_the_tolerance_pass():
    rounded = [0.0501, 0.0101, 0.0401, 0.6001, 0.1001, 0.0501, 0.1501]  # sum 1.0007
    assert abs(sum(rounded) - 1) < PROBABILITY_SUM_TOLERANCE
    assert parse(message(face(probabilities=rounded))).result["faces"][0]["label"] == "happy"


def test_the_pipeline_definition_is_what_the_worker_runs():
    from inference_worker import blazeface, headpose, pipeline, quality
    from ml import preprocessing

    definition = shared.pipeline_definition()
    assert json.loads(json.dumps(definition)) == definition  # JSON-able, as the page gets it
    assert definition["input_size"] == preprocessing.INPUT_SIZE
    assert definition["crop_margin"] == pipeline.DEFAULT_CROP_MARGIN
    assert definition["level_above_deg"] == pipeline.DEFAULT_LEVEL_ABOVE_DEG
    assert definition["min_detection_score"] == blazeface.MIN_DETECTION_CONFIDENCE
    gate = quality.QualityGate()
    assert definition["gate"] == {
        "min_face_px": gate.min_face_px,
        "max_yaw_deg": gate.max_yaw_deg,
        "max_pitch_deg": gate.max_pitch_deg,
        "min_snr": gate.min_snr,
        "min_sharpness": gate.min_sharpness,
    }
    assert definition["head_pose"]["yaw_gain"] == headpose.YAW_GAIN
    assert definition["head_pose"]["attentive_max_yaw_deg"] == headpose.ATTENTIVE_MAX_YAW_DEG
    # the server's attention rule on device numbers is the worker's, not a copy of it
    assert headpose.is_attentive is shared.is_attentive
