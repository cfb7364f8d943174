"""``/healthz``: whether the console can serve, for load balancers and orchestrators."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from sigshare.hub.storage.database import database_reachable
from sigshare.hub.web.console import ConsoleDep


def healthz(console: ConsoleDep) -> Response:
    """No credential, no session, no audit entry: 200 while the database answers, 503
    otherwise."""
    if database_reachable(console.engine):
        return JSONResponse({"status": "ok"})
    return JSONResponse({"status": "unavailable"}, status_code=503)
