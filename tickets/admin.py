"""Configuration screens for admins: teams, skills, agents, tags, canned responses, contacts.

Ticket state is written only by `tickets.actions`, so tickets, messages, events, deliveries
and merges are read-only here; the bulk status changes on tickets call the actions.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from channels_in.models import ChannelKind

from . import actions, sla
from .errors import ActionError
from .models import (
    AccountNumber,
    Agent,
    AgentSkill,
    Attachment,
    BusinessHours,
    Call,
    CannedResponse,
    Contact,
    ContactMerge,
    Delivery,
    Holiday,
    Identity,
    Message,
    Skill,
    SlaPolicy,
    Status,
    Tag,
    Team,
    Ticket,
    TicketEvent,
)


class ReadOnlyMixin:
    """A record of what happened: viewable, never added, changed or deleted by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "parent", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    extra = 0
    autocomplete_fields = ("skill",)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("__str__", "role", "presence", "open_count", "capacity", "auto_assign")
    list_filter = ("role", "presence", "teams", "auto_assign")
    search_fields = ("user__username", "user__first_name", "user__last_name", "user__email")
    list_select_related = ("user",)
    autocomplete_fields = ("user",)
    filter_horizontal = ("teams",)
    inlines = (AgentSkillInline,)
    # Kept by the actions in the same transaction as every ownership change.
    readonly_fields = ("open_count", "presence_changed_at", "last_assigned_at")


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "color")
    search_fields = ("name",)


class IdentityInline(admin.TabularInline):
    model = Identity
    extra = 0
    fields = ("kind", "value", "label", "created_at")
    readonly_fields = ("created_at",)


class AccountNumberInline(admin.TabularInline):
    model = AccountNumber
    extra = 0


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ("__str__", "tier", "language", "merged_into", "last_seen_at")
    list_filter = ("tier", "language")
    search_fields = ("display_name", "identities__value", "accounts__number")
    readonly_fields = ("merged_into", "created_at", "updated_at", "last_seen_at")
    inlines = (IdentityInline, AccountNumberInline)


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    list_display = ("kind", "value", "label", "contact")
    list_filter = ("kind",)
    search_fields = ("value", "label")
    list_select_related = ("contact",)
    raw_id_fields = ("contact",)


@admin.register(AccountNumber)
class AccountNumberAdmin(admin.ModelAdmin):
    list_display = ("number", "label", "contact")
    search_fields = ("number",)
    list_select_related = ("contact",)
    raw_id_fields = ("contact",)


@admin.action(description="Mark selected tickets resolved")
def resolve_tickets(modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet) -> None:
    _set_status(modeladmin, request, qs, Status.RESOLVED)


@admin.action(description="Close selected tickets")
def close_tickets(modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet) -> None:
    _set_status(modeladmin, request, qs, Status.CLOSED)


def _set_status(
    modeladmin: admin.ModelAdmin, request: HttpRequest, qs: QuerySet, status: str
) -> None:
    actor = getattr(request.user, "agent", None)
    done = 0
    for ticket in qs:
        try:
            actions.do_set_status(ticket, status, actor=actor)
            done += 1
        except ActionError as exc:
            modeladmin.message_user(request, f"#{ticket.pk}: {exc.message}", messages.ERROR)
    modeladmin.message_user(request, f"{done} ticket(s) set to {status}.", messages.SUCCESS)


@admin.register(Ticket)
class TicketAdmin(admin.ModelAdmin):
    """Read-mostly: look tickets up; change them in the helpdesk (or with the bulk actions,
    which go through tickets.actions and leave the same history)."""

    list_display = (
        "id",
        "subject",
        "status",
        "priority",
        "team",
        "assignee",
        "channel",
        "created_at",
    )
    list_filter = ("status", "priority", "topic", "language", "team", "channel")
    search_fields = ("=id", "subject", "preview", "contact__display_name")
    list_select_related = ("team", "assignee__user", "channel")
    date_hierarchy = "created_at"
    actions = (resolve_tickets, close_tickets)
    show_full_result_count = False  # COUNT(*) over millions of rows on every page view

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in Ticket._meta.get_fields() if f.concrete] + ["open_in_helpdesk"]

    @admin.display(description="Helpdesk")
    def open_in_helpdesk(self, obj: Ticket) -> str:
        return format_html(
            '<a href="{}">Open in the helpdesk</a>', reverse("ticket", args=[obj.pk])
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AttachmentInline(ReadOnlyMixin, admin.TabularInline):
    model = Attachment
    extra = 0
    fields = ("name", "content_type", "size", "file", "source_url")
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "ticket_id",
        "direction",
        "author_kind",
        "kind",
        "delivery_status",
        "created_at",
    )
    list_filter = ("direction", "author_kind", "delivery_status", "is_internal")
    search_fields = ("=ticket__id", "platform_message_id")
    raw_id_fields = ("ticket",)
    inlines = (AttachmentInline,)
    show_full_result_count = False


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("name", "content_type", "size", "message_id", "created_at")
    search_fields = ("name",)


@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ("shortcut", "title", "language", "team", "usage_count", "updated_at")
    list_filter = ("language", "team")
    search_fields = ("shortcut", "title", "body")
    readonly_fields = ("usage_count",)
    fields = ("shortcut", "title", "body", "language", "team", "created_by", "usage_count")
    help_texts = {
        "body": "Variables: {{contact.name}}, {{ticket.id}}, {{agent.name}}, {{contact.account}}"
    }

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        kwargs["help_texts"] = self.help_texts
        return super().get_form(request, obj, **kwargs)


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = ("contact", "direction", "phone", "started_at", "duration_seconds", "agent")
    list_filter = ("direction",)
    search_fields = ("phone", "summary", "contact__display_name")
    raw_id_fields = ("contact", "ticket", "agent")
    list_select_related = ("contact", "agent__user")


@admin.register(TicketEvent)
class TicketEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Append-only history: reports are computed from these rows."""

    list_display = ("id", "verb", "ticket_id", "contact_id", "actor_kind", "actor", "created_at")
    list_filter = ("verb", "actor_kind")
    search_fields = ("=ticket__id", "verb")
    list_select_related = ("actor__user",)
    show_full_result_count = False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """The outbox; filter by state "failed" for the dead letters."""

    list_display = (
        "id",
        "message_id",
        "channel",
        "state",
        "attempts",
        "next_attempt_at",
        "last_error",
    )
    list_filter = ("state", "channel")
    list_select_related = ("channel",)


@admin.register(ContactMerge)
class ContactMergeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "source", "target", "actor", "reason", "created_at", "undone_at")
    list_select_related = ("source", "target", "actor__user")


# --------------------------------------------------------------------------- SLA


class SlaPolicyForm(forms.ModelForm):
    channel_kind = forms.ChoiceField(
        choices=[("", "Any channel"), *ChannelKind.choices], required=False
    )

    class Meta:
        model = SlaPolicy
        fields = [
            "name",
            "position",
            "is_active",
            "priority",
            "channel_kind",
            "team",
            "first_response_minutes",
            "resolution_minutes",
            "business_hours_only",
            "escalation",
        ]
        help_texts = {
            "escalation": 'e.g. {"at_risk_minutes": 15, "on_at_risk": ["notify_supervisor"], '
            '"on_breach": ["notify_supervisor", "raise_priority", "reassign"]}; missing keys '
            "take the site's defaults.",
        }

    def clean_escalation(self) -> dict[str, Any]:
        return sla.validate_escalation(self.cleaned_data.get("escalation"))

    def _minutes(self, name: str) -> int:
        value = self.cleaned_data.get(name)
        if value is not None and value < 1:
            raise ValidationError("a target must be at least 1 minute")
        return value

    def clean_first_response_minutes(self) -> int:
        return self._minutes("first_response_minutes")

    def clean_resolution_minutes(self) -> int:
        return self._minutes("resolution_minutes")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, resolution = data.get("first_response_minutes"), data.get("resolution_minutes")
        if first and resolution and resolution < first:
            self.add_error(
                "resolution_minutes",
                f"the resolution target ({resolution} min) is shorter than the first-response "
                f"target ({first} min)",
            )
        return data


@admin.register(SlaPolicy)
class SlaPolicyAdmin(admin.ModelAdmin):
    """The first active policy by position whose conditions match a ticket applies."""

    form = SlaPolicyForm
    list_display = (
        "name",
        "position",
        "is_active",
        "priority",
        "channel_kind",
        "team",
        "first_response_minutes",
        "resolution_minutes",
        "business_hours_only",
    )
    list_filter = ("is_active", "priority", "channel_kind", "team", "business_hours_only")
    list_select_related = ("team",)
    search_fields = ("name",)


class BusinessHoursForm(forms.ModelForm):
    class Meta:
        model = BusinessHours
        fields = ["name", "timezone", "week"]
        help_texts = {
            "week": 'e.g. {"mon": [["08:00", "12:00"], ["13:00", "17:00"]], "sat": [], ...}; '
            'ranges never wrap past midnight: a night shift is mon ["22:00", "24:00"] '
            'and tue ["00:00", "06:00"].',
            "timezone": "An IANA name, e.g. Europe/Vilnius.",
        }

    def clean_timezone(self) -> str:
        return sla.validate_timezone(self.cleaned_data.get("timezone"))

    def clean_week(self) -> dict[str, list[list[str]]]:
        return sla.validate_week(self.cleaned_data.get("week"))


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 1


@admin.register(BusinessHours)
class BusinessHoursAdmin(admin.ModelAdmin):
    form = BusinessHoursForm
    list_display = ("name", "timezone", "used_by")
    search_fields = ("name",)
    inlines = (HolidayInline,)

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessHours]:
        return super().get_queryset(request).prefetch_related("teams")

    @admin.display(description="Teams")
    def used_by(self, obj: BusinessHours) -> str:
        return ", ".join(team.name for team in obj.teams.all())


# --------------------------------------------------------------------------- routing rules
# (Imported here rather than in the import block at the top, which other sections share.)

from django import forms as _forms  # noqa: E402
from django.utils import timezone as _timezone  # noqa: E402

from .models import RoutingRule  # noqa: E402
from .routing import RuleError, validate_actions, validate_conditions  # noqa: E402


class RoutingRuleForm(_forms.ModelForm):
    """The same checks as the API: the rule format is documented in tickets.routing."""

    class Meta:
        model = RoutingRule
        fields = ("name", "position", "is_active", "conditions", "actions", "stop")

    def clean_conditions(self) -> dict[str, Any]:
        try:
            return validate_conditions(self.cleaned_data.get("conditions") or {})
        except RuleError as exc:
            raise _forms.ValidationError(exc.message) from exc

    def clean_actions(self) -> dict[str, Any]:
        try:
            return validate_actions(self.cleaned_data.get("actions"))
        except RuleError as exc:
            raise _forms.ValidationError(exc.message) from exc


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    form = RoutingRuleForm
    list_display = ("name", "position", "is_active", "stop", "updated_at")
    list_editable = ("position", "is_active")
    list_filter = ("is_active",)
    search_fields = ("name",)
    ordering = ("position", "id")

    def save_model(self, request: HttpRequest, obj: RoutingRule, form: Any, change: bool) -> None:
        obj.updated_at = _timezone.now()
        super().save_model(request, obj, form, change)


# --------------------------------------------------------------------------- scoring
# Read-only history: versions are immutable and saved from the scoring page (validated there).

from .models import ScoringConfig  # noqa: E402


@admin.register(ScoringConfig)
class ScoringConfigAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("version", "note", "created_by", "created_at")
    list_select_related = ("created_by__user",)
    ordering = ("-version",)
