"""HTTP routes of the classroom app (namespace ``classroom``).

WebSocket routes (``/ws/stream/``, ``/ws/dashboard/<uuid>/``) live in :mod:`classroom.routing`.
"""

from django.urls import path

from classroom import views

app_name = "classroom"

urlpatterns = [
    path("", views.home, name="home"),
    # Teachers (login + teacher/admin role; a session is visible to its teacher and staff only).
    path("sessions/", views.session_list, name="session_list"),
    path("sessions.json", views.session_list_json, name="session_list_json"),
    path("sessions/new/", views.session_create, name="session_create"),
    path("sessions/<uuid:pk>/", views.session_detail, name="session_detail"),
    path("sessions/<uuid:pk>/start/", views.session_start, name="session_start"),
    path("sessions/<uuid:pk>/end/", views.session_end, name="session_end"),
    path("sessions/<uuid:pk>/report/", views.session_report, name="session_report"),
    path("sessions/<uuid:pk>/export.csv", views.session_export_csv, name="session_export_csv"),
    path("sessions/<uuid:pk>/export.json", views.session_export_json, name="session_export_json"),
    path(
        "sessions/<uuid:pk>/participants/<int:participant_id>/withdraw/",
        views.participant_withdraw,
        name="participant_withdraw",
    ),
    # Students (no account: the Django session cookie identifies the participant).
    path("join/", views.join, name="join"),
    path("student/", views.student, name="student"),
    path("student/config.json", views.student_config, name="student_config"),
    path("student/leave/", views.student_leave, name="student_leave"),
    path("student/withdraw/", views.student_withdraw, name="student_withdraw"),
]
