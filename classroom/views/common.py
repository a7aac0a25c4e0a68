"""What the classroom pages share: role checks, the session lookup, page constants, home."""

from __future__ import annotations

from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from classroom import selectors, services
from classroom.choices import EXPRESSIONS, QUALITY_ISSUE_LABELS, UserRole

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
# 640 px wide and a screen share to at most 1280 px JPEG at quality 0.8.
MAX_WIDTH_WEBCAM_PX = 640
MAX_WIDTH_SCREEN_PX = 1280
JPEG_QUALITY = 0.8

# The board paints lag above this in the warning colour: a second behind is where a live view
# stops feeling live (Nielsen, "Response Times: The 3 Important Limits", 1993: 1 s keeps the
# flow of thought uninterrupted).
LAG_WARN_MS = 1000

STUDENT_WS_PATH = "/ws/stream/"
DASHBOARD_WS_PATH = "/ws/dashboard/{session_id}/"


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
    admin role get 403. Every response is marked ``Cache-Control: no-store`` (Django's
    ``never_cache``): teacher pages and exports carry student names and join codes, which no
    browser or proxy cache should keep.
    """

    @never_cache
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


def coverage_sentence(coverage: dict | None) -> str:
    """One sentence for ``aggregates.expression_coverage``'s dict, as the board says it too.

    Examples: ``"Expression read on 12 of 15 faces; not read: 2 too small, 1 turned away."``,
    ``"Expression read on 4 of 4 faces."``; ``""`` for ``None`` or no face.
    """
    if not coverage or not coverage.get("faces"):
        return ""
    text = f"Expression read on {coverage['read']} of {coverage['faces']} faces"
    reasons = [
        f"{n} {QUALITY_ISSUE_LABELS.get(issue, issue)}"
        for issue, n in (coverage.get("not_read") or {}).items()
        if n
    ]
    return text + ("; not read: " + ", ".join(reasons) if reasons else "") + "."


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def _chart_context(session) -> dict[str, Any]:
    # Attention-only pages get no expression names at all, not even for a hidden chart.
    if not selectors.expressions_on(session):
        return {
            "expressions_on": False,
            "emotion_inference_off": not selectors.emotion_inference_enabled(),
            "expressions": [],
            "expression_colours": {},
            "quality_issue_labels": {},
        }
    return {
        "expressions_on": True,
        "emotion_inference_off": False,
        "expressions": EXPRESSIONS,
        "expression_colours": EXPRESSION_COLOURS,
        "quality_issue_labels": QUALITY_ISSUE_LABELS,
    }


def _current_participant(request: HttpRequest):
    """The participant this browser joined as (from the Django session), or None."""
    participant_id = request.session.get(services.PARTICIPANT_SESSION_KEY)
    if participant_id is None:
        return None
    return selectors.participant_for_stream(participant_id)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """Landing page: join a class (students) or go to your sessions (teachers)."""
    return render(request, "classroom/home.html", {"is_teacher": is_teacher(request.user)})
