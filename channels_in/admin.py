"""Channels in the admin. Credentials are write-only: the page shows which credentials are
set (their names), never their values, and a replacement is typed in as a JSON object."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import Channel

# What each platform calls its secrets (DESIGN.md, "Channels and how each proves who is
# calling"); shown as a hint next to the replacement field.
EXPECTED_CREDENTIALS: dict[str, tuple[str, ...]] = {
    "telegram": ("bot_token", "secret_token"),
    "whatsapp": ("access_token", "app_secret", "verify_token", "phone_number_id"),
    "messenger": ("page_access_token", "app_secret", "verify_token"),
    "instagram": ("page_access_token", "app_secret", "verify_token"),
    "x": ("consumer_key", "consumer_secret", "access_token", "access_token_secret", "brand_handle"),
    "viber": ("auth_token",),
    "vk": ("access_token", "secret", "confirmation_code", "group_id"),
    "sms": ("account_sid", "auth_token", "from_number"),
    "email": ("inbound_token", "from_address"),
    "widget": ("allowed_origins",),
}


class ChannelForm(forms.ModelForm):
    replace_credentials = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text=(
            "Leave empty to keep the current credentials. To replace them, paste a JSON object "
            'with all of them, e.g. {"bot_token": "…", "secret_token": "…"}. '
            "Values are never shown again."
        ),
    )

    class Meta:
        model = Channel
        # `credentials` itself is never a form field, so its values are never rendered.
        fields = ("name", "kind", "key", "default_team", "is_active", "settings")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A mutable copy, so a form shown again after an error can drop the typed secrets.
        if self.is_bound:
            self.data = self.data.copy()

    def clean_replace_credentials(self) -> dict[str, Any] | None:
        raw = (self.cleaned_data.get("replace_credentials") or "").strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            # Say where, not what: the text is a secret.
            raise forms.ValidationError(
                f"not valid JSON (line {exc.lineno}, column {exc.colno}); nothing was changed"
            ) from exc
        if not isinstance(value, dict):
            raise forms.ValidationError(
                f"must be a JSON object of name: value pairs, not a {type(value).__name__}"
            )
        for name, item in value.items():
            if not name.strip():
                raise forms.ValidationError("a credential name is empty")
            if not isinstance(item, str | int | float | bool | list):
                raise forms.ValidationError(f"credential {name!r} must be text, a number or a list")
        return value

    def save(self, commit: bool = True) -> Channel:
        channel = super().save(commit=False)
        replacement = self.cleaned_data.get("replace_credentials")
        if replacement is not None:
            channel.credentials = replacement
        if commit:
            channel.save()
            self.save_m2m()
        return channel


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ("name", "kind", "key", "default_team", "is_active", "credential_names")
    list_filter = ("kind", "is_active")
    search_fields = ("name", "key")
    list_select_related = ("default_team",)
    readonly_fields = ("credential_names", "expected_credentials", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "kind", "key", "default_team", "is_active")}),
        (
            "Credentials (write-only)",
            {"fields": ("credential_names", "expected_credentials", "replace_credentials")},
        ),
        ("Settings", {"fields": ("settings", "created_at")}),
    )

    @admin.display(description="Credentials set")
    def credential_names(self, obj: Channel) -> str:
        names = sorted((obj.credentials or {}).keys()) if obj and obj.pk else []
        return ", ".join(names) if names else "none"

    @admin.display(description="This platform uses")
    def expected_credentials(self, obj: Channel) -> str:
        return ", ".join(EXPECTED_CREDENTIALS.get(obj.kind, ())) if obj and obj.kind else "–"

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {**super().get_changeform_initial_data(request), "replace_credentials": ""}

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> Any:
        # A form re-shown after an error must not carry the typed secrets back.
        form = context.get("adminform").form if context.get("adminform") else None
        if form is not None and form.is_bound and "replace_credentials" in form.data:
            form.data["replace_credentials"] = ""
        return super().render_change_form(request, context, add, change, form_url, obj)
