"""Django admin: admins (staff) see everything; analysis records are read-only."""

import csv

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Count
from django.http import HttpResponse

from classroom import tracking
from classroom.choices import EXPRESSIONS
from classroom.models import (
    AuditEvent,
    ClassSession,
    FaceObservation,
    FrameResult,
    Participant,
    SessionReport,
    Track,
    User,
)
from classroom.spreadsheet import safe_cell


class StaffCanViewMixin:
    """Every active staff user may view these objects, whatever their model permissions."""

    def has_module_permission(self, request):
        return bool(request.user.is_active and request.user.is_staff)

    def has_view_permission(self, request, obj=None):
        return bool(request.user.is_active and request.user.is_staff)


class ReadOnlyMixin:
    """Records written only by the system: no adding or editing in the admin."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(User)
class UserAdmin(StaffCanViewMixin, BaseUserAdmin):
    list_display = (
        "username",
        "email",
        "role",
        "is_staff",
        "is_superuser",
        "is_active",
        "date_joined",
    )
    list_filter = ("role", "is_staff", "is_superuser", "is_active")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Role", {"fields": ("role",)}))
    add_fieldsets = (*BaseUserAdmin.add_fieldsets, ("Role", {"fields": ("role",)}))


class ParticipantInline(ReadOnlyMixin, admin.TabularInline):
    model = Participant
    extra = 0
    can_delete = False
    fields = (
        "display_name",
        "consent_given_at",
        "joined_at",
        "last_seen_at",
        "frames_received",
        "frames_rejected",
        "frames_analysed",
        "frames_dropped",
    )
    readonly_fields = fields
    show_change_link = True


@admin.register(ClassSession)
class ClassSessionAdmin(StaffCanViewMixin, admin.ModelAdmin):
    list_display = (
        "title",
        "teacher",
        "join_code",
        "status",
        "analysis",
        "created_at",
        "started_at",
        "ended_at",
        "participant_count",
        "frames_analysed",
    )
    list_filter = ("status", "analysis")
    search_fields = ("title", "join_code", "teacher__username")
    readonly_fields = ("id", "join_code", "analysis", "created_at", "started_at", "ended_at")
    list_select_related = ("teacher",)
    inlines = [ParticipantInline]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                _participants=Count("participants", distinct=True),
                _frames=Count("participants__frame_results", distinct=True),
            )
        )

    @admin.display(description="participants", ordering="_participants")
    def participant_count(self, obj):
        return obj._participants

    @admin.display(description="frames analysed", ordering="_frames")
    def frames_analysed(self, obj):
        return obj._frames


@admin.register(Participant)
class ParticipantAdmin(StaffCanViewMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "display_name",
        "session",
        "joined_at",
        "consent_given_at",
        "last_seen_at",
        "frames_received",
        "frames_rejected",
        "frames_analysed",
        "frames_dropped",
    )
    list_select_related = ("session",)
    search_fields = ("display_name", "session__title", "session__join_code")


class FaceObservationInline(ReadOnlyMixin, admin.TabularInline):
    model = FaceObservation
    extra = 0
    can_delete = False
    fields = (
        "index",
        "track",
        "label",
        "confidence",
        "smoothed_label",
        "yaw_deg",
        "pitch_deg",
        "attentive",
        "score",
        "box_x",
        "box_y",
        "box_w",
        "box_h",
        "probabilities",
        "smoothed_probabilities",
    )
    readonly_fields = fields


@admin.register(FrameResult)
class FrameResultAdmin(StaffCanViewMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "participant",
        "seq",
        "face_count",
        "width",
        "height",
        "received_at",
        "analysed_at",
    )
    list_select_related = ("participant",)
    list_filter = ("analysed_at",)
    inlines = [FaceObservationInline]


@admin.register(Track)
class TrackAdmin(StaffCanViewMixin, ReadOnlyMixin, admin.ModelAdmin):
    """Anonymous face tracks (boxes and times only, no identity)."""

    list_display = (
        "participant",
        "number",
        "hits",
        "first_seen_at",
        "last_seen_at",
        "last_seq",
        "smoothed_label",
    )
    list_select_related = ("participant",)
    search_fields = ("participant__display_name", "participant__session__join_code")

    @admin.display(description="smoothed label")
    def smoothed_label(self, obj):
        probabilities = obj.smoothed_probabilities
        if not probabilities or len(probabilities) != len(EXPRESSIONS):
            return "-"
        return tracking.argmax_label(probabilities, EXPRESSIONS)


@admin.register(SessionReport)
class SessionReportAdmin(StaffCanViewMixin, ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("session", "built_at")
    list_select_related = ("session",)


@admin.register(AuditEvent)
class AuditEventAdmin(StaffCanViewMixin, ReadOnlyMixin, admin.ModelAdmin):
    """The audit log, read-only; "Export as CSV" downloads the selected records."""

    list_display = ("at", "actor_name", "action", "session_title", "session")
    list_filter = ("action",)
    search_fields = ("actor_name", "session_title")
    date_hierarchy = "at"
    actions = ["export_csv"]

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Export the selected records as CSV")
    def export_csv(self, request, queryset):
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        writer = csv.writer(response)
        writer.writerow(["at", "actor", "action", "session", "session_title", "detail"])
        for event in queryset.order_by("at", "id"):
            row = [
                event.at.isoformat(),
                event.actor_name,
                event.action,
                event.session_id,
                event.session_title,
                event.detail,
            ]
            writer.writerow([safe_cell(value) for value in row])
        return response
