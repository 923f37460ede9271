"""Signed, expiring links to the files we send (see tickets.attachments.shared).

Kept apart from the views so the channel edge can build links without importing the pages.
"""

from __future__ import annotations

from urllib.parse import quote

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .models import Attachment

# Its own salt: a token signed for anything else never opens a file.
SALT = "tickets.attachments.public"


def public_url(attachment: Attachment) -> str:
    """An absolute link that opens this attachment's file without signing in, for
    HELPDESK_ATTACHMENT_LINK_DAYS. For files we send out; never put it on an agent page."""
    token = signing.dumps(attachment.pk, salt=SALT, compress=True)
    path = reverse("attachment-public", kwargs={"token": token, "name": quote(attachment.name)})
    return f"{settings.SITE_URL}{path}"
