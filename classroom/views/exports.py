"""A session's exports: the report as JSON, and CSV tables (participants, timeline, faces)."""

from __future__ import annotations

import csv
import itertools

from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.utils import timezone
from django.views.decorators.http import require_GET

from classroom import selectors, services
from classroom.choices import EXPRESSIONS, AuditAction
from classroom.spreadsheet import safe_cell
from classroom.views.common import (
    _own_session,
    teacher_required,
)

# CSV header -> key of a participant row of selectors.session_report().
PARTICIPANT_COLUMNS = {
    "participant_id": "id",
    "display_name": "display_name",
    "joined_at": "joined_at",
    "consent_given_at": "consent_given_at",
    "last_seen_at": "last_seen_at",
    "frames_received": "frames_received",
    "frames_rejected": "frames_rejected",
    "frames_analysed": "frames_analysed",
    "frames_dropped": "frames_dropped",
    "faces": "faces",
    "faces_per_frame": "faces_per_frame",
    "tracks": "tracks",
}

CSV_TABLES = ("participants", "timeline", "faces")


def _share(mix: dict[str, float], label: str) -> str:
    return f"{mix.get(label, 0.0):.4f}"


def _export_filename(session, extension: str) -> str:
    stamp = (session.started_at or session.created_at or timezone.now()).strftime("%Y%m%d-%H%M")
    return f"session-{session.join_code}-{stamp}.{extension}"


@require_GET
@teacher_required
def session_export_json(request: HttpRequest, pk) -> JsonResponse:
    """The session report as a JSON download (numbers only; no images exist to export).

    ``selectors.session_report`` output: smoothed (``mix``) and raw (``mix_raw``) expression
    shares, attention, tracks, lag and drops; in attention-only sessions every mix is ``{}``.
    """
    session = _own_session(request, pk)
    services.record_event(
        AuditAction.REPORT_EXPORTED, actor=request.user, session=session, detail={"format": "json"}
    )
    payload = selectors.report_for_display(session)
    response = JsonResponse(payload, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{_export_filename(session, "json")}"'
    return response


@require_GET
@teacher_required
def session_export_csv(request: HttpRequest, pk) -> HttpResponse:
    """The session report as a CSV download. Attention-only sessions have no expression column.

    Query parameters:
        table: ``participants`` (default: one row per participant: participation counters
            and tracks, nothing about expressions or attention),
            ``timeline`` (one row per 5-s bucket: t, faces, attention, smoothed expression
            shares) or ``faces`` (one row per observed face, anonymous, streamed: arrival, track
            number,
            box, head yaw/pitch in degrees, attentive, then raw and smoothed label and
            confidence; see ``selectors.face_export``). Anything else: 400.
    """
    session = _own_session(request, pk)
    table = request.GET.get("table", "participants")
    if table not in CSV_TABLES:
        return HttpResponse(f"table must be one of {', '.join(CSV_TABLES)}.", status=400)
    services.record_event(
        AuditAction.REPORT_EXPORTED,
        actor=request.user,
        session=session,
        detail={"format": "csv", "table": table},
    )
    name = _export_filename(session, "csv").replace(".csv", f"-{table}.csv")
    disposition = f'attachment; filename="{name}"'
    if table == "faces":
        header, rows = selectors.face_export(session)
        writer = csv.writer(_Echo())
        lines = itertools.chain(
            [writer.writerow(header)],
            (writer.writerow([safe_cell(v) for v in row]) for row in rows),
        )
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = disposition
        return response

    report = selectors.report_for_display(session)
    expressions = EXPRESSIONS if selectors.expressions_on(session) else ()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = disposition
    writer = csv.writer(response)
    if table == "timeline":
        writer.writerow(["t", "faces", "attention", *expressions])
        for point in report.get("timeline", []):
            mix = point.get("mix") or {}
            writer.writerow(
                [point["t"], point["faces"], safe_cell(point.get("attention"))]
                + [_share(mix, e) for e in expressions]
            )
    else:
        # Participation only: no expression or attention figure per participant.
        writer.writerow(list(PARTICIPANT_COLUMNS))
        for row in report.get("participants", []):
            writer.writerow([safe_cell(row.get(key)) for key in PARTICIPANT_COLUMNS.values()])
    return response


class _Echo:
    """A file-like object whose ``write`` returns the line: lets ``csv.writer`` feed a
    ``StreamingHttpResponse`` (Django docs, "Streaming large CSV files")."""

    def write(self, value: str) -> str:
        return value
