"""The console's route handlers, by area: sign-in, pages, review records, exports, health.

:func:`sigshare.hub.web.app.create_app` holds the route table.
"""
