"""The HTTP service and web page: `create_app()` builds the FastAPI app (see app.py)."""

from digitrec.server.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
