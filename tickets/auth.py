"""Authentication: the user and their Agent row in one query per request."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class AgentBackend(ModelBackend):
    """Django's ModelBackend, loading the user's Agent with the user: every page and API call
    asks for it (who may see what), and a second query per request adds up at queue rates."""

    def get_user(self, user_id: Any) -> Any:
        model = get_user_model()
        user = model._default_manager.select_related("agent").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
