"""Forms of the agent pages. They parse what a browser sends into Python values; the rules
(which status, which assignee, which tag) stay in `tickets.actions`, which says precisely
what is wrong with a value."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings

from .models import Call, Tier


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("widget", MultipleFileInput())
        super().__init__(*args, **kwargs)

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        if not data:
            return []
        files = data if isinstance(data, list | tuple) else [data]
        return [super(MultipleFileField, self).clean(f, initial) for f in files]


class ReplyForm(forms.Form):
    MODES = (("reply", "Reply"), ("note", "Note"))

    mode = forms.ChoiceField(choices=MODES, initial="reply")
    text = forms.CharField(required=False, strip=False)
    # Empty: leave the status as the reply action decides; otherwise the action validates it.
    status = forms.CharField(required=False, max_length=20)
    attachments = MultipleFileField(required=False)


class StatusForm(forms.Form):
    status = forms.CharField(max_length=20)


class AssignForm(forms.Form):
    # "me", an agent id, or "" to unassign.
    assignee = forms.CharField(required=False, max_length=20)

    def clean_assignee(self) -> str:
        value = self.cleaned_data["assignee"].strip()
        if value not in ("", "me") and not value.isdigit():
            raise forms.ValidationError(f"pick an agent; {value!r} is not one")
        return value


class TransferForm(forms.Form):
    team = forms.IntegerField(required=False, min_value=1)
    agent = forms.IntegerField(required=False, min_value=1)
    note = forms.CharField(required=False, widget=forms.Textarea)


class PriorityForm(forms.Form):
    priority = forms.CharField(max_length=10)
    reason = forms.CharField(required=False, max_length=200)


class TagsForm(forms.Form):
    add = forms.CharField(required=False, max_length=500)
    remove = forms.CharField(required=False, max_length=60)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        data["add_list"] = [t for t in (data.get("add") or "").split(",") if t.strip()]
        data["remove_list"] = [data["remove"]] if data.get("remove") else []
        if not data["add_list"] and not data["remove_list"] and not self.errors:
            raise forms.ValidationError("type a tag to add")
        return data


_DURATION = re.compile(r"^\s*(?:(\d{1,3}):)?(\d{1,4})(?::(\d{1,2}))?\s*$")


def parse_duration(raw: str) -> int:
    """Seconds from what an agent types: "5" (minutes), "4:30" (min:sec), "1:02:03"."""
    match = _DURATION.match(raw or "")
    if not match:
        raise forms.ValidationError(
            f"duration {raw!r} is not minutes (12) or minutes:seconds (4:30)"
        )
    first, second, third = match.groups()
    if first is not None and third is not None:
        return int(first) * 3600 + int(second) * 60 + int(third)
    if first is not None:
        seconds = int(second)
        if seconds >= 60:
            raise forms.ValidationError(f"duration {raw!r}: seconds must be below 60")
        return int(first) * 60 + seconds
    if third is not None:
        seconds = int(third)
        if seconds >= 60:
            raise forms.ValidationError(f"duration {raw!r}: seconds must be below 60")
        return int(second) * 60 + seconds
    return int(second) * 60


class CallForm(forms.Form):
    direction = forms.ChoiceField(choices=Call.Direction.choices)
    duration = forms.CharField(max_length=12, required=False)
    phone = forms.CharField(max_length=32, required=False)
    summary = forms.CharField(required=False, widget=forms.Textarea)

    def clean_duration(self) -> int:
        raw = self.cleaned_data.get("duration") or ""
        return parse_duration(raw) if raw.strip() else 0


def language_choices() -> list[tuple[str, str]]:
    from .templatetags.desk import language_name

    return [("", "Unknown"), *[(c, language_name(c)) for c in settings.HELPDESK_LANGUAGES]]


class ContactForm(forms.Form):
    display_name = forms.CharField(required=False, max_length=200)
    tier = forms.ChoiceField(choices=Tier.choices)
    language = forms.ChoiceField(choices=())
    accounts = forms.CharField(required=False, widget=forms.Textarea)
    notes = forms.CharField(required=False, widget=forms.Textarea)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = language_choices()

    def clean_accounts(self) -> list[str]:
        raw = self.cleaned_data.get("accounts") or ""
        return sorted({a.strip() for a in re.split(r"[\s,;]+", raw) if a.strip()})


class MergeForm(forms.Form):
    contact = forms.IntegerField(
        min_value=1, error_messages={"invalid": "type the number of the other contact"}
    )
    reason = forms.CharField(required=False, max_length=200)


def first_error(form: forms.Form) -> str:
    """One specific sentence for a flash message: "Duration: ... is not minutes"."""
    for name, errors in form.errors.items():
        if name == "__all__":
            return str(errors[0])
        label = form.fields[name].label or name.replace("_", " ").capitalize()
        return f"{label}: {errors[0]}"
    return "the form is not valid"
