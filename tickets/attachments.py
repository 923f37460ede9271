"""`GET /attachments/<id>/`: an attachment's file, for staff who may see its ticket.

Customers' files are untrusted content on our origin, so the answer never lets a browser run
them: raster images (the photos of broken meters and fallen wires agents look at all day) are
shown inline, everything else is a download (`Content-Disposition: attachment`), always with
`X-Content-Type-Options: nosniff` and a sandboxing Content-Security-Policy. SVG is not a
raster image: it can carry script, so it downloads too. An attachment on a ticket the agent
may not see is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

from django.http import FileResponse, Http404, HttpRequest
from django.views.decorators.http import require_GET

from .models import Agent, Attachment
from .queue import can_see
from .views import agent_required

INLINE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})


@require_GET
@agent_required
def download(request: HttpRequest, me: Agent, pk: int) -> FileResponse:
    attachment = Attachment.objects.select_related("message__ticket").filter(pk=pk).first()
    if attachment is None or not can_see(me, attachment.message.ticket):
        raise Http404("no such attachment")
    if not attachment.file:
        raise Http404("this attachment has not been downloaded from the platform (yet)")
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
    # Private to this signed-in agent: no shared cache may keep a customer's file.
    response["Cache-Control"] = "private, max-age=300"
    return response
