"""Web pages of the classroom app: teacher sessions and live board, student join and streaming,
session reports and their CSV/JSON exports.

Views read through :mod:`classroom.selectors` and write through :mod:`classroom.services` only.
The live parts (frames in, dashboard updates out) are WebSockets served by
:mod:`classroom.consumers`; the pages here render the initial state and the scripts that talk to
those sockets.
"""

from __future__ import annotations

import csv
import itertools
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classroom import selectors, services
from classroom.choices import EXPRESSIONS, UserRole
from classroom.forms import JoinForm, SessionCreateForm

# A fixed colour per expression so that the board, the report and the legend always agree.
# Okabe & Ito's colour-blind-safe palette ("Color Universal Design", 2008) plus grey for neutral.
EXPRESSION_COLOURS: dict[str, str] = {
    "angry": "#D55E00",
    "disgust": "#009E73",
    "fear": "#CC79A7",
    "happy": "#E69F00",
    "sad": "#0072B2",
    "surprise": "#56B4E9",
    "neutral": "#6B6B6B",
}

# What the student page and simulate_class send: the browser scales a webcam frame down to at most
# 640 px wide and a screen share to at most 1280 px (issue #2), JPEG at quality 0.8.
MAX_WIDTH_WEBCAM_PX = 640
MAX_WIDTH_SCREEN_PX = 1280
JPEG_QUALITY = 0.8

# The board paints lag above this in the warning colour: a second behind is where a live view
# stops feeling live (Nielsen, "Response Times: The 3 Important Limits", 1993: 1 s keeps the
# flow of thought uninterrupted).
LAG_WARN_MS = 1000

STUDENT_WS_PATH = "/ws/stream/"
DASHBOARD_WS_PATH = "/ws/dashboard/{session_id}/"


# --- helpers ------------------------------------------------------------------------------------


def is_teacher(user: Any) -> bool:
    """Whether a user may run class sessions (teachers and admins/staff).

    Args:
        user: ``request.user`` (may be anonymous).

    Returns:
        True for an authenticated teacher, admin, staff member or superuser.
    """
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return bool(user.is_admin or user.role == UserRole.TEACHER)


def teacher_required(view):
    """Decorate a view so that only logged-in teachers (or staff) reach it.

    Anonymous users are redirected to the login page; logged-in users without the teacher or
    admin role get 403.
    """

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not is_teacher(request.user):
            raise PermissionDenied("Only teachers can open this page.")
        return view(request, *args, **kwargs)

    return wrapper


def _own_session(request: HttpRequest, pk):
    """The session ``pk`` if the user may see it (its teacher, or an admin), else 404.

    404 rather than 403 so that other teachers cannot probe which session ids exist.
    """
    session = selectors.session_for(request.user, pk)
    if session is None:
        raise Http404("No such session.")
    return session


def _join_url(request: HttpRequest, join_code: str) -> str:
    return request.build_absolute_uri(f"{reverse('classroom:join')}?code={join_code}")


def _session_json(request: HttpRequest, session) -> dict[str, Any]:
    return {
        "id": str(session.pk),
        "title": session.title,
        "status": session.status,
        "join_code": session.join_code,
        "frame_interval_s": session.frame_interval_s,
        "analysis": session.analysis,
        "created_at": _iso(session.created_at),
        "started_at": _iso(session.started_at),
        "ended_at": _iso(session.ended_at),
        "dashboard_url": request.build_absolute_uri(
            reverse("classroom:session_detail", args=[session.pk])
        ),
        "dashboard_ws_path": DASHBOARD_WS_PATH.format(session_id=session.pk),
        "join_url": _join_url(request, session.join_code),
    }


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _chart_context(session) -> dict[str, Any]:
    # Attention-only pages get no expression names at all, not even for a hidden chart.
    if not selectors.expressions_on(session):
        return {"expressions_on": False, "expressions": [], "expression_colours": {}}
    return {
        "expressions_on": True,
        "expressions": EXPRESSIONS,
        "expression_colours": EXPRESSION_COLOURS,
    }


def _current_participant(request: HttpRequest):
    """The participant this browser joined as (from the Django session), or None."""
    participant_id = request.session.get(services.PARTICIPANT_SESSION_KEY)
    if participant_id is None:
        return None
    return selectors.participant_for_stream(participant_id)


# --- public pages -------------------------------------------------------------------------------


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Landing page: join a class (students) or go to your sessions (teachers)."""
    return render(request, "classroom/home.html", {"is_teacher": is_teacher(request.user)})


# --- teacher pages ------------------------------------------------------------------------------


@require_GET
@teacher_required
def session_list(request: HttpRequest) -> HttpResponse:
    """The teacher's sessions, newest first (staff see every session)."""
    sessions = selectors.sessions_for(request.user).order_by("-created_at")
    return render(request, "classroom/session_list.html", {"sessions": sessions})


@require_GET
@teacher_required
def session_list_json(request: HttpRequest) -> JsonResponse:
    """The teacher's sessions as JSON, for scripts (``simulate_class`` finds a session by code).

    Query parameters:
        code: optional join code; only the session with that code is listed.

    Returns:
        ``{"sessions": [{"id", "title", "status", "join_code", "frame_interval_s", "created_at",
        "started_at", "ended_at", "dashboard_url", "dashboard_ws_path", "join_url"}, ...]}``.
    """
    sessions = selectors.sessions_for(request.user).order_by("-created_at")
    code = request.GET.get("code", "").strip().upper()
    if code:
        sessions = sessions.filter(join_code=code)
    return JsonResponse({"sessions": [_session_json(request, s) for s in sessions]})


@require_http_methods(["GET", "POST"])
@teacher_required
def session_create(request: HttpRequest) -> HttpResponse:
    """Create a draft session (title, frame interval, analysis mode) and go to its board."""
    form = SessionCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            session = services.create_session(
                teacher=request.user,
                title=form.cleaned_data["title"],
                frame_interval_s=form.cleaned_data["frame_interval_s"],
                analysis=form.cleaned_data["analysis"],
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Session created. Start it when the class is ready.")
            return redirect("classroom:session_detail", pk=session.pk)
    return render(request, "classroom/session_create.html", {"form": form})


@require_GET
@teacher_required
def session_detail(request: HttpRequest, pk) -> HttpResponse:
    """The live board of one session: join code, start/end, faces now, attention, smoothed
    expression mix (not in attention-only sessions), lag and dropped frames, timeline.

    The page renders the current snapshot (full timeline) and ``dashboard.js`` then applies
    every ``session.update`` pushed over ``/ws/dashboard/<uuid>/``, merging timeline tails.
    """
    session = _own_session(request, pk)
    context = {
        "session": session,
        "join_url": _join_url(request, session.join_code),
        "snapshot": selectors.dashboard_snapshot(session),
        "dashboard_ws_path": DASHBOARD_WS_PATH.format(session_id=session.pk),
        "lag_warn_ms": LAG_WARN_MS,
        **_chart_context(session),
    }
    return render(request, "classroom/session_detail.html", context)


@require_POST
@teacher_required
def session_start(request: HttpRequest, pk) -> HttpResponse:
    """Start a draft session (POST); students' frames are accepted from now on."""
    session = _own_session(request, pk)
    try:
        services.start_session(session, by=request.user)
    except services.SessionStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Session started: students can stream now.")
    return redirect("classroom:session_detail", pk=session.pk)


@require_POST
@teacher_required
def session_end(request: HttpRequest, pk) -> HttpResponse:
    """End a live session (POST); students' pages stop and the report is built."""
    session = _own_session(request, pk)
    try:
        services.end_session(session, by=request.user)
    except services.SessionStateError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Session ended. The report is below.")
        return redirect("classroom:session_report", pk=session.pk)
    return redirect("classroom:session_detail", pk=session.pk)


@require_GET
@teacher_required
def session_report(request: HttpRequest, pk) -> HttpResponse:
    """Report of one session: totals, attention, smoothed expression mix (not in attention-only
    sessions), timeline and a per-participant table."""
    session = _own_session(request, pk)
    report = selectors.session_report(session)
    expressions_on = selectors.expressions_on(session)
    mix = report.get("mix") or {}
    mix_raw = report.get("mix_raw") or {}
    mix_rows = [
        {
            "label": e,
            "colour": EXPRESSION_COLOURS[e],
            "percent": mix[e] * 100,
            "raw_percent": mix_raw.get(e, 0.0) * 100,
        }
        for e in sorted(mix, key=lambda label: -mix[label])
        if e in EXPRESSION_COLOURS and expressions_on
    ]
    participant_rows = [
        {
            **row,
            "joined_at": parse_datetime(row["joined_at"]) if row.get("joined_at") else None,
            "attention_percent": None if row.get("attention") is None else row["attention"] * 100,
            "shares": [(row.get("mix") or {}).get(e, 0.0) * 100 for e in EXPRESSIONS]
            if expressions_on
            else [],
        }
        for row in report.get("participants", [])
    ]
    context = {
        "session": session,
        "report": report,
        "mix_rows": mix_rows,
        "participant_rows": participant_rows,
        "attention_percent": None if report.get("attention") is None else report["attention"] * 100,
        **_chart_context(session),
    }
    return render(request, "classroom/session_report.html", context)


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
    "attention": "attention",
}

CSV_TABLES = ("participants", "timeline", "faces")


def _share(mix: dict[str, float], label: str) -> str:
    return f"{mix.get(label, 0.0):.4f}"


def _csv_cell(value) -> Any:
    # Display names are user input: neutralise spreadsheet formula injection (OWASP "CSV
    # Injection") by prefixing a quote to cells that a spreadsheet would evaluate.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


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
    payload = selectors.session_report(session)
    response = JsonResponse(payload, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{_export_filename(session, "json")}"'
    return response


@require_GET
@teacher_required
def session_export_csv(request: HttpRequest, pk) -> HttpResponse:
    """The session report as a CSV download. Attention-only sessions have no expression column.

    Query parameters:
        table: ``participants`` (default: one row per participant: counters, tracks,
            attention share 0..1, then the share 0..1 of each SMOOTHED expression),
            ``timeline`` (one row per 5-s bucket: t, faces, attention, smoothed expression
            shares) or ``faces`` (one row per observed face, streamed: arrival, track number,
            box, head yaw/pitch in degrees, attentive, then raw and smoothed label and
            confidence; see ``selectors.face_export``). Anything else: 400.
    """
    session = _own_session(request, pk)
    table = request.GET.get("table", "participants")
    if table not in CSV_TABLES:
        return HttpResponse(f"table must be one of {', '.join(CSV_TABLES)}.", status=400)
    name = _export_filename(session, "csv").replace(".csv", f"-{table}.csv")
    disposition = f'attachment; filename="{name}"'
    if table == "faces":
        header, rows = selectors.face_export(session)
        writer = csv.writer(_Echo())
        lines = itertools.chain(
            [writer.writerow(header)],
            (writer.writerow([_csv_cell(v) for v in row]) for row in rows),
        )
        response = StreamingHttpResponse(lines, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = disposition
        return response

    report = selectors.session_report(session)
    expressions = EXPRESSIONS if selectors.expressions_on(session) else ()
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = disposition
    writer = csv.writer(response)
    if table == "timeline":
        writer.writerow(["t", "faces", "attention", *expressions])
        for point in report.get("timeline", []):
            mix = point.get("mix") or {}
            writer.writerow(
                [point["t"], point["faces"], _csv_cell(point.get("attention"))]
                + [_share(mix, e) for e in expressions]
            )
    else:
        writer.writerow([*PARTICIPANT_COLUMNS, *expressions])
        for row in report.get("participants", []):
            mix = row.get("mix") or {}
            writer.writerow(
                [_csv_cell(row.get(key)) for key in PARTICIPANT_COLUMNS.values()]
                + [_share(mix, e) for e in expressions]
            )
    return response


class _Echo:
    """A file-like object whose ``write`` returns the line: lets ``csv.writer`` feed a
    ``StreamingHttpResponse`` (Django docs, "Streaming large CSV files")."""

    def write(self, value: str) -> str:
        return value


# --- student pages ------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest) -> HttpResponse:
    """Join a session: code, display name and explicit consent; then go to the streaming page.

    ``GET /join/?code=XXXX`` pre-fills the code. On success the new participant's id is kept in
    the Django session (the cookie identifies the student's WebSocket) and the browser is
    redirected to ``/student/``. On failure the form shows the reason, and the error element
    carries ``data-join-error="<code>"`` (``unknown_code``, ``session_ended``,
    ``consent_required``, ``bad_name``) for scripts.
    """
    error_code = None
    if request.method == "POST":
        form = JoinForm(request.POST)
        if form.is_valid():
            try:
                participant = services.join_session(
                    code=form.cleaned_data["code"],
                    display_name=form.cleaned_data["display_name"],
                    consent=form.cleaned_data["consent"],
                )
            except services.JoinError as exc:
                error_code = exc.code
                field = {"consent_required": "consent", "bad_name": "display_name"}.get(
                    exc.code, "code"
                )
                form.add_error(field, exc.message)
            else:
                # A new identity in this browser: a fresh session key (no session fixation).
                request.session.cycle_key()
                request.session[services.PARTICIPANT_SESSION_KEY] = participant.pk
                return redirect("classroom:student")
        else:
            error_code = "consent_required" if "consent" in form.errors else "invalid_form"
        status = 400
    else:
        form = JoinForm(initial={"code": request.GET.get("code", "").strip().upper()})
        status = 200
    return render(
        request, "classroom/join.html", {"form": form, "error_code": error_code}, status=status
    )


def _student_config(participant) -> dict[str, Any]:
    session = participant.session
    return {
        "participant": {"id": participant.pk, "display_name": participant.display_name},
        "session": {
            "title": session.title,
            "status": session.status,
            "join_code": session.join_code,
            "frame_interval_s": session.frame_interval_s,
            "analysis": session.analysis,
        },
        "ws_path": STUDENT_WS_PATH,
        "max_width_px": {"webcam": MAX_WIDTH_WEBCAM_PX, "screen": MAX_WIDTH_SCREEN_PX},
        "jpeg_quality": JPEG_QUALITY,
    }


@never_cache
@require_GET
def student(request: HttpRequest) -> HttpResponse:
    """The student's streaming page (webcam or screen share), for a joined participant."""
    participant = _current_participant(request)
    if participant is None:
        messages.info(request, "Join a session first.")
        return redirect("classroom:join")
    return render(
        request,
        "classroom/student.html",
        {
            "participant": participant,
            "session": participant.session,
            "config": _student_config(participant),
        },
    )


@never_cache
@require_GET
def student_config(request: HttpRequest) -> JsonResponse:
    """What a streaming client needs, as JSON (used by ``simulate_class``).

    Returns:
        200 ``{"participant": {"id", "display_name"}, "session": {"title", "status", "join_code",
        "frame_interval_s", "analysis"}, "ws_path", "max_width_px": {"webcam", "screen"},
        "jpeg_quality"}``,
        or 403 ``{"error": "not_joined"}`` when this browser has not joined a session.
    """
    participant = _current_participant(request)
    if participant is None:
        return JsonResponse({"error": "not_joined"}, status=403)
    return JsonResponse(_student_config(participant))


@require_POST
def student_leave(request: HttpRequest) -> HttpResponse:
    """Forget the participant in this browser (e.g. on a shared computer)."""
    request.session.pop(services.PARTICIPANT_SESSION_KEY, None)
    messages.info(request, "You left the session. Nothing more is sent from this browser.")
    return redirect("classroom:join")
