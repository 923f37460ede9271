from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


def agent_of(request: Request) -> Any:
    user = request.user
    return getattr(user, "agent", None) if user and user.is_authenticated else None


class IsStaffMember(BasePermission):
    """Any helpdesk agent, supervisor or admin. A user without an Agent row gets 403."""

    message = "this account is not a helpdesk agent"

    def has_permission(self, request: Request, view: Any) -> bool:
        return agent_of(request) is not None


class IsSupervisor(BasePermission):
    message = "only supervisors and admins may do this"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        return agent is not None and agent.is_supervisor


class IsAdminRole(BasePermission):
    message = "only admins may change the configuration"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        return agent is not None and agent.is_admin


class ReadOrAdmin(BasePermission):
    """Agents read configuration (teams, tags, canned responses); admins change it."""

    message = "only admins may change the configuration"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        if agent is None:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return agent.is_admin


class ReadOrSupervisor(BasePermission):
    """Agents read (canned responses); supervisors and admins change them."""

    message = "only supervisors and admins may change this"

    def has_permission(self, request: Request, view: Any) -> bool:
        agent = agent_of(request)
        if agent is None:
            return False
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        return agent.is_supervisor
