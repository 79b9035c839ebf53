"""The caretakers' dashboard, served by the hub: login, county and site pages with live
updates (Server-Sent Events), the JSON API behind them, and the admin actions.

``hub.dashboard.app.routes`` builds the Starlette routes; ``hub.web`` serves them beside
the health check and the booking webhook. This package's ``__init__`` imports nothing,
so that the CLI can hash passwords (``passwords``) without loading the web stack.
"""
