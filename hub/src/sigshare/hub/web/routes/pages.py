"""The console's overview pages: the hub at a glance, the overlap heatmaps and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response

from sigshare.hub.domain import RecordType, ReviewStatus
from sigshare.hub.errors import NotFoundError
from sigshare.hub.services import audit, coordinator_views
from sigshare.hub.services.parameters import list_parameters
from sigshare.hub.web import forms, views
from sigshare.hub.web.console import AuditedRead, ConsoleDep, PageView, Viewer
from sigshare.hub.web.heatmap import heatmap_svg
from sigshare.hub.web.routes.export import EXPORT_FORMATS


def overview(request: Request, console: ConsoleDep) -> Response:
    def build(session: Session, viewer: Viewer, now: datetime) -> PageView:
        found = coordinator_views.overview(session, now)
        by_member: dict[str, list[views.SubmissionHealth]] = {p.name: [] for p in found.members}
        for view in found.submissions:
            health = views.submission_health(view)
            by_member.setdefault(health.member, []).append(health)
        context = {
            "section": "overview",
            "members": found.members,
            "by_member": by_member,
            "now": now,
            "kinds": found.kinds,
            "families": found.families,
            "indicator_counts": found.status_counts[RecordType.INDICATOR],
            "campaign_counts": found.status_counts[RecordType.CAMPAIGN],
            "statuses": list(ReviewStatus),
            "exports": EXPORT_FORMATS,
            "flag_label": views.FLAG_LABELS,
            "flag_help": views.FLAG_HELP,
        }
        return PageView("overview.html", context, AuditedRead("web.overview", "*"))

    return console.show(request, build)


def overlaps(request: Request, console: ConsoleDep, kind: str = "") -> Response:
    def build(session: Session, viewer: Viewer, now: datetime) -> PageView:
        kinds = [p.kind for p in list_parameters(session)[0]]
        selected = kind or (kinds[0] if kinds else "")
        context: dict[str, Any] = {"section": "overlaps", "kinds": kinds, "kind": selected}
        if not selected:
            return PageView("overlaps.html", {**context, "matrix": None, "svg": None})
        if selected not in kinds:
            raise NotFoundError("indicator kind", selected[:64])
        matrix = coordinator_views.overlap_matrix(session, selected, now)
        svg = (
            heatmap_svg(matrix.members, matrix.estimate, matrix.stderr, kind=selected)
            if matrix.members
            else None
        )
        return PageView(
            "overlaps.html",
            {**context, "matrix": matrix, "svg": svg},
            AuditedRead("web.overlaps", selected),
        )

    return console.show(request, build)


def audit_log(
    request: Request,
    console: ConsoleDep,
    *,
    actor: str = "",
    action: str = "",
    cursor: str = "",
    size: str = "",
) -> Response:
    def build(session: Session, viewer: Viewer, now: datetime) -> PageView:
        query = forms.audit_query(actor=actor, action=action, cursor=cursor, size=size)
        page = audit.search_audit_log(session, query)
        return PageView(
            "audit.html",
            {"section": "audit", "page": page, "query": forms.audit_link(query), "path": "/audit"},
            AuditedRead("web.audit", "*", {"actor": query.actor, "action": query.action}),
        )

    return console.show(request, build)
