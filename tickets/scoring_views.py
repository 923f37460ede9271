"""The scoring page: the priority dictionary and weights, their versions, and "score this
text". Admins edit and restore; supervisors read and preview; agents and non-agents get 403.

One URL (`scoring/`): GET shows the newest version (or `?version=N`); POST carries an
`action`: `save` and `restore` write through `tickets.actions` and redirect (PRG); `preview`
changes nothing and renders the result. The dictionary is edited as JSON: the shape is
documented in `tickets.priority`, and a malformed or invalid document is refused with every
problem listed and the text kept, nothing saved.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from . import actions
from .errors import ActionError
from .forms import first_error
from .models import Agent, ScoringConfig, Tier
from .priority import (
    ConfigError,
    compile_config,
    current_config,
    default_config,
    preview,
)
from .views import agent_required

HISTORY_ROWS = 50
# A dictionary many times the default's size still fits; beyond this it is a mistake.
MAX_EDITOR_CHARS = 2_000_000
MAX_FOLLOWERS = 10**10


class PreviewForm(forms.Form):
    text = forms.CharField(strip=False, widget=forms.Textarea)
    tier = forms.ChoiceField(choices=Tier.choices, initial=Tier.STANDARD)
    followers = forms.IntegerField(min_value=0, max_value=MAX_FOLLOWERS, required=False)
    verified = forms.BooleanField(required=False)
    public = forms.BooleanField(required=False)
    use_draft = forms.BooleanField(required=False)
    draft = forms.CharField(required=False, strip=False, widget=forms.HiddenInput)

    def clean_text(self) -> str:
        text = self.cleaned_data["text"].replace("\x00", "")
        if not text.strip():
            raise forms.ValidationError("type a message to score")
        limit = settings.HELPDESK_MAX_MESSAGE_CHARS
        if len(text) > limit:
            raise forms.ValidationError(f"{len(text)} characters; the limit is {limit}")
        return text


def parse_config_text(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The editor's JSON as data, or the errors that say exactly what is wrong and where."""
    if len(text) > MAX_EDITOR_CHARS:
        return None, [f"the configuration is {len(text)} characters; at most {MAX_EDITOR_CHARS}"]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"]
    except RecursionError:
        return None, ["not valid JSON: nested too deeply"]
    try:
        compile_config(data)
    except ConfigError as exc:
        return None, exc.errors
    return data, []


def _history() -> QuerySet[ScoringConfig]:
    return ScoringConfig.objects.select_related("created_by__user").order_by("-version")[
        :HISTORY_ROWS
    ]


def _page(
    request: HttpRequest,
    me: Agent,
    *,
    editor: str | None = None,
    errors: list[str] | None = None,
    note: str = "",
    form: PreviewForm | None = None,
    result: dict[str, Any] | None = None,
    preview_errors: list[str] | None = None,
    status: int = 200,
) -> HttpResponse:
    history = list(_history())
    newest = history[0] if history else None
    shown = newest
    raw_version = request.GET.get("version", "")
    if raw_version:
        shown = None
        if raw_version.isdigit() and len(raw_version) <= 9:
            shown = (
                ScoringConfig.objects.select_related("created_by__user")
                .filter(version=int(raw_version))
                .first()
            )
        if shown is None:
            messages.error(request, f"scoring version {raw_version!r} does not exist")
            shown = newest
    if editor is None:
        data = shown.data if shown is not None else default_config()
        editor = json.dumps(data, ensure_ascii=False, indent=2)
    context = {
        "me": me,
        "can_edit": me.is_admin,
        "history": history,
        "newest": newest,
        "shown": shown,
        "viewing_old": shown is not None and newest is not None and shown.pk != newest.pk,
        "editor": editor,
        "errors": errors or [],
        "note": note,
        "form": form or PreviewForm(initial={"tier": Tier.STANDARD}),
        "result": result,
        "preview_errors": preview_errors or [],
        "in_force": current_config().version,
    }
    return render(request, "tickets/scoring.html", context, status=status)


@agent_required
def scoring(request: HttpRequest, me: Agent) -> HttpResponse:
    if not me.is_supervisor:
        return render(
            request,
            "403.html",
            {"reason": "only supervisors and admins may open the scoring page"},
            status=403,
        )
    if request.method == "GET":
        return _page(request, me)
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "GET, POST"})
    action = request.POST.get("action", "")
    if action == "preview":
        return _preview(request, me)
    if action in ("save", "restore"):
        if not me.is_admin:
            return render(
                request,
                "403.html",
                {"reason": "only admins may change the scoring configuration"},
                status=403,
            )
        return _save(request, me) if action == "save" else _restore(request, me)
    messages.error(request, f"unknown action {action[:40]!r}")
    return redirect("scoring")


def _save(request: HttpRequest, me: Agent) -> HttpResponse:
    text = request.POST.get("data", "")
    note = request.POST.get("note", "")[:200]
    data, errors = parse_config_text(text)
    if data is None:
        return _page(request, me, editor=text, errors=errors, note=note, status=400)
    try:
        config = actions.do_save_scoring_config(data, actor=me, note=note)
    except ActionError as exc:
        return _page(request, me, editor=text, errors=[exc.message], note=note, status=exc.status)
    messages.success(
        request, f"Saved as version {config.version}; new messages are scored with it."
    )
    return redirect("scoring")


def _restore(request: HttpRequest, me: Agent) -> HttpResponse:
    raw = request.POST.get("version", "")
    if not (raw.isdigit() and len(raw) <= 9):
        messages.error(request, f"version must be a number; got {raw[:20]!r}")
        return redirect("scoring")
    try:
        config = actions.do_restore_scoring_config(int(raw), actor=me)
    except ActionError as exc:
        messages.error(request, exc.message)
        return redirect("scoring")
    messages.success(request, f"Version {raw} restored as version {config.version}.")
    return redirect("scoring")


def _preview(request: HttpRequest, me: Agent) -> HttpResponse:
    form = PreviewForm(request.POST)
    # The editor's text comes along (see the page's script): unsaved edits survive a preview.
    editor = request.POST.get("draft", "") or None
    if not form.is_valid():
        return _page(
            request, me, editor=editor, form=form, preview_errors=[first_error(form)], status=400
        )
    values = form.cleaned_data
    config = None
    if values["use_draft"]:
        data, errors = parse_config_text(values["draft"] or "")
        if data is None:
            return _page(request, me, editor=editor, errors=errors, form=form, status=400)
        config = compile_config(data)
    result = preview(
        values["text"],
        tier=values["tier"],
        followers=values["followers"] or 0,
        verified=values["verified"],
        is_public=values["public"],
        config=config,
    )
    result["draft"] = config is not None
    return _page(request, me, editor=editor, form=form, result=result)
