"""The endpoints: search (uploads and gallery paths), similar, label search, info,
thumbnails and health. Read-only: nothing here writes to an index version or the gallery
(the score calibration and the thumbnails are cached beside the index, as everywhere)."""

from __future__ import annotations

import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.datastructures import UploadFile as StarletteUpload

from imgrec.errors import ImgrecError, QueryError
from imgrec.index.columns import ORIENTATIONS
from imgrec.search.calibration import add_strength
from imgrec.search.filters import API_OPTIONS, Where, from_options
from imgrec.search.methods import MAX_QUERIES
from imgrec.search.query import Stored
from imgrec.server.models import ErrorOut, HealthOut, InfoOut, Method, Metric, SearchOut
from imgrec.server.state import ServerState

#: most hits per list a request may ask for
MAX_K = 1000

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": why} for code, why in (
        (400, "bad request (a path outside the gallery, too many queries, no label match, ...)"),
        (404, "the gallery path is not an indexed image"),
        (413, "an upload is larger than the limit"),
        (422, "an upload is not a usable image, or a parameter is invalid"),
        (503, "the index cannot be opened now"))}


class UploadTooLarge(ImgrecError):
    """An upload exceeds the per-file limit (the API answers 413)."""


router = APIRouter()


def get_state(request: Request) -> ServerState:
    return request.app.state.imgrec


def _max_upload(request: Request) -> int:
    return int(request.app.state.max_upload)


State = Annotated[ServerState, Depends(get_state)]
K = Annotated[int, Query(ge=1, le=MAX_K, description="hits per list")]
Orientation = Literal[ORIENTATIONS]  # type: ignore[valid-type]
_FILTERS = {  # parameter -> description; the same filters as ``imgrec search``'s flags
    "in": "only images under this gallery folder (repeat: any of them)",
    "after": "only images taken on or after this date: 2019, 2019-07 or 2019-07-14 (EXIF "
             "DateTimeOriginal, else the file time)",
    "before": "only images taken before this date",
    "min_size": "only images at least W pixels wide and H high: WxH, e.g. 1920x1080",
    "format": "only images of this format: jpeg, png, heic, avif, dng, ... (repeat: any)",
    "orientation": "only landscape, portrait or square images",
    "has_label": "only images with an ImageNet label matching this text among their top 5"}


def _where(folders: list[str] | None, after: str | None, before: str | None,
           min_size: str | None, formats: list[str] | None, orientation: str | None,
           has_label: str | None) -> Where | None:
    """The filter of a request: :func:`imgrec.search.filters.from_options`, the one the
    command line uses (a bad value is a 400 naming the parameter)."""
    return from_options(folders, after, before, min_size, formats, orientation, has_label,
                        names=API_OPTIONS)


def query_filters(
        folders: Annotated[list[str] | None, Query(alias="in", description=_FILTERS["in"])] = None,
        after: Annotated[str | None, Query(description=_FILTERS["after"])] = None,
        before: Annotated[str | None, Query(description=_FILTERS["before"])] = None,
        min_size: Annotated[str | None, Query(description=_FILTERS["min_size"])] = None,
        formats: Annotated[list[str] | None, Query(alias="format",
                                                   description=_FILTERS["format"])] = None,
        orientation: Annotated[Orientation | None,
                               Query(description=_FILTERS["orientation"])] = None,
        has_label: Annotated[str | None, Query(max_length=200,
                                               description=_FILTERS["has_label"])] = None,
) -> Where | None:
    """The filters of a GET request, as query parameters."""
    return _where(folders, after, before, min_size, formats, orientation, has_label)


def form_filters(
        folders: Annotated[list[str] | None, Form(alias="in", description=_FILTERS["in"])] = None,
        after: Annotated[str | None, Form(description=_FILTERS["after"])] = None,
        before: Annotated[str | None, Form(description=_FILTERS["before"])] = None,
        min_size: Annotated[str | None, Form(description=_FILTERS["min_size"])] = None,
        formats: Annotated[list[str] | None, Form(alias="format",
                                                  description=_FILTERS["format"])] = None,
        orientation: Annotated[Orientation | None,
                               Form(description=_FILTERS["orientation"])] = None,
        has_label: Annotated[str | None, Form(max_length=200,
                                              description=_FILTERS["has_label"])] = None,
) -> Where | None:
    """The filters of ``POST /search``, as form fields."""
    return _where(folders, after, before, min_size, formats, orientation, has_label)


async def _queries(form: FormData, file_key: str, path_key: str, limit: int) -> list[Any]:
    """The uploads and gallery paths of two form fields, in the order they were sent."""
    items = [(key, v) for key, v in form.multi_items()
             if key in (file_key, path_key) and not (isinstance(v, str) and not v.strip())]
    if len(items) > MAX_QUERIES:
        what = "negative examples" if file_key.startswith("negative") else "queries"
        raise QueryError(f"at most {MAX_QUERIES} {what} per search: files in {file_key!r} and "
                         f"paths in {path_key!r} (got {len(items)})")
    out: list[Any] = []
    for _, value in items:  # FastAPI has checked the types: paths are text, images files
        if not isinstance(value, StarletteUpload):
            out.append(Stored(str(value)))
            continue
        name = value.filename or f"upload {len(out) + 1}"
        data = await value.read(limit + 1)
        if len(data) > limit:
            raise UploadTooLarge(f"{name}: larger than the upload limit of {limit:,} bytes")
        buf = io.BytesIO(data)
        buf.name = name  # the query's label, as a file path's name would be
        out.append(buf)
    return out


def _search(state: ServerState, queries: list[Any], negatives: list[Any], **kw: Any) -> dict:
    """The ``--json`` form of a search, each hit with its calibrated strength."""
    idx = state.index()
    for q in queries + negatives:
        if isinstance(q, Stored):
            state.checked(idx, q.path)
    return add_strength(idx.search(queries, negatives=negatives or None, **kw).to_dict(), idx)


@router.post("/search", response_model=SearchOut, response_model_exclude_none=True,
             responses=ERRORS, summary="The gallery images most similar to 1-5 query images")
async def search(
        request: Request, state: State,
        images: Annotated[list[UploadFile] | None, File(
            description="query images (repeat the field; 1-5 queries in all)")] = None,
        paths: Annotated[list[str] | None, Form(
            description="indexed gallery paths as queries (their stored features are used)")] = None,
        method: Annotated[Method, Form()] = "embedding",
        metric: Annotated[Metric, Form(description="for method 'embedding'")] = "cosine",
        k: Annotated[int, Form(ge=1, le=MAX_K, description="hits per list")] = 5,
        pca_components: Annotated[int | None, Form(ge=1, description="for method 'pca'")] = None,
        negative_images: Annotated[list[UploadFile] | None, File(
            description="'less like this' examples (embedding + cosine only)")] = None,
        negative_paths: Annotated[list[str] | None, Form(
            description="'less like this' gallery paths")] = None,
        negative_weight: Annotated[float, Form(ge=0, allow_inf_nan=False)] = 0.5,
        where: Annotated[Where | None, Depends(form_filters)] = None,
) -> dict:
    """Queries are taken in the order their fields appear in the request body; the
    response is what ``imgrec search --json`` prints for the same queries."""
    form = await request.form()
    limit = _max_upload(request)
    queries = await _queries(form, "images", "paths", limit)
    negatives = await _queries(form, "negative_images", "negative_paths", limit)
    if not queries:
        raise QueryError("give 1-5 query images: files in the form field 'images' and/or "
                         "gallery paths in 'paths'")
    return await run_in_threadpool(
        _search, state, queries, negatives, method=method, metric=metric, k=k,
        pca_components=pca_components, negative_weight=negative_weight, where=where)


@router.get("/similar/{path:path}", response_model=SearchOut, response_model_exclude_none=True,
            responses=ERRORS, summary="The gallery images most similar to an indexed one")
def similar(state: State, path: Annotated[str, Path(description="gallery-relative path")],
            k: K = 5, method: Method = "embedding", metric: Metric = "cosine",
            pca_components: Annotated[int | None, Query(ge=1)] = None,
            where: Annotated[Where | None, Depends(query_filters)] = None) -> dict:
    """The same as ``imgrec search @PATH``: the image itself comes first (unless a filter
    leaves it out)."""
    return _search(state, [Stored(path)], [], method=method, metric=metric, k=k,
                   pca_components=pca_components, where=where)


@router.get("/labels/search", response_model=SearchOut, response_model_exclude_none=True,
            responses=ERRORS, summary="Rank the gallery by ImageNet labels matching a word")
def label_search(state: State,
                 q: Annotated[str, Query(max_length=200, description="e.g. dog, lakeside")],
                 k: Annotated[int, Query(ge=1, le=MAX_K)] = 20,
                 where: Annotated[Where | None, Depends(query_filters)] = None) -> dict:
    """The same as ``imgrec search --label Q --json``."""
    from imgrec.insights.labels import search_by_label

    idx = state.index()
    if state.sharded:
        return idx.search_by_label(q, k=k, where=where).to_dict()
    return search_by_label(idx, q, k=k, where=where).to_dict()


@router.get("/info", response_model=InfoOut, responses=ERRORS, summary="The open index")
def info(request: Request, state: State) -> InfoOut:
    idx = state.index()
    if state.sharded:  # the shards' facts, summed
        f = idx.facts()
        return InfoOut(index_dir=str(idx.index_dir), version=idx.version,
                       format_version=f.format_version, model=idx.model,
                       gallery_root=str(idx.root), images=len(idx), skipped=len(f.skipped),
                       embedding_dim=f.embedding_dim, pca_components=f.pca_components,
                       built_at=str(f.built_at or ""), has_labels=idx.has_labels,
                       first_pass=f.first_pass, max_queries=MAX_QUERIES, max_k=MAX_K,
                       max_upload_bytes=_max_upload(request))
    m = idx.manifest
    return InfoOut(index_dir=str(idx.index_dir), version=idx.version,
                   format_version=m.format_version, model=idx.model,
                   gallery_root=str(idx.root), images=len(idx), skipped=m.skipped,
                   embedding_dim=m.embedding_dim, pca_components=m.pca_components,
                   built_at=str(m.built_at or ""), has_labels=idx.has_labels,
                   first_pass=idx.first_pass, max_queries=MAX_QUERIES, max_k=MAX_K,
                   max_upload_bytes=_max_upload(request))


@router.get("/thumbnail/{path:path}", response_class=Response, summary="A JPEG thumbnail",
            responses={200: {"content": {"image/jpeg": {}}}, **ERRORS})
def thumbnail(state: State, path: Annotated[str, Path(description="gallery-relative path")],
              size: Annotated[int, Query(ge=16, le=1024, description="longer side")] = 256
              ) -> Response:
    data = state.thumbnail(state.index(), path, size)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})


@router.get("/healthz", response_model=HealthOut, response_model_exclude_none=True,
            responses=ERRORS, summary="Liveness, and whether the model is loaded")
def healthz(state: State) -> HealthOut:
    idx = state.index()
    return HealthOut(status="ok", model_warm=state.model_warm, model_error=state.model_error,
                     index_version=idx.version, images=len(idx))
