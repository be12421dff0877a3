"""``create_app(registry, tokens)``: the FastAPI application ``packager serve`` runs.

Every error, ours or the framework's (unknown path, wrong method, unreadable body, schema mismatch),
answers in one shape: JSON ``{"error", "message", "hint"}`` under ``/api/``, a readable page elsewhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

from packager.errors import PackagerError, UsageError

SCHEMA_HINT = "see /api/v1/openapi.json"


def create_app(registry: Any, tokens: Iterable[Any] = (), *, read_token: bool = False, require_signatures: bool = False) -> Any:
    """``tokens``: ``Token`` values or token-file lines (a bare secret: full access). ``require_signatures``: the
    registry refuses a push not signed by a key it trusts (SignatureRefused, HTTP 409)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.staticfiles import StaticFiles
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from packager import __version__
    from packager.server.api import build_router, guards, status_of
    from packager.server.tokens import Token, parse_tokens
    from packager.server.ui import HERE, build_ui

    given = [t for t in tokens if t]
    tokens = tuple(t for t in given if isinstance(t, Token)) + tuple(parse_tokens(t for t in given if not isinstance(t, Token)))
    if getattr(registry, "blobs", None) is None:  # the push protocol uploads into a content-addressed blob store
        raise UsageError(
            f"packager serve fronts a catalog with a content-addressed blob store; {type(registry).__name__} keeps no such store",
            "serve a sqlite:// or postgresql:// catalog; an MLflow registry is served by MLflow's own server (PACKAGER_REGISTRY=mlflow:http://…)",
        )
    if require_signatures:
        if not getattr(registry, "supports_trust", False):
            raise UsageError("--require-signatures needs a registry that keeps signatures", "serve a sqlite:// or postgresql:// catalog")
        registry.require_signatures = True
    if read_token and not tokens:
        raise UsageError(
            "--read-token needs --token-file (the tokens readers must present)", "give --token-file FILE with one token per line"
        )
    app = FastAPI(
        title="packager registry",
        version=__version__,
        default_response_class=finite_json_response(),
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.registry = registry
    app.include_router(build_router(registry, tokens, read_token))
    app.include_router(build_ui(registry, guards(tokens, read_token)["read"]))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(PackagerError)
    async def packager_error(request: Request, exc: PackagerError) -> Any:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(request, status, type(exc).__name__, exc.what, exc.hint, headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Any:
        headers = dict(exc.headers or {})
        if exc.status_code == 413:  # FastAPI's limiter, on a body sent without Content-Length that grew past the route's limit
            from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

            from packager.server.api import SIZE_HINT, _size

            limit = request.scope.get(MAX_BODY_SIZE_SCOPE_KEY)
            message = "the request body is over this endpoint's limit" + (f" of {_size(limit)}" if limit else "")
            return error_response(request, 413, "RequestTooLarge", message, SIZE_HINT)
        if exc.status_code == 405:  # every method the path accepts, not only those of the first route that matched it
            headers["Allow"] = ", ".join(sorted(allowed_methods(app, request.scope)))
        return error_response(request, exc.status_code, "UsageError", str(exc.detail), SCHEMA_HINT, headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(request, 422, "UsageError", f"bad request: {where}: {first.get('msg', 'invalid')}", SCHEMA_HINT)

    return app


def error_response(request: Any, status: int, error: str, message: str, hint: str | None, headers: dict | None = None) -> Any:
    from fastapi.responses import HTMLResponse, JSONResponse

    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": error, "message": message, "hint": hint}, status_code=status, headers=headers)
    from html import escape

    text = escape(f"{message}. {hint}" if hint else message)
    body = (
        '<!doctype html><link rel="stylesheet" href="/static/style.css">'
        f'<main><p class="error">{text}</p><p><a href="/">back to the models</a></p></main>'
    )
    return HTMLResponse(body, status_code=status, headers=headers)


def allowed_methods(app: Any, scope: Mapping[str, Any]) -> set[str]:
    """The methods of every route whose path matches (Starlette's own 405 names only the first route's)."""
    from starlette.routing import Match

    def routes(router: Any) -> Iterable[Any]:
        for route in router.routes:
            inner = getattr(route, "original_router", None)  # FastAPI >= 0.16x wraps each included router
            yield from routes(inner) if inner is not None else (route,)

    methods: set[str] = set()
    for route in routes(app.router):
        if getattr(route, "methods", None) and route.matches(scope)[0] != Match.NONE:
            methods |= set(route.methods)
    return methods


def finite_json_response() -> type:
    from fastapi.responses import JSONResponse

    class FiniteJSONResponse(JSONResponse):
        """JSON has no NaN or Infinity: a manifest that records one (say, the validation diff of NaN outputs) is served with null there."""

        def render(self, content: Any) -> bytes:
            try:
                return super().render(content)
            except ValueError:
                return super().render(_finite(content))

    return FiniteJSONResponse


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def read_tokens(path: str | Path | None) -> list[Any]:
    """The token file (``packager.server.tokens``: one token per line, with optional scopes, names= and name=)."""
    from packager.server.tokens import read_token_file

    return read_token_file(path) if path else []
