"""Student pages: join with a code and consent, the streaming page, its config, leaving."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from classroom import services
from classroom.forms import JoinForm
from classroom.views.common import (
    JPEG_QUALITY,
    MAX_WIDTH_SCREEN_PX,
    MAX_WIDTH_WEBCAM_PX,
    STUDENT_WS_PATH,
    _current_participant,
)


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
