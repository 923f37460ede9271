"""Service-level clocks: which policy applies to a ticket, where its deadlines fall in its
team's business hours, whether it is at risk or breached, and the validation of the
configuration (policies, weekly schedules, escalation steps).

How the clocks run (decisions, tested in tests/tickets/test_sla.py):

- **Policy.** The first active `SlaPolicy` by position whose priority, channel kind and team
  match (None / "" match anything); when none does, the defaults of
  `settings.HELPDESK_SLA_MINUTES` for the ticket's level, around the clock, with the escalation
  of `settings.HELPDESK_SLA_ESCALATION`. The policy is chosen afresh whenever a clock starts or
  moves (new ticket, reopen, customer waiting again, priority change), so an edited policy
  applies to the next clock, not retroactively.
- **Business time.** A policy with `business_hours_only` counts only the open ranges of the
  ticket team's `BusinessHours`, in that calendar's time zone, skipping its holidays (a holiday
  closes the whole local date). A team without a calendar runs around the clock. Business
  minutes are real elapsed minutes inside open ranges, computed in UTC from local wall times
  with zoneinfo, so a clock is DST-correct: on the spring-forward day a 00:00–24:00 range is
  23 hours long. Several ranges per day are allowed; a range never wraps past midnight (end
  before start is an error): a night shift is written as two ranges, e.g. mon 22:00–24:00 and
  tue 00:00–06:00, which the arithmetic joins into one stretch.
- **Deadlines.** `first_response_due` = creation + first-response target; `resolution_due` =
  start (creation or reopen) + resolution target; `sla_due_at` = the next deadline we owe: the
  earlier of the resolution and, while the customer waits, `waiting_since` + first-response
  target ("next reply time").
- **Pending pauses the resolution clock** (Zendesk's "pausable" time; a utility waiting for a
  customer's meter photo should not breach): while a ticket is pending nothing escalates and
  the pages show the clock as paused; when it leaves pending the remaining business time is
  carried over from the moment it was paused. `settings.HELPDESK_SLA_PAUSE_PENDING = False`
  turns this off (then pending tickets escalate like open ones).
- **At risk** means within the policy's `at_risk_minutes` (wall-clock) of `sla_due_at`;
  **breached** means past it. `sla_state()` is the one definition the pages use and the live
  client mirrors.

Policies and calendars are cached per process and re-read only when the configuration version
in the cache changes (checked at most every `HELPDESK_SLA_CACHE_SECONDS`): computing a due
time costs no query in the steady state.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_migrate, post_save
from django.utils import timezone

from channels_in.models import Channel

from .models import (
    ACTIVE_STATUSES,
    BusinessHours,
    Holiday,
    Priority,
    SlaPolicy,
    Status,
    Team,
    Ticket,
    TicketEvent,
)

log = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STEPS = ("notify_supervisor", "raise_priority", "reassign")
ESCALATION_KEYS = ("at_risk_minutes", "on_at_risk", "on_breach")
# Ticket.escalation_level: which stage of the current deadline has been handled.
NOT_ESCALATED, AT_RISK, BREACHED = 0, 1, 2
MAX_TARGET_MINUTES = 365 * 24 * 60
MAX_AT_RISK_MINUTES = 7 * 24 * 60
DEFAULT_ESCALATION: dict[str, Any] = {
    "at_risk_minutes": 15,
    "on_at_risk": ["notify_supervisor"],
    "on_breach": ["notify_supervisor"],
}
# A calendar that never opens (every day a holiday for years) falls back to the wall clock
# rather than looping forever.
MAX_CALENDAR_DAYS = 3 * 366
VERSION_KEY = "sla:config-version"


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def pauses_when_pending() -> bool:
    return bool(_setting("HELPDESK_SLA_PAUSE_PENDING", True))


def escalating_statuses() -> tuple[str, ...]:
    """The statuses whose clocks run (and escalate)."""
    if pauses_when_pending():
        return (Status.NEW, Status.OPEN)
    return tuple(ACTIVE_STATUSES)


# --------------------------------------------------------------------------- validation


def _parse_hhmm(value: Any, where: str) -> int:
    """Minutes since midnight of "HH:MM" (00:00..24:00)."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValidationError(f'{where}: {value!r} is not a time; write HH:MM, e.g. "08:30"')
    hours, minutes = value[:2], value[3:]
    if not (hours.isdigit() and minutes.isdigit() and hours.isascii() and minutes.isascii()):
        raise ValidationError(f'{where}: {value!r} is not a time; write HH:MM, e.g. "08:30"')
    h, m = int(hours), int(minutes)
    if h > 24 or m > 59 or (h == 24 and m != 0):
        raise ValidationError(f"{where}: {value!r} is not a time of day (00:00 to 24:00)")
    return h * 60 + m


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_week(value: Any) -> dict[str, list[tuple[int, int]]]:
    """{"mon": [["08:00", "17:00"]], ...} as minutes since midnight per weekday, sorted.
    Raises ValidationError listing every problem."""
    if not isinstance(value, dict):
        raise ValidationError(
            'the week must be an object of weekdays, e.g. {"mon": [["08:00", "17:00"]]}'
        )
    errors: list[str] = []
    week: dict[str, list[tuple[int, int]]] = {day: [] for day in WEEKDAYS}
    for key, ranges in value.items():
        if key not in WEEKDAYS:
            errors.append(f"unknown weekday {key!r}; use {', '.join(WEEKDAYS)}")
            continue
        if not isinstance(ranges, list):
            errors.append(f'{key}: expected a list of ranges like [["08:00", "17:00"]]')
            continue
        parsed: list[tuple[int, int]] = []
        for i, pair in enumerate(ranges):
            where = f"{key}[{i}]"
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                errors.append(f'{where}: expected a range ["HH:MM", "HH:MM"], got {pair!r}')
                continue
            try:
                start, end = _parse_hhmm(pair[0], where), _parse_hhmm(pair[1], where)
            except ValidationError as exc:
                errors.extend(exc.messages)
                continue
            if end <= start:
                errors.append(
                    f"{where}: ends at {_hhmm(end)}, not after it starts at {_hhmm(start)}; "
                    "ranges do not wrap past midnight: write a night shift as two ranges "
                    '(e.g. mon ["22:00", "24:00"] and tue ["00:00", "06:00"])'
                )
                continue
            parsed.append((start, end))
        parsed.sort()
        for (s1, e1), (s2, e2) in pairwise(parsed):
            if s2 < e1:
                errors.append(f"{key}: {_hhmm(s1)}–{_hhmm(e1)} overlaps {_hhmm(s2)}–{_hhmm(e2)}")
        week[key] = parsed
    if not errors and not any(week.values()):
        errors.append(
            "the week has no open hours; a team that works around the clock needs no "
            "business hours at all"
        )
    if errors:
        raise ValidationError(errors)
    return week


def validate_week(value: Any) -> dict[str, list[list[str]]]:
    """The week, checked and normalized (every weekday present, ranges sorted, HH:MM)."""
    week = parse_week(value)
    return {day: [[_hhmm(s), _hhmm(e)] for s, e in ranges] for day, ranges in week.items()}


def validate_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("give an IANA time zone name, e.g. Europe/Vilnius")
    name = value.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValidationError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Vilnius"
        ) from exc
    return name


def validate_escalation(value: Any) -> dict[str, Any]:
    """{"at_risk_minutes": 15, "on_at_risk": [...], "on_breach": [...]}, checked. Missing keys
    take the defaults of settings.HELPDESK_SLA_ESCALATION when the policy is used."""
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        raise ValidationError(
            'escalation must be an object like {"at_risk_minutes": 15, '
            '"on_at_risk": ["notify_supervisor"], "on_breach": ["notify_supervisor"]}'
        )
    errors = [
        f"unknown key {key!r}; expected {', '.join(ESCALATION_KEYS)}"
        for key in value
        if key not in ESCALATION_KEYS
    ]
    cleaned: dict[str, Any] = {}
    if "at_risk_minutes" in value:
        minutes = value["at_risk_minutes"]
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            errors.append(f"at_risk_minutes must be a whole number of minutes, not {minutes!r}")
        elif minutes < 0:
            errors.append(f"at_risk_minutes cannot be negative ({minutes})")
        elif minutes > MAX_AT_RISK_MINUTES:
            errors.append(f"at_risk_minutes is at most {MAX_AT_RISK_MINUTES} (a week)")
        else:
            cleaned["at_risk_minutes"] = minutes
    for key in ("on_at_risk", "on_breach"):
        if key not in value:
            continue
        steps = value[key]
        if not isinstance(steps, list):
            errors.append(f"{key} must be a list of steps ({', '.join(STEPS)})")
            continue
        kept: list[str] = []
        for step in steps:
            if step not in STEPS:
                errors.append(
                    f"unknown escalation step {step!r} in {key}; expected {', '.join(STEPS)}"
                )
            elif step not in kept:
                kept.append(step)
        cleaned[key] = kept
    if errors:
        raise ValidationError(errors)
    return cleaned


# --------------------------------------------------------------------------- calendars


def _local_moment(day: date, minute: int, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time. A wall time inside a spring-forward gap maps to
    the same distance after the gap (zoneinfo, fold=0); in the autumn the first occurrence."""
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), minute - 24 * 60
    local = datetime.combine(day, dtime(minute // 60, minute % 60), tzinfo=tz)
    return local.astimezone(UTC)


class Calendar:
    """A weekly schedule with holidays in one time zone; the arithmetic of business time."""

    def __init__(
        self,
        pk: int | None,
        name: str,
        tz: ZoneInfo,
        week: dict[str, list[tuple[int, int]]],
        holidays: frozenset[date] = frozenset(),
    ) -> None:
        self.pk = pk
        self.name = name
        self.tz = tz
        self.week = tuple(tuple(week.get(day, ())) for day in WEEKDAYS)
        self.holidays = holidays
        self._days: dict[date, tuple[tuple[datetime, datetime], ...]] = {}

    @classmethod
    def from_model(cls, hours: BusinessHours, holidays: frozenset[date]) -> Calendar:
        return cls(hours.pk, hours.name, ZoneInfo(hours.timezone), parse_week(hours.week), holidays)

    def __repr__(self) -> str:
        return f"<Calendar {self.name} {self.tz.key}>"

    def _local_date(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def open_ranges(self, day: date) -> tuple[tuple[datetime, datetime], ...]:
        """The open stretches of one local date as UTC instants, sorted and joined."""
        cached = self._days.get(day)
        if cached is not None:
            return cached
        ranges: list[tuple[datetime, datetime]] = []
        if day not in self.holidays:
            for start, end in self.week[day.weekday()]:
                a, b = _local_moment(day, start, self.tz), _local_moment(day, end, self.tz)
                if b <= a:
                    continue  # a range wholly inside a DST gap
                if ranges and a <= ranges[-1][1]:
                    ranges[-1] = (ranges[-1][0], max(b, ranges[-1][1]))
                else:
                    ranges.append((a, b))
        result = tuple(ranges)
        if len(self._days) > 4096:  # a long-lived process walks forward in time
            self._days.clear()
        self._days[day] = result
        return result

    def _never_opens(self) -> bool:
        return not any(self.week)

    def is_open(self, at: datetime) -> bool:
        day = self._local_date(at)
        for d in (day - timedelta(days=1), day):
            for a, b in self.open_ranges(d):
                if a <= at < b:
                    return True
        return False

    def next_open(self, at: datetime) -> datetime | None:
        """`at` itself when open, else when the calendar next opens (None: never)."""
        if self._never_opens():
            return None
        day = self._local_date(at) - timedelta(days=1)
        for _ in range(MAX_CALENDAR_DAYS):
            for a, b in self.open_ranges(day):
                if b > at:
                    return max(a, at)
            day += timedelta(days=1)
        return None

    def add(self, start: datetime, amount: timedelta) -> datetime:
        """The moment `amount` of open time after `start` (before it when negative)."""
        if not amount:
            return start
        if self._never_opens():
            return start + amount
        if amount < timedelta(0):
            return self._subtract(start, -amount)
        remaining = amount
        day = self._local_date(start) - timedelta(days=1)
        for _ in range(MAX_CALENDAR_DAYS):
            for a, b in self.open_ranges(day):
                if b <= start:
                    continue
                a = max(a, start)
                span = b - a
                if remaining <= span:
                    return a + remaining
                remaining -= span
            day += timedelta(days=1)
        log.warning("calendar %s never opens after %s; using the wall clock", self.name, start)
        return start + amount

    def _subtract(self, end: datetime, amount: timedelta) -> datetime:
        remaining = amount
        day = self._local_date(end) + timedelta(days=1)
        for _ in range(MAX_CALENDAR_DAYS):
            for a, b in reversed(self.open_ranges(day)):
                if a >= end:
                    continue
                b = min(b, end)
                span = b - a
                if remaining <= span:
                    return b - remaining
                remaining -= span
            day -= timedelta(days=1)
        log.warning("calendar %s never opens before %s; using the wall clock", self.name, end)
        return end - amount

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Open time between two moments (negative when `end` is before `start`)."""
        if end < start:
            return -self.elapsed(end, start)
        total = timedelta(0)
        day = self._local_date(start) - timedelta(days=1)
        last = self._local_date(end)
        while day <= last:
            for a, b in self.open_ranges(day):
                lo, hi = max(a, start), min(b, end)
                if hi > lo:
                    total += hi - lo
            day += timedelta(days=1)
        return total


def add_time(calendar: Calendar | None, start: datetime, amount: timedelta) -> datetime:
    return calendar.add(start, amount) if calendar is not None else start + amount


def time_between(calendar: Calendar | None, start: datetime, end: datetime) -> timedelta:
    return calendar.elapsed(start, end) if calendar is not None else end - start


# --------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    """An SlaPolicy row (or the settings' default for a level), as the clocks use it."""

    pk: int | None
    name: str
    priority: int | None
    channel_kind: str
    team_id: int | None
    first_response: timedelta
    resolution: timedelta
    business_hours_only: bool
    at_risk: timedelta
    on_at_risk: tuple[str, ...]
    on_breach: tuple[str, ...]

    def matches(self, priority: int, channel_kind: str, team_id: int | None) -> bool:
        return (
            (self.priority is None or self.priority == priority)
            and (not self.channel_kind or self.channel_kind == channel_kind)
            and (self.team_id is None or self.team_id == team_id)
        )

    def steps(self, stage: int) -> tuple[str, ...]:
        return self.on_breach if stage == BREACHED else self.on_at_risk


def _escalation(raw: Any) -> tuple[timedelta, tuple[str, ...], tuple[str, ...]]:
    defaults = {**DEFAULT_ESCALATION, **_setting("HELPDESK_SLA_ESCALATION", {})}
    try:
        cleaned = validate_escalation(raw)
    except ValidationError:
        # Written around the validation (a shell, a raw UPDATE): keep escalating on defaults.
        log.error("invalid SLA escalation %r; using the defaults", raw)
        cleaned = {}
    merged = {**defaults, **cleaned}
    return (
        timedelta(minutes=int(merged["at_risk_minutes"])),
        tuple(s for s in merged["on_at_risk"] if s in STEPS),
        tuple(s for s in merged["on_breach"] if s in STEPS),
    )


def _policy_from_row(row: SlaPolicy) -> Policy:
    at_risk, on_at_risk, on_breach = _escalation(row.escalation)
    return Policy(
        pk=row.pk,
        name=row.name,
        priority=row.priority,
        channel_kind=row.channel_kind,
        team_id=row.team_id,
        first_response=timedelta(minutes=row.first_response_minutes),
        resolution=timedelta(minutes=row.resolution_minutes),
        business_hours_only=row.business_hours_only,
        at_risk=at_risk,
        on_at_risk=on_at_risk,
        on_breach=on_breach,
    )


def default_policy(priority: int) -> Policy:
    label = Priority(priority).label
    first, resolve = settings.HELPDESK_SLA_MINUTES[label]
    at_risk, on_at_risk, on_breach = _escalation({})
    return Policy(
        pk=None,
        name=f"default ({label})",
        priority=priority,
        channel_kind="",
        team_id=None,
        first_response=timedelta(minutes=first),
        resolution=timedelta(minutes=resolve),
        business_hours_only=bool(_setting("HELPDESK_SLA_BUSINESS_HOURS_ONLY", False)),
        at_risk=at_risk,
        on_at_risk=on_at_risk,
        on_breach=on_breach,
    )


# --------------------------------------------------------------------------- the cache


@dataclass
class _Snapshot:
    version: str | None
    policies: tuple[Policy, ...]
    calendars: dict[int, Calendar | None]
    team_calendars: dict[int, int | None]
    channel_kinds: dict[int, str]
    # The transaction whose uncommitted configuration this snapshot read, if any: once that
    # transaction is over (committed, or rolled back as every test is) it is read again.
    marker: object | None = None
    checked_at: float = field(default_factory=time.monotonic)


class _State:
    def __init__(self) -> None:
        self.current: _Snapshot | None = None
        self.dirty: object | None = None


_state = _State()
_UNAVAILABLE = object()


def _outermost_atomic() -> object | None:
    blocks = connection.atomic_blocks
    return blocks[0] if blocks else None


def _read_version() -> Any:
    try:
        return cache.get(VERSION_KEY)
    except Exception:
        # Redis away: keep the policies we have rather than fail an inbound message.
        log.warning("SLA configuration version unreadable; keeping the cached policies")
        return _UNAVAILABLE


def _calendar(hours: BusinessHours, holidays: frozenset[date]) -> Calendar | None:
    try:
        return Calendar.from_model(hours, holidays)
    except (ValidationError, ZoneInfoNotFoundError, ValueError, OSError):
        log.error("business hours %r are invalid; their teams run around the clock", hours.name)
        return None


def _load(version: str | None) -> _Snapshot:
    holidays: dict[int, set[date]] = {}
    for calendar_id, day in Holiday.objects.values_list("calendar_id", "date"):
        holidays.setdefault(calendar_id, set()).add(day)
    dirty = _state.dirty
    return _Snapshot(
        version=version,
        policies=tuple(
            _policy_from_row(row)
            for row in SlaPolicy.objects.filter(is_active=True).order_by("position", "id")
        ),
        calendars={
            hours.pk: _calendar(hours, frozenset(holidays.get(hours.pk, ())))
            for hours in BusinessHours.objects.all()
        },
        team_calendars=dict(Team.objects.values_list("id", "business_hours_id")),
        channel_kinds=dict(Channel.objects.values_list("id", "kind")),
        marker=dirty if dirty is not None and dirty is _outermost_atomic() else None,
    )


def snapshot() -> _Snapshot:
    """The policies and calendars of this process, re-read when the configuration changed."""
    snap = _state.current
    if snap is not None and snap.marker is not None and snap.marker is not _outermost_atomic():
        snap = None
    now = time.monotonic()
    if snap is not None and now - snap.checked_at < _setting("HELPDESK_SLA_CACHE_SECONDS", 5):
        return snap
    version = _read_version()
    if snap is not None and (version is _UNAVAILABLE or version == snap.version):
        snap.checked_at = now
        return snap
    snap = _load(None if version is _UNAVAILABLE else version)
    _state.current = snap
    return snap


def invalidate() -> None:
    """The SLA configuration changed: this process re-reads it now (its own transaction
    sees the change), every other process within HELPDESK_SLA_CACHE_SECONDS of the commit."""
    _state.current = None
    _state.dirty = _outermost_atomic()
    transaction.on_commit(_bump_version)


def _bump_version() -> None:
    try:
        cache.set(VERSION_KEY, uuid.uuid4().hex, timeout=None)
    except Exception:
        log.exception("SLA configuration version not bumped; other processes keep old policies")


def _config_changed(sender: Any, **kwargs: Any) -> None:
    invalidate()


# Queryset .update() skips these signals: code that updates these tables in bulk calls
# invalidate() itself (tickets/api/sla.py does for teams).
for _model in (SlaPolicy, BusinessHours, Holiday, Team):
    post_save.connect(_config_changed, sender=_model, dispatch_uid=f"sla-save-{_model.__name__}")
    post_delete.connect(
        _config_changed, sender=_model, dispatch_uid=f"sla-delete-{_model.__name__}"
    )
# A migrate, or a flush (which truncates without signals, as transactional tests do).
post_migrate.connect(_config_changed, dispatch_uid="sla-migrate")


def _channel_kind(ticket: Ticket) -> str:
    if Ticket.channel.is_cached(ticket):
        return ticket.channel.kind if ticket.channel is not None else ""
    if ticket.channel_id is None:
        return ""
    kinds = snapshot().channel_kinds
    kind = kinds.get(ticket.channel_id)
    if kind is None:  # a channel created after the snapshot was read
        kind = (
            Channel.objects.filter(pk=ticket.channel_id).values_list("kind", flat=True).first()
            or ""
        )
        kinds[ticket.channel_id] = kind
    return kind


def calendar_of(team: Team | int | None) -> Calendar | None:
    """The business hours a team's clocks run in; None: around the clock."""
    if team is None:
        return None
    snap = snapshot()
    # By id, from the snapshot, even given a Team: every caller sees the same configuration
    # (a Team instance may predate a change of its hours).
    team_id = team.pk if isinstance(team, Team) else team
    if team_id not in snap.team_calendars:  # a team created after the snapshot was read
        snap.team_calendars[team_id] = (
            team.business_hours_id
            if isinstance(team, Team)
            else Team.objects.filter(pk=team_id).values_list("business_hours_id", flat=True).first()
        )
    hours_id = snap.team_calendars[team_id]
    if hours_id is None:
        return None
    if hours_id not in snap.calendars:
        hours = BusinessHours.objects.filter(pk=hours_id).first()
        snap.calendars[hours_id] = (
            _calendar(hours, frozenset(hours.holidays.values_list("date", flat=True)))
            if hours is not None
            else None
        )
    return snap.calendars[hours_id]


def select_policy(priority: int, channel_kind: str = "", team_id: int | None = None) -> Policy:
    for policy in snapshot().policies:
        if policy.matches(priority, channel_kind, team_id):
            return policy
    return default_policy(priority)


def policy_for(ticket: Ticket, *, priority: int | None = None) -> Policy:
    """The policy of a ticket (at another level when `priority` is given)."""
    level = ticket.priority if priority is None else priority
    return select_policy(level, _channel_kind(ticket), ticket.team_id)


def clock_of(ticket: Ticket, policy: Policy) -> Calendar | None:
    return calendar_of(ticket.team_id) if policy.business_hours_only else None


def targets(
    priority: int, *, channel_kind: str = "", team_id: int | None = None
) -> tuple[timedelta, timedelta]:
    """(first response, resolution) targets of the policy for this level, channel and team."""
    policy = select_policy(priority, channel_kind, team_id)
    return policy.first_response, policy.resolution


# --------------------------------------------------------------------------- team hours


def in_business_hours(team: Team | int | None, at: datetime | None = None) -> bool:
    """Is the team open at `at` (default now)? A team without business hours always is."""
    calendar = calendar_of(team)
    return True if calendar is None else calendar.is_open(at or timezone.now())


def next_business_moment(team: Team | int | None, at: datetime | None = None) -> datetime | None:
    """`at` when the team is open, else when it opens next."""
    moment = at or timezone.now()
    calendar = calendar_of(team)
    return moment if calendar is None else calendar.next_open(moment)


def add_business_time(team: Team | int | None, start: datetime, amount: timedelta) -> datetime:
    """`start` plus `amount` of the team's business time (wall time without a calendar)."""
    return add_time(calendar_of(team), start, amount)


def business_time_between(team: Team | int | None, start: datetime, end: datetime) -> timedelta:
    return time_between(calendar_of(team), start, end)


# --------------------------------------------------------------------------- due times


def apply_due_times(ticket: Ticket, *, since: datetime | None = None) -> None:
    """Set the first-response and resolution due times from the ticket's policy, counted
    from `since` (creation, or a reopen), and the next deadline. Mutates; the caller saves
    (with SLA_FIELDS)."""
    start = since or ticket.created_at
    policy = policy_for(ticket)
    calendar = clock_of(ticket, policy)
    if ticket.first_response_at is None:
        ticket.first_response_due = add_time(calendar, ticket.created_at, policy.first_response)
    ticket.resolution_due = add_time(calendar, start, policy.resolution)
    _refresh(ticket, policy, calendar)


def reprioritize_due_times(ticket: Ticket, old_priority: int) -> None:
    """Keep the start of each clock, swap the old level's targets for the new level's."""
    old_policy = policy_for(ticket, priority=old_priority)
    policy = policy_for(ticket)
    calendar = clock_of(ticket, policy)
    if ticket.first_response_at is None and ticket.first_response_due is not None:
        ticket.first_response_due = add_time(calendar, ticket.created_at, policy.first_response)
    if ticket.resolution_due is not None:
        # The clock's effective start (a pause moved it) under the old policy's calendar.
        start = add_time(
            clock_of(ticket, old_policy), ticket.resolution_due, -old_policy.resolution
        )
        ticket.resolution_due = add_time(calendar, start, policy.resolution)
    _refresh(ticket, policy, calendar)


def refresh_next_due(ticket: Ticket) -> None:
    """The next deadline we owe the customer: a reply while they wait ("next reply time",
    measured from when they started waiting), and always the resolution. A deadline that
    moves later re-arms escalation (the caller saves `escalation_level` with SLA_FIELDS)."""
    policy = policy_for(ticket)
    _refresh(ticket, policy, clock_of(ticket, policy))


SLA_FIELDS = frozenset({"first_response_due", "resolution_due", "sla_due_at", "escalation_level"})


def _refresh(ticket: Ticket, policy: Policy, calendar: Calendar | None) -> None:
    candidates: list[datetime] = []
    if ticket.resolution_due is not None:
        candidates.append(ticket.resolution_due)
    if ticket.waiting_since is not None:
        candidates.append(add_time(calendar, ticket.waiting_since, policy.first_response))
    if not candidates:
        return
    due = min(candidates)
    if ticket.escalation_level and ticket.sla_due_at is not None and due > ticket.sla_due_at:
        ticket.escalation_level = NOT_ESCALATED
    ticket.sla_due_at = due


def resume_paused(ticket: Ticket, now: datetime) -> None:
    """The ticket leaves pending: give its resolution clock back the business time it was
    paused (the remaining time is counted on from now). Mutates; the caller saves."""
    if not pauses_when_pending() or ticket.resolution_due is None or ticket.pk is None:
        return
    paused_at = (
        TicketEvent.objects.filter(ticket_id=ticket.pk, verb="ticket.status", to_value="pending")
        .order_by("-id")
        .values_list("created_at", flat=True)
        .first()
    )
    if paused_at is None or paused_at >= now:
        return
    policy = policy_for(ticket)
    calendar = clock_of(ticket, policy)
    remaining = time_between(calendar, paused_at, ticket.resolution_due)
    ticket.resolution_due = add_time(calendar, now, remaining)


def deadline_kind(ticket: Ticket) -> str:
    """Which deadline sla_due_at is: "first_response", "next_reply" or "resolution"."""
    if ticket.waiting_since is not None and ticket.sla_due_at != ticket.resolution_due:
        return "first_response" if ticket.first_response_at is None else "next_reply"
    return "resolution"


# --------------------------------------------------------------------------- state, escalation


def escalation_stage(ticket: Ticket, now: datetime, policy: Policy | None = None) -> int:
    """AT_RISK, BREACHED, or NOT_ESCALATED for a ticket whose clock is not running."""
    if ticket.status not in escalating_statuses() or ticket.sla_due_at is None:
        return NOT_ESCALATED
    if ticket.sla_due_at <= now:
        return BREACHED
    policy = policy or policy_for(ticket)
    if ticket.sla_due_at - now <= policy.at_risk:
        return AT_RISK
    return NOT_ESCALATED


def sla_state(ticket: Ticket, now: datetime | None = None) -> str:
    """The one definition of the SLA colour, which the live client mirrors:

    - "" for a ticket that is not active (resolved, closed): no clock;
    - "paused" while pending (when pending pauses the clock);
    - "breached" at or past sla_due_at;
    - "risk" within the policy's at_risk_minutes of sla_due_at (see risk_at);
    - "ok" otherwise.
    """
    if ticket.status not in ACTIVE_STATUSES:
        return ""
    if ticket.status == Status.PENDING and pauses_when_pending():
        return "paused"
    stage = escalation_stage(ticket, now or timezone.now())
    return {BREACHED: "breached", AT_RISK: "risk"}.get(stage, "ok")


def risk_at(ticket: Ticket) -> datetime:
    """When the ticket turns "risk" (sla_due_at minus the policy's at-risk minutes)."""
    return ticket.sla_due_at - policy_for(ticket).at_risk


def escalation_horizon(now: datetime) -> datetime:
    """Nothing due later than this can be at risk under any policy."""
    widest = max(
        [p.at_risk for p in snapshot().policies] + [default_policy(Priority.NORMAL).at_risk]
    )
    return now + widest


def escalation_candidates(now: datetime, priority: int, limit: int) -> Any:
    """Tickets of one level whose clock runs, due within the widest at-risk window, whose
    breach is not handled yet, most overdue first; the caller checks each one's own policy.

    One range scan of the queue's partial index in its own order (priority, sla_due_at):
    the status condition is the index's own predicate, and pending is excluded by a filter
    rather than `status IN (new, open)`, which PostgreSQL would intersect with another
    index and then sort (measured: see tests/tickets/test_sla_escalation.py)."""
    qs = Ticket.objects.filter(
        status__in=ACTIVE_STATUSES,
        priority=priority,
        sla_due_at__lte=escalation_horizon(now),
        escalation_level__lt=BREACHED,
    )
    if pauses_when_pending():
        qs = qs.exclude(status=Status.PENDING)
    return qs.order_by("sla_due_at").only(
        "id", "status", "priority", "channel", "team", "sla_due_at", "escalation_level"
    )[:limit]
