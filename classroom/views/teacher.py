"""Teacher pages: session list, create, live board, start and end, the report."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classroom import selectors, services
from classroom.choices import AuditAction
from classroom.forms import SessionCreateForm
from classroom.views.common import (
    DASHBOARD_WS_PATH,
    EXPRESSION_COLOURS,
    LAG_WARN_MS,
    _chart_context,
    _join_url,
    _own_session,
    _session_json,
    coverage_sentence,
    teacher_required,
)


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
    """Create a draft session (title, frame interval, analysis mode and site) and go to its
    board."""
    form = SessionCreateForm(
        request.POST or None, emotion_inference=selectors.emotion_inference_enabled()
    )
    if request.method == "POST" and form.is_valid():
        try:
            session = services.create_session(
                teacher=request.user,
                title=form.cleaned_data["title"],
                frame_interval_s=form.cleaned_data["frame_interval_s"],
                analysis=form.cleaned_data["analysis"],
                analysis_site=form.cleaned_data["analysis_site"],
                server_fallback=form.cleaned_data["server_fallback"],
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
    services.end_session(session, by=request.user)
    messages.success(request, "Session ended. The report is below.")
    return redirect("classroom:session_report", pk=session.pk)


@require_GET
@teacher_required
def session_report(request: HttpRequest, pk) -> HttpResponse:
    """Report of one session: totals, attention, smoothed expression mix (not in attention-only
    sessions), timeline and a per-participant table."""
    session = _own_session(request, pk)
    services.record_event(AuditAction.REPORT_VIEWED, actor=request.user, session=session)
    report = selectors.report_for_display(session)
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
        }
        for row in report.get("participants", [])
    ]
    context = {
        "session": session,
        "report": report,
        "mix_rows": mix_rows,
        "coverage_text": coverage_sentence(report.get("coverage")),
        "participant_rows": participant_rows,
        "attention_percent": None if report.get("attention") is None else report["attention"] * 100,
        "withdrawn_ids": set(
            session.participants.filter(withdrawn_at__isnull=False).values_list("pk", flat=True)
        ),
        **_chart_context(session),
        **_on_device_context(session),
    }
    return render(request, "classroom/session_report.html", context)


def _on_device_context(session) -> dict:
    """The report's on-device flag: how many participants sent numbers instead of pictures."""
    participants, analyses = selectors.on_device_counts(session)
    return {
        "on_device_participants": participants,
        "on_device_analyses": analyses,
        "device_max_faces": int(settings.ENGAGEMENT_DEVICE_MAX_FACES),
    }


@require_POST
@teacher_required
def participant_withdraw(request: HttpRequest, pk, participant_id: int) -> HttpResponse:
    """A teacher (or an admin) withdraws a participant of their session: as when the student
    withdraws (``services.withdraw_participant``), recorded with the teacher as the actor."""
    session = _own_session(request, pk)
    participant = session.participants.filter(pk=participant_id).first()
    if participant is None:
        raise Http404("No such participant in this session.")
    services.withdraw_participant(participant, by=request.user)
    messages.success(
        request,
        f"{participant.display_name}'s consent was withdrawn and their per-frame and per-face "
        "data deleted; the session's figures no longer count them.",
    )
    return redirect("classroom:session_report", pk=session.pk)
