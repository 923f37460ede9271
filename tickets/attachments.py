"""`GET /attachments/<id>/`: an attachment's file, for staff who may see its ticket.

Customers' files are untrusted content on our origin, so the answer never lets a browser run
them: raster images (the photos of broken meters and fallen wires agents look at all day) are
shown inline, everything else is a download (`Content-Disposition: attachment`), always with
`X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy. SVG is not a
raster image: it can carry script, so it downloads too. An attachment on a ticket the agent
may not see is a 404, exactly like one that does not exist.

`GET /files/<token>/<name>`: the same file for someone who is not signed in — a platform
fetching the image an agent attached (WhatsApp and Messenger download a `link`), a customer
clicking the link in an email or the web chat. Nothing under MEDIA_ROOT is public: only a link
we signed for one attachment opens it, and only until it expires.
"""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from .file_links import SALT
from .models import Agent, Attachment
from .queue import can_see
from .views import agent_required

INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


def _file_response(attachment: Attachment) -> FileResponse:
    try:
        handle = attachment.file.open("rb")
    except FileNotFoundError as exc:
        raise Http404("the file of this attachment is missing from storage") from exc
    inline = attachment.content_type in INLINE_TYPES
    response = FileResponse(
        handle,
        as_attachment=not inline,
        filename=attachment.name,
        content_type=attachment.content_type if inline else "application/octet-stream",
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@require_GET
@agent_required
def download(request: HttpRequest, me: Agent, pk: int) -> FileResponse:
    attachment = Attachment.objects.select_related("message__ticket").filter(pk=pk).first()
    if attachment is None or not can_see(me, attachment.message.ticket):
        raise Http404("no such attachment")
    if not attachment.file:
        raise Http404("this attachment has not been downloaded from the platform (yet)")
    response = _file_response(attachment)
    # Private to this signed-in agent: no shared cache may keep a customer's file.
    response["Cache-Control"] = "private, max-age=300"
    return response


@require_GET
def shared(request: HttpRequest, token: str, name: str) -> HttpResponse:
    """A signed link from public_url. The name in the path is only for the reader (and
    the platforms that take a file name from the URL); the token decides."""
    max_age = settings.HELPDESK_ATTACHMENT_LINK_DAYS * 86400
    try:
        pk = signing.loads(token, salt=SALT, max_age=max_age)
    except signing.SignatureExpired:
        return HttpResponse(
            "This link has expired. Ask us to send the file again.",
            status=410,
            content_type="text/plain; charset=utf-8",
        )
    except signing.BadSignature as exc:
        raise Http404("no such file") from exc
    attachment = Attachment.objects.filter(pk=pk).first()
    if attachment is None or not attachment.file:
        raise Http404("no such file")
    response = _file_response(attachment)
    # Whoever holds the link may keep the file; nobody else can get it from a cache by path.
    response["Cache-Control"] = "private, max-age=3600"
    response["Referrer-Policy"] = "no-referrer"
    return response
