"""Student pages: join with a code and consent, the streaming page, its config, leaving."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    JsonResponse,
)
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import get_usage, is_ratelimited

from classroom import selectors, services
from classroom.choices import AnalysisSite
from classroom.forms import JoinForm
from classroom.views.common import (
    JPEG_QUALITY,
    MAX_WIDTH_SCREEN_PX,
    MAX_WIDTH_WEBCAM_PX,
    STUDENT_WS_PATH,
    _current_participant,
)
from contracts.pipeline import pipeline_definition

THROTTLED_MESSAGE = "Too many join attempts from this network. Wait a minute, then try again."


def _wrong_codes(request: HttpRequest, *, count: bool) -> dict | None:
    """This client address's wrong join codes in the current minute (django-ratelimit usage:
    ``{"count", "limit", ...}``, ``None`` when rate limiting is off); ``count`` adds one."""
    return get_usage(
        request,
        group="join-failures",
        key="ip",
        rate=f"{settings.ENGAGEMENT_JOIN_FAILURES_PER_MINUTE}/m",
        increment=count,
    )


def _join_throttled(request: HttpRequest) -> bool:
    """Whether this client address is over a join limit (django-ratelimit, the cache's counters),
    counting this attempt.

    Two limits per client address: ``ENGAGEMENT_JOIN_FAILURES_PER_MINUTE`` wrong codes (counted
    after each wrong code; at the limit the next attempt waits, whatever its code) and
    ``ENGAGEMENT_JOINS_PER_10_MINUTES`` join attempts.
    """
    failures = _wrong_codes(request, count=False)
    too_many_wrong = failures is not None and failures["count"] >= failures["limit"]
    too_many_joins = is_ratelimited(
        request,
        group="joins",
        key="ip",
        rate=f"{settings.ENGAGEMENT_JOINS_PER_10_MINUTES}/10m",
        increment=True,
    )
    return too_many_wrong or too_many_joins


@never_cache
@require_http_methods(["GET", "POST"])
def join(request: HttpRequest) -> HttpResponse:
    """Join a session: code, display name and explicit consent; then go to the streaming page.

    ``GET /join/?code=XXXX`` pre-fills the code. On success the new participant's id is kept in
    the Django session (the cookie identifies the student's WebSocket) and the browser is
    redirected to ``/student/``. On failure the form shows the reason, and the error element
    carries ``data-join-error="<code>"`` (``unknown_code`` for a code that does not exist or
    whose session has ended, ``session_full``, ``consent_required``, ``bad_name``, or
    ``throttled`` with HTTP 429 when this client address is over a join limit, see
    :func:`_join_throttled`) for scripts.
    """
    error_code = None
    status = 200
    if request.method == "POST":
        form = JoinForm(request.POST)
        status = 400
        if _join_throttled(request):
            error_code, status = "throttled", 429
            form.add_error(None, THROTTLED_MESSAGE)
        elif form.is_valid():
            try:
                participant = services.join_session(
                    code=form.cleaned_data["code"],
                    display_name=form.cleaned_data["display_name"],
                    consent=form.cleaned_data["consent"],
                )
            except services.JoinError as exc:
                error_code = exc.code
                if exc.code == "unknown_code":
                    _wrong_codes(request, count=True)
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
    else:
        form = JoinForm(initial={"code": request.GET.get("code", "").strip().upper()})
    return render(
        request, "classroom/join.html", {"form": form, "error_code": error_code}, status=status
    )


ON_DEVICE_FILES: dict[str, str] = {
    "bundle": "ondevice/ondevice.js",
    "detector_model": "models/detector/face_detection_full_range_sparse.tflite",
    "classifier_model": "models/classifier/expression_cnn.batch1.tflite",
}
"""Static files an on-device student page loads (``STATICFILES_DIRS``): our bundle of
``classroom/frontend/``, the worker's BlazeFace full-range model (what live webcam frames use)
and the shipped classifier's batch-1 copy (``ml.browser_model``). Their URLs come from the
static files storage (content-hashed names in production)."""

ON_DEVICE_FOLDERS: dict[str, str] = {
    "mediapipe_wasm": "vendor/mediapipe-wasm",
    "litert_wasm": "vendor/litert-wasm/",
}
"""Static folders of the two WASM runtimes from npm: each runtime picks its own files in its
folder by their original names, which ``collectstatic`` keeps next to the hashed copies."""


def _on_device_config(session) -> dict[str, Any] | None:
    if session.analysis_site != AnalysisSite.ON_DEVICE:
        return None
    return {
        **{key: static(path) for key, path in ON_DEVICE_FILES.items()},
        **{key: settings.STATIC_URL + path for key, path in ON_DEVICE_FOLDERS.items()},
        "pipeline": pipeline_definition(),
        "classify": selectors.expressions_on(session),
        "server_fallback": session.server_fallback,
    }


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
            "analysis_site": session.analysis_site,
        },
        "ondevice": _on_device_config(session),
        "ws_path": STUDENT_WS_PATH,
        "config_path": reverse("classroom:student_config"),
        "status_poll_s": max(1.0, float(settings.ENGAGEMENT_STUDENT_STATUS_POLL_S)),
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
    response = render(
        request,
        "classroom/student.html",
        {
            "participant": participant,
            "session": participant.session,
            "config": _student_config(participant),
        },
    )
    if participant.session.analysis_site == AnalysisSite.ON_DEVICE:
        # The WASM runtimes compile WebAssembly: CSP's 'wasm-unsafe-eval' allows exactly that
        # (not eval); still no script from anywhere but this origin (django-csp's csp_update).
        response._csp_update = {"script-src": ["'wasm-unsafe-eval'"]}
    return response


@never_cache
@require_GET
def student_config(request: HttpRequest) -> JsonResponse:
    """What a streaming client needs, as JSON (used by ``simulate_class``).

    Returns:
        200 ``{"participant": {"id", "display_name"}, "session": {"title", "status", "join_code",
        "frame_interval_s", "analysis", "analysis_site"}, "ondevice" (``None`` in a session
        analysed on the server; else the static URLs of the bundle, WASM folders and models,
        "pipeline": ``contracts.pipeline.pipeline_definition()``, "classify" and
        "server_fallback"), "ws_path", "config_path" (this endpoint),
        "status_poll_s" (seconds between status checks of a page that is not streaming, >= 1),
        "max_width_px": {"webcam", "screen"}, "jpeg_quality"}``,
        or 403 ``{"error": "not_joined"}`` when this browser has not joined a session.
    """
    participant = _current_participant(request)
    if participant is None:
        return JsonResponse({"error": "not_joined"}, status=403)
    return JsonResponse(_student_config(participant))


@require_POST
def student_leave(request: HttpRequest) -> HttpResponse:
    """Forget the participant in this browser (e.g. on a shared computer) and close the
    participant's open stream sockets."""
    participant_id = request.session.pop(services.PARTICIPANT_SESSION_KEY, None)
    if participant_id is not None:
        services.leave_session(participant_id)
    messages.info(request, "You left the session. Nothing more is sent from this browser.")
    return redirect("classroom:join")


@require_POST
def student_withdraw(request: HttpRequest) -> HttpResponse:
    """Withdraw consent from this browser: the stream stops, the participant's per-frame and
    per-face rows are deleted (``services.withdraw_participant``), the browser forgets them."""
    participant = _current_participant(request)
    request.session.pop(services.PARTICIPANT_SESSION_KEY, None)
    if participant is None:
        messages.info(request, "This browser is not part of a session.")
        return redirect("classroom:join")
    services.withdraw_participant(participant)
    messages.success(
        request,
        "You withdrew your consent. Everything derived from your pictures in this session was "
        "deleted, and nothing more is sent from this browser.",
    )
    return redirect("classroom:join")
