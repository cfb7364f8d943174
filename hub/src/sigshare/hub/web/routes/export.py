"""Exports of the review records: the page listing the formats and the download.

A STIX download carries the TLP marking the page's form chose (``?tlp=``, default
:data:`~sigshare.hub.services.exports.DEFAULT_TLP`), as ``sigshare-hub export --tlp`` does.
The export service records each download in the audit log itself.
"""

from __future__ import annotations

import re
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from sigshare.hub.errors import NotFoundError
from sigshare.hub.services import exports
from sigshare.hub.storage import session_scope
from sigshare.hub.web.console import ConsoleDep

EXPORT_FORMATS: dict[str, str] = {
    "csv": "CSV — one row per shared indicator and campaign, for spreadsheets.",
    "json": "JSON — the same records with their review state, for scripts.",
    "stix": "STIX 2.1 bundle — indicators with TLP marking and sightings, for threat-intel tools.",
}
"""The formats offered, with what each is for."""


def export_page(request: Request, console: ConsoleDep) -> Response:
    now = console.clock()
    with session_scope(console.engine) as session:
        viewer = console.viewer(session, request, now)
    context = {
        "section": "export",
        "exports": EXPORT_FORMATS,
        "tlp_levels": exports.TLP_LEVELS,
        "default_tlp": exports.DEFAULT_TLP,
    }
    return console.render(request, "export.html", viewer, context)


def export(
    request: Request, console: ConsoleDep, fmt: str, tlp: str = exports.DEFAULT_TLP
) -> Response:
    """The export as a download (an unknown format is a 404 page, an unknown TLP level a 400
    page)."""
    now = console.clock()
    with session_scope(console.engine) as session:
        viewer = console.viewer(session, request, now)
        if fmt not in EXPORT_FORMATS:
            raise NotFoundError("export format", fmt[:16])
        document = exports.export_document(
            session,
            cast(exports.ExportFormat, fmt),
            now,
            actor=viewer.name,
            # A "+" typed into a URL by hand arrives as a space: amber+strict stays itself.
            tlp=cast(exports.Tlp, tlp[:32].replace(" ", "+")),
        )
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", document.filename) or f"sigshare.{fmt}"
    return Response(
        document.content,
        media_type=document.media_type,
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
