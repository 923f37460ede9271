"""Channels in the admin. Credentials are write-only: the page shows which credentials are
set (their names), never their values, and a replacement is typed in as a JSON object."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from tickets.errors import ActionError

from .models import Channel, InboundEvent

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


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    """The raw inbound store, read-only: a record of what the platforms sent. The replay
    action processes events again (idempotent; the supervisors' page /ops/events/ does the
    same one at a time)."""

    list_display = ("id", "channel", "platform_id", "status", "attempts", "received_at", "error")
    list_filter = ("status", "channel__kind")
    search_fields = ("=id", "platform_id")
    list_select_related = ("channel",)
    show_full_result_count = False
    actions = ("replay",)
    fields = (
        "channel",
        "platform_id",
        "status",
        "attempts",
        "error",
        "result",
        "meta",
        "received_at",
        "next_attempt_at",
        "claimed_at",
        "processed_at",
        "body_text",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[InboundEvent]:
        # Bodies can be megabytes: the list never loads them; one event's page loads its own.
        return super().get_queryset(request).defer("body")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        agent = getattr(request.user, "agent", None)
        return request.user.is_superuser or (agent is not None and agent.is_supervisor)

    @admin.display(description="Body")
    def body_text(self, obj: InboundEvent) -> str:
        from .ops import raw_body  # imported late: ops pulls in the processing machinery

        raw = raw_body(obj)
        note = f"\n… ({raw.size} bytes in all)" if raw.truncated else ""
        # format_html escapes the body: a customer's markup is shown, never rendered.
        return format_html('<pre style="white-space: pre-wrap">{}{}</pre>', raw.text, note)

    @admin.action(description="Replay the selected events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[InboundEvent]) -> None:
        from .ops import replay_event  # imported late, as above

        agent = getattr(request.user, "agent", None)
        done, refused = 0, []
        for event_id in queryset.values_list("id", flat=True)[:500]:
            try:
                replay_event(event_id, agent)
            except ActionError as exc:
                refused.append(exc.message)
            else:
                done += 1
        if done:
            self.message_user(request, f"{done} event(s) handed to the workers again.")
        for message in refused[:5]:
            self.message_user(request, message, level=messages.WARNING)
