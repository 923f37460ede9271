"""Presence outside the socket: logins and logouts recorded through the actions, the periodic
sweep that takes agents offline when their sockets are gone, and the timings the live client
runs on.

Importing this module connects the login/logout receivers; tickets.live_views (so the URL
conf) and tickets.consumers import it. The receivers are idempotent per process
(dispatch_uid), so importing it from AppConfig.ready as well is safe.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver

from . import actions
from .models import Agent, Presence, PresenceLog

log = logging.getLogger(__name__)


def live_config() -> dict[str, int]:
    """The timings the browser runs on, sent in the socket's hello frame (so the pages need
    no configuration of their own). Seconds, except coalesce_ms."""
    return {
        # The client pings this often; each ping is a heartbeat.
        "ping": int(getattr(settings, "HELPDESK_HEARTBEAT_SECONDS", 25)),
        # No keyboard or mouse this long: the agent goes away (reason "idle").
        "idle": int(getattr(settings, "HELPDESK_IDLE_SECONDS", 600)),
        "viewing_ttl": actions.viewing_ttl(),
        "typing_ttl": actions.typing_ttl(),
    }


def heartbeat_write_seconds() -> float:
    """A socket writes Agent.last_heartbeat_at at most this often, whatever the client sends:
    500 sockets pinging every 25 s is 20 UPDATEs a second, not one per frame."""
    return float(getattr(settings, "HELPDESK_HEARTBEAT_WRITE_SECONDS", 30))


def _agent_of(user: Any) -> Agent | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Agent.objects.select_related("user").filter(user_id=user.pk).first()


@receiver(user_logged_in, dispatch_uid="helpdesk.presence.login")
def record_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing in makes an agent online, and the session is on record for the reports."""
    agent = _agent_of(user)
    if agent is not None:
        actions.do_set_presence(agent, Presence.ONLINE, reason=PresenceLog.Reason.LOGIN)


@receiver(user_logged_out, dispatch_uid="helpdesk.presence.logout")
def record_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signing out makes an agent offline; their open sockets close when they hear it."""
    agent = _agent_of(user)
    if agent is not None:
        actions.do_set_presence(agent, Presence.OFFLINE, reason=PresenceLog.Reason.LOGOUT)


@shared_task(name="tickets.presence.sweep_presence", ignore_result=True)
def sweep_presence() -> int:
    """Periodic (every 30 s): agents whose sockets have been gone longer than the grace
    period go offline, recorded with reason "disconnected"."""
    swept = actions.do_sweep_presence()
    if swept:
        log.info("presence sweep: %d agent(s) offline after losing their connection", swept)
    return swept
