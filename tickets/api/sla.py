"""SLA configuration over the API: `sla-policies` and `business-hours` (with their holidays
and the teams whose clocks they run). Every staff member reads them; admins change them.

Validation is the same as in the admin (tickets.sla.validate_*): an unknown weekday, "25:00",
a range that ends before it starts, an unknown escalation step, negative minutes or an unknown
time zone is a 400 naming the field and the problem, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.routers import SimpleRouter

from channels_in.models import ChannelKind
from tickets import sla
from tickets.errors import Conflict
from tickets.models import BusinessHours, Holiday, Priority, SlaPolicy, Team

from .common import RejectUnknownFieldsMixin
from .config import ConfigViewSet, config_schema

PRIORITY_NAMES = [p.label for p in Priority]
MINUTES_ERRORS = {
    "invalid": "must be a whole number of minutes",
    "min_value": "must be at least {min_value} minute(s); a target cannot be zero or negative",
    "max_value": "must be at most {max_value} minutes (a year)",
}


def _checked(check: Callable[[Any], Any], value: Any) -> Any:
    """Run one of tickets.sla's validators, reporting its messages as a 400."""
    try:
        return check(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from exc


@extend_schema_field({"type": "string", "enum": PRIORITY_NAMES, "nullable": True})
class PriorityLevelField(serializers.ChoiceField):
    """A priority level by name ("urgent"), or null for any level."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault(
            "error_messages",
            {
                "invalid_choice": f"priority must be one of {', '.join(PRIORITY_NAMES)}, "
                "or null for any level; got {input!r}"
            },
        )
        super().__init__(choices=PRIORITY_NAMES, allow_null=True, **kwargs)

    def to_internal_value(self, data: Any) -> int:
        label = super().to_internal_value(data)
        return PRIORITY_NAMES.index(label)

    def to_representation(self, value: Any) -> str | None:
        return None if value is None else Priority(value).label


class SlaPolicySerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """First-response and resolution targets. The first active policy by position whose
    priority, channel kind and team match a ticket applies (null / "" match anything); the
    site's defaults apply when none does."""

    priority = PriorityLevelField(required=False)
    channel_kind = serializers.ChoiceField(
        choices=["", *ChannelKind.values],
        required=False,
        allow_blank=True,
        error_messages={
            "invalid_choice": "channel_kind must be one of "
            + ", ".join(ChannelKind.values)
            + ', or "" for any channel; got {input!r}'
        },
    )
    team = serializers.PrimaryKeyRelatedField(
        queryset=Team.objects.all(),
        allow_null=True,
        required=False,
        error_messages={"does_not_exist": "team {pk_value} does not exist"},
    )
    first_response_minutes = serializers.IntegerField(
        min_value=1, max_value=sla.MAX_TARGET_MINUTES, error_messages=MINUTES_ERRORS
    )
    resolution_minutes = serializers.IntegerField(
        min_value=1, max_value=sla.MAX_TARGET_MINUTES, error_messages=MINUTES_ERRORS
    )
    escalation = serializers.JSONField(
        required=False,
        help_text='{"at_risk_minutes": 15, "on_at_risk": ["notify_supervisor"], '
        '"on_breach": ["notify_supervisor", "raise_priority", "reassign"]}; missing keys '
        "take the site's defaults.",
    )

    class Meta:
        model = SlaPolicy
        fields = [
            "id",
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
        read_only_fields = ["id"]

    def validate_escalation(self, value: Any) -> dict[str, Any]:
        return _checked(sla.validate_escalation, value)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        def current(name: str) -> Any:
            if name in attrs:
                return attrs[name]
            return getattr(self.instance, name, None)

        first, resolution = current("first_response_minutes"), current("resolution_minutes")
        if first is not None and resolution is not None and resolution < first:
            raise serializers.ValidationError(
                {
                    "resolution_minutes": [
                        f"the resolution target ({resolution} min) is shorter than the "
                        f"first-response target ({first} min)"
                    ]
                }
            )
        return attrs


class HolidaySerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A date the calendar is closed all day."""

    class Meta:
        model = Holiday
        fields = ["date", "name"]


class BusinessHoursSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """A weekly schedule in a time zone, with holidays: when the SLA clocks of its teams run
    (for policies with business_hours_only)."""

    week = serializers.JSONField(
        help_text='{"mon": [["08:00", "17:00"]], ..., "sun": []}: open ranges per weekday in '
        "the calendar's time zone; several per day; a range never wraps past midnight "
        '(write a night shift as mon ["22:00", "24:00"] and tue ["00:00", "06:00"]).'
    )
    holidays = HolidaySerializer(
        many=True,
        required=False,
        help_text="Dates the calendar is closed all day; a write replaces the whole list.",
    )
    teams = serializers.PrimaryKeyRelatedField(
        many=True,
        required=False,
        queryset=Team.objects.all(),
        error_messages={"does_not_exist": "team {pk_value} does not exist"},
        help_text="The teams whose SLA clocks run in these hours; a write replaces the list.",
    )

    class Meta:
        model = BusinessHours
        fields = ["id", "name", "timezone", "week", "holidays", "teams"]
        read_only_fields = ["id"]

    def validate_timezone(self, value: Any) -> str:
        return _checked(sla.validate_timezone, value)

    def validate_week(self, value: Any) -> dict[str, list[list[str]]]:
        return _checked(sla.validate_week, value)

    def validate_holidays(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        seen: set[Any] = set()
        for item in items:
            if item["date"] in seen:
                raise serializers.ValidationError(f"{item['date']} is listed twice")
            seen.add(item["date"])
        return items

    def create(self, validated_data: dict[str, Any]) -> BusinessHours:
        holidays = validated_data.pop("holidays", [])
        teams = validated_data.pop("teams", None)
        hours = BusinessHours.objects.create(**validated_data)
        self._save_related(hours, holidays, teams)
        return hours

    def update(self, instance: BusinessHours, validated_data: dict[str, Any]) -> BusinessHours:
        holidays = validated_data.pop("holidays", None)
        teams = validated_data.pop("teams", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        instance.save()
        self._save_related(instance, holidays, teams)
        return instance

    def _save_related(
        self,
        hours: BusinessHours,
        holidays: list[dict[str, Any]] | None,
        teams: list[Team] | None,
    ) -> None:
        if holidays is not None:
            hours.holidays.all().delete()
            Holiday.objects.bulk_create([Holiday(calendar=hours, **item) for item in holidays])
        if teams is not None:
            ids = [team.pk for team in teams]
            Team.objects.filter(business_hours=hours).exclude(pk__in=ids).update(
                business_hours=None
            )
            Team.objects.filter(pk__in=ids).update(business_hours=hours)
        # Bulk writes send no signals: the clocks re-read the calendars after commit.
        sla.invalidate()
        # What the response shows (the prefetch of the request was taken before the write).
        for name in ("holidays", "teams"):
            getattr(hours, "_prefetched_objects_cache", {}).pop(name, None)


@config_schema("SLA policies", SlaPolicySerializer, "admins")
class SlaPolicyViewSet(ConfigViewSet):
    queryset = SlaPolicy.objects.all()
    serializer_class = SlaPolicySerializer
    what = "SLA policy"

    def get_queryset(self) -> QuerySet[SlaPolicy]:
        return SlaPolicy.objects.all()


@config_schema("business hours", BusinessHoursSerializer, "admins")
class BusinessHoursViewSet(ConfigViewSet):
    queryset = BusinessHours.objects.all()
    serializer_class = BusinessHoursSerializer
    what = "business hours"

    def get_queryset(self) -> QuerySet[BusinessHours]:
        return BusinessHours.objects.prefetch_related(
            "holidays", Prefetch("teams", queryset=Team.objects.only("id", "business_hours"))
        )

    def check_deletable(self, hours: BusinessHours) -> None:
        # Deleting them would silently switch these teams' clocks to around the clock.
        names = sorted(hours.teams.values_list("name", flat=True))
        if names:
            raise Conflict(
                f"business hours {hours.name!r} are used by {', '.join(names)}; give those "
                "teams other hours (or none) first"
            )


def register(router: SimpleRouter) -> None:
    router.register("sla-policies", SlaPolicyViewSet, basename="sla-policy")
    router.register("business-hours", BusinessHoursViewSet, basename="business-hours")
