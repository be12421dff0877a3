"""``create_app(registry, tokens)``: the FastAPI application ``packager serve`` runs."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from packager.errors import PackagerError, UsageError


def create_app(registry: Any, tokens: Iterable[str] = (), *, read_token: bool = False) -> Any:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    from packager import __version__
    from fastapi.staticfiles import StaticFiles

    from packager.server.api import build_router, guards, status_of
    from packager.server.ui import HERE, build_ui

    tokens = frozenset(t for t in tokens if t)
    if read_token and not tokens:
        raise UsageError("--read-token needs --token-file (the tokens readers must present)", "give --token-file FILE with one token per line")
    app = FastAPI(title="packager registry", version=__version__, openapi_url="/api/v1/openapi.json", docs_url="/api/v1/docs", redoc_url=None)
    app.state.registry = registry
    app.include_router(build_router(registry, tokens, read_token))
    app.include_router(build_ui(registry, guards(tokens, read_token)[0]))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(PackagerError)
    async def packager_error(request: Request, exc: PackagerError) -> Any:
        status = status_of(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if not request.url.path.startswith("/api/"):  # a page: a readable error page, same status
            from fastapi.responses import HTMLResponse
            from html import escape

            body = f'<!doctype html><link rel="stylesheet" href="/static/style.css"><main><p class="error">{escape(exc.one_line())}</p><p><a href="/">back to the models</a></p></main>'
            return HTMLResponse(body, status_code=status, headers=headers)
        return JSONResponse({"error": type(exc).__name__, "message": exc.what, "hint": exc.hint}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return JSONResponse({"error": "UsageError", "message": f"bad request: {where}: {first.get('msg', 'invalid')}", "hint": "see /api/v1/openapi.json"}, status_code=422)

    return app


def read_tokens(path: str | Path | None) -> list[str]:
    """One token per line; blank lines and # comments ignored."""
    if not path:
        return []
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--token-file {path}: no such file", "create it with one token per line")
    tokens = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not tokens:
        raise UsageError(f"--token-file {path} holds no token", "write one token per line")
    return tokens
