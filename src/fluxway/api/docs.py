"""``/docs``: the admin API's Swagger UI, served from the ``swagger-ui-bundle`` package (no CDN: the
gateway often runs where browsers cannot reach one). The page itself is public; every call it makes
needs the master key or an admin key, entered with its Authorize button (the bearer scheme below)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer

from fluxway.errors import GatewayError, openai_error_body

# The admin routes declare it (see api.admin.require_admin), so the spec carries a bearer scheme.
bearer_scheme = HTTPBearer(auto_error=False, description="the master key or an admin key")

_ASSETS = frozenset({"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"})


def _asset_dir() -> Path | None:
    try:
        import swagger_ui_bundle
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    return Path(swagger_ui_bundle.swagger_ui_path)


def install_docs(app: FastAPI, openapi_url: str = "/openapi.json") -> None:
    """Add ``GET /docs`` and its assets under ``/docs/static/`` to ``app``."""
    assets = _asset_dir()

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title="Fluxway admin API",
            swagger_js_url="/docs/static/swagger-ui-bundle.js",
            swagger_css_url="/docs/static/swagger-ui.css",
            swagger_favicon_url="/docs/static/favicon-32x32.png",
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @app.get("/docs/static/{name}", include_in_schema=False, response_model=None)
    async def asset(name: str) -> FileResponse | JSONResponse:
        if assets is None or name not in _ASSETS:
            missing = GatewayError(404, f"no asset {name}", code="not_found")
            return JSONResponse(openai_error_body(missing), status_code=404)
        return FileResponse(assets / name, headers={"cache-control": "public, max-age=86400"})
