"""What the web side (``classroom``) and the worker side (``inference_worker``, ``ml``) agree on.

Standard library only: this package imports nothing of the project and no third-party package
(an import-linter contract in ``pyproject.toml`` keeps it so), so both sides, and any client,
can depend on it without pulling in Django, Celery, TensorFlow or MediaPipe.

* :mod:`contracts.labels`: the 7 expression labels in FER2013 order.
* :mod:`contracts.names`: task, queue and message-header names, stream sources, analysis
  modes, drop reasons and face-quality issues.
* :mod:`contracts.frames`: the binary frame message of ``/ws/stream/`` (header layout).
* :mod:`contracts.pipeline`: the face pipeline's shared numbers (crop, gate, head pose), which
  the worker and an on-device browser both use.
* :mod:`contracts.device`: the numbers message of an on-device session's browser.
* :mod:`contracts.results`: :class:`FrameResultPayload`, the typed result of one analysed
  frame that the worker hands to ``classroom.services.record_frame_result``.
"""

from contracts.device import DeviceAnalysis, parse_device_analysis
from contracts.frames import (
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    FrameHeader,
    encode_frame,
    parse_frame_header,
    peek_seq,
)
from contracts.labels import EXPRESSIONS
from contracts.names import (
    ANALYZE_FRAME_TASK,
    APPLY_RETENTION_TASK,
    BUILD_REPORT_TASK,
    DEFAULT_QUEUE,
    FRAME_DROP_REASONS,
    INFERENCE_QUEUE,
    PARTICIPANT_HEADER,
    QUALITY_ISSUE_LABELS,
    QUALITY_ISSUES,
    QUEUES,
    SEQ_HEADER,
    AnalysisMode,
    AnalysisSite,
    StreamSource,
)
from contracts.results import ContractError, FacePayload, FrameResultPayload

__all__ = [
    "ANALYZE_FRAME_TASK",
    "APPLY_RETENTION_TASK",
    "BUILD_REPORT_TASK",
    "DEFAULT_QUEUE",
    "EXPRESSIONS",
    "FRAME_DROP_REASONS",
    "FRAME_HEADER",
    "FRAME_HEADER_SIZE",
    "INFERENCE_QUEUE",
    "PARTICIPANT_HEADER",
    "QUALITY_ISSUE_LABELS",
    "QUALITY_ISSUES",
    "QUEUES",
    "SEQ_HEADER",
    "AnalysisMode",
    "AnalysisSite",
    "ContractError",
    "DeviceAnalysis",
    "FacePayload",
    "FrameHeader",
    "FrameResultPayload",
    "StreamSource",
    "encode_frame",
    "parse_device_analysis",
    "parse_frame_header",
    "peek_seq",
]
