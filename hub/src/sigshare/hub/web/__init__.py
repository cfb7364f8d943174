"""The coordinators' web console (server-rendered pages; see :mod:`.app`)."""

from __future__ import annotations

from sigshare.hub.web.app import create_app

__all__ = ["create_app"]
