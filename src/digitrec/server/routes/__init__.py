"""Routers: `api` (/v1/...), `health` (/healthz, /readyz, /metrics), `page` (/ and /static)."""
