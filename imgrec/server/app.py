"""The FastAPI application: request limits, one-line JSON errors, API docs served offline."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgrec.errors import ImageError, ImgrecError, IndexFormatError, IndexNotFoundError
from imgrec.features.embedding import Embedder
from imgrec.server.routes import UploadTooLarge, router
from imgrec.server.state import PathNotFound, ServerState

log = logging.getLogger("imgrec.server")

#: the largest accepted upload, per file (the body may hold ten: five queries, five negatives)
DEFAULT_MAX_UPLOAD = 20 * 1024 * 1024
#: the Swagger UI files /docs needs, served from the swagger-ui-bundle package (no CDN)
DOC_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
              "favicon-32x32.png": "image/png"}


def _status(exc: ImgrecError) -> int:
    if isinstance(exc, PathNotFound):
        return 404
    if isinstance(exc, UploadTooLarge):
        return 413
    if isinstance(exc, ImageError):
        return 422
    if isinstance(exc, IndexNotFoundError | IndexFormatError):
        return 503
    return 400


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


async def _imgrec_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImgrecError)
    return JSONResponse({"detail": _one_line(exc)}, status_code=_status(exc))


async def _invalid(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's validation errors as one line (``k: Input should be ...``), plus the list."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    lines = []
    for e in errors:
        where = ".".join(p for p in e["loc"] if p not in ("body", "query", "path", "form"))
        lines.append(f"{where}: {e['msg']}" if where else e["msg"])
    return JSONResponse({"detail": _one_line("; ".join(lines)), "errors": errors},
                        status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": _one_line(exc.detail)}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


class _CatchAll:
    """Any other exception: a one-line JSON 500, the traceback to the log.

    Handled here rather than by an ``Exception`` handler, which Starlette runs and then
    re-raises, so that uvicorn would log it twice and drop the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if scope["type"] != "http" or started:
                raise
            log.exception("unexpected failure on %s %s", scope.get("method"), scope.get("path"))
            detail = f"internal error ({type(exc).__name__}); the server log has the details"
            await JSONResponse({"detail": detail}, status_code=500)(scope, receive, send)


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes with a JSON 413: unread when its declared
    Content-Length is too large, else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than {self.limit:,} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse({"detail": too_large}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, too_large)  # answered by the JSON error handler
            return message

        await self.app(scope, counted, send)


class _HostCheck:
    """Answer only requests addressed to one of ``hosts`` by name (with any port).

    A server bound to this machine would otherwise answer a web page whose domain was made
    to resolve to 127.0.0.1 (DNS rebinding), and that page could read the gallery.
    """

    def __init__(self, app: ASGIApp, hosts: frozenset[str]) -> None:
        self.app, self.hosts = app, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = Headers(scope=scope).get("host", "")
            name = host.rsplit("]", 1)[0].lstrip("[") if host.startswith("[") else (
                host.rsplit(":", 1)[0])
            if name.lower() not in self.hosts:
                detail = (f"this server answers to {', '.join(sorted(self.hosts))}, not to the "
                          f"Host {host!r}: start it with --host to serve another address")
                await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _docs(app: FastAPI) -> None:
    """Swagger UI at /docs from local files (FastAPI's default loads it from a CDN)."""
    import swagger_ui_bundle

    assets = Path(str(swagger_ui_bundle.swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} - docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None})  # no call to an online validator

    @app.get("/docs/assets/{name}", include_in_schema=False)
    def asset(name: str) -> FileResponse:
        if name not in DOC_ASSETS:
            raise HTTPException(404, f"no such file: {name}")
        return FileResponse(assets / name, media_type=DOC_ASSETS[name],
                            headers={"Cache-Control": "max-age=86400"})


def create_app(index_dir: str | Path, *, embedder: Embedder | None = None,
               max_upload: int = DEFAULT_MAX_UPLOAD, warm: bool = True,
               hosts: Collection[str] | None = None, ray: str | None = None) -> FastAPI:
    """The read-only HTTP API over the index at ``index_dir`` (opened now).

    Args:
        index_dir: the index directory, or a sharded index's folder (searched over Ray:
            the same answers as the unsharded index).
        embedder: the CNN for uploaded images (default: the index's backbone).
        max_upload: the largest accepted upload in bytes, per file.
        warm: load the model in a background thread when the server starts.
        hosts: the host names requests must be addressed to (None: any).
        ray: for a sharded index, the Ray cluster (see :class:`ServerState`).

    Raises:
        IndexNotFoundError, IndexFormatError: the index cannot be opened.

    Example:
        Serve until stopped (skipped as a test: ``uvicorn.run`` never returns):

        >>> import uvicorn
        >>> uvicorn.run(create_app("data/index"), host="127.0.0.1", port=8600)  # doctest: +SKIP
    """
    from imgrec import __version__

    state = ServerState(index_dir, embedder, ray)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            threading.Thread(target=state.warm, name="imgrec-warm", daemon=True).start()
        yield

    body_limit = 10 * max_upload + 1024 * 1024  # five queries and five negatives, and fields
    app = FastAPI(
        title="imgrec", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Find the gallery images most similar to 1-5 query images, by CNN "
                    "content or by colour. Read-only; every error is one line in `detail`.",
        form_limits={"max_files": 10, "max_fields": 64})
    app.state.imgrec = state
    app.state.max_upload = max_upload
    app.add_middleware(_BodyLimit, limit=body_limit)
    if hosts is not None:
        app.add_middleware(_HostCheck, hosts=frozenset(h.lower() for h in hosts))
    app.add_middleware(_CatchAll)  # added last: the outermost
    app.include_router(router)
    app.add_exception_handler(ImgrecError, _imgrec_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(HTTPException, _http_error)
    _docs(app)
    return app
