"""Authentication: the user, their Agent row and their team ids in one query per request.

Every page and API call needs all three (who may see what). Through the ORM that was a
select_related query (its compilation ~1 ms of CPU) plus a second query for the teams; here
it is one SQL statement written once per process. Nothing is cached between requests: a
deleted token, a deactivated user or a changed team shows on the very next request, in
every process.
"""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.db import connections

from .models import Agent, Team
from .rawrows import Columns


class _UserReader:
    """SELECT [token,] user, agent (LEFT JOIN) and the agent's team ids (in Team order)."""

    def __init__(self, *, with_token: bool) -> None:
        from rest_framework.authtoken.models import Token

        user_model = get_user_model()
        connection = connections["default"]
        quote = connection.ops.quote_name
        self.token = Columns(Token, "k") if with_token else None
        self.user = Columns(user_model, "u")
        self.agent = Columns(Agent, "a")
        agent_user = Agent._meta.get_field("user")
        teams = Agent._meta.get_field("teams")
        through = quote(teams.remote_field.through._meta.db_table)  # type: ignore[union-attr]
        team_col = quote(teams.m2m_reverse_name())  # type: ignore[attr-defined]
        agent_col = quote(teams.m2m_column_name())  # type: ignore[attr-defined]
        # In Team's order (by name), as agent.teams.values_list("id") gives them.
        team_ids = (
            f"ARRAY(SELECT at.{team_col} FROM {through} at "  # noqa: S608  (our names)
            f"JOIN {quote(Team._meta.db_table)} t ON t.id = at.{team_col} "
            f"WHERE at.{agent_col} = a.id ORDER BY t.name, t.id)"
        )
        columns = [self.user.sql, self.agent.sql, team_ids]
        joins = (
            f"{quote(user_model._meta.db_table)} u LEFT JOIN {quote(Agent._meta.db_table)} a "
            f"ON a.{quote(agent_user.column)} = u.{quote(user_model._meta.pk.column)}"  # type: ignore[union-attr]
        )
        if self.token is not None:
            token_user = Token._meta.get_field("user")
            columns.insert(0, self.token.sql)
            self.sql = (
                f"SELECT {', '.join(columns)} FROM {quote(Token._meta.db_table)} k "  # noqa: S608  (our names)
                f"JOIN {joins} ON u.{quote(user_model._meta.pk.column)} = "  # type: ignore[union-attr]
                f"k.{quote(token_user.column)} WHERE k.{quote(Token._meta.pk.column)} = %s"  # type: ignore[union-attr]
            )
            self.token_user = token_user
        else:
            self.sql = (
                f"SELECT {', '.join(columns)} FROM {joins} "  # noqa: S608  (our names)
                f"WHERE u.{quote(user_model._meta.pk.column)} = %s"  # type: ignore[union-attr]
            )
        self.agent_user = agent_user

    def read(self, key: Any) -> tuple[Any, Any] | None:
        """(user, token or None) for the key, with user.agent and agent._team_ids loaded as
        select_related("user__agent") and tickets.queue.team_ids would; None if not found."""
        with connections["default"].cursor() as cursor:
            cursor.execute(self.sql, [key])
            row = cursor.fetchone()
        if row is None:
            return None
        at = 0
        token = None
        if self.token is not None:
            token = self.token.build(row)
            at = self.token.width
        user = self.user.build(row, at)
        at += self.user.width
        agent = None
        if not self.agent.is_null(row, at):
            agent = self.agent.build(row, at)
            self.agent_user.set_cached_value(agent, user)
            agent._team_ids = list(row[at + self.agent.width])  # type: ignore[attr-defined]
        # None cached, as select_related does: user.agent raises DoesNotExist, no query.
        self.agent_user.remote_field.set_cached_value(user, agent)
        if token is not None:
            self.token_user.set_cached_value(token, user)
            self.token_user.remote_field.set_cached_value(user, token)
        return user, token


@functools.cache
def _reader(*, with_token: bool) -> _UserReader:
    return _UserReader(with_token=with_token)


def one_query_available() -> bool:
    # ARRAY(subquery) is PostgreSQL's; the embedded SQLite demo takes the ORM's way.
    return connections["default"].vendor == "postgresql"


def user_by_token(key: str) -> tuple[Any, Any] | None:
    """(user, token) for an API token, or None. See _UserReader.read."""
    return _reader(with_token=True).read(key)


class AgentBackend(ModelBackend):
    """Django's ModelBackend, loading the user's Agent (and team ids) with the user."""

    def get_user(self, user_id: Any) -> Any:
        if one_query_available():
            found = _reader(with_token=False).read(user_id)
            user = found[0] if found is not None else None
        else:
            model = get_user_model()
            user = model._default_manager.select_related("agent").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
