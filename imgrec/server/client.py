"""A small client of the HTTP API: ``imgrec search --server URL`` sends its queries here."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imgrec.errors import ImgrecError, QueryError


def _parts(queries: Sequence[str | os.PathLike], file_key: str, path_key: str) -> list[tuple]:
    """Multipart parts, in order: ``@path`` names a gallery image, anything else a file."""
    parts = []
    for q in queries:
        text = str(q)
        if text.startswith("@"):
            parts.append((path_key, (None, text[1:].encode())))
            continue
        path = Path(q)
        if not path.is_file():
            raise ImgrecError(f"query image not found: {q}")
        parts.append((file_key, (path.name, path.read_bytes(), "application/octet-stream")))
    return parts


def _filter_params(filters: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(parameter, value)`` pairs of the API's filter parameters (lists repeat)."""
    from imgrec.search.filters import API_OPTIONS

    out: list[tuple[str, str]] = []
    for name, value in (filters or {}).items():
        if name not in API_OPTIONS:
            raise QueryError(f"unknown filter {name!r}; use {', '.join(API_OPTIONS)}")
        values = [value] if isinstance(value, str) else list(value or [])
        out += [(API_OPTIONS[name], str(v)) for v in values if v is not None and str(v)]
    return out


def _detail(response: Any) -> str:
    try:
        return str(response.json()["detail"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} {response.reason_phrase}"


def _call(url: str, method: str, path: str, timeout: float, **kw: Any) -> dict[str, Any]:
    """One request to the server; its JSON, or an ImgrecError saying why not."""
    import httpx

    base = url.rstrip("/")
    # trust_env=False: a proxy set for the internet must not intercept a local server
    with httpx.Client(base_url=base, timeout=timeout, trust_env=False) as client:
        try:
            r = client.request(method, path, **kw)
        except httpx.ConnectError:
            raise ImgrecError(f"no imgrec server answers at {base} (start one with "
                              "`imgrec serve`)") from None
        except httpx.HTTPError as exc:
            raise ImgrecError(f"the server at {base} did not answer: {exc}") from None
    if r.status_code != 200:
        raise ImgrecError(f"server: {_detail(r)}")
    return r.json()


def search_via_server(url: str, queries: Sequence[str | os.PathLike], method: str = "embedding",
                      metric: str = "cosine", k: int = 5, *, pca_components: int | None = None,
                      negatives: Sequence[str | os.PathLike] = (), negative_weight: float = 0.5,
                      label: str | None = None, filters: Mapping[str, Any] | None = None,
                      timeout: float = 120.0) -> dict[str, Any]:
    """Search through a running ``imgrec serve``; returns what ``imgrec search --json`` prints.

    Args:
        url: the server, e.g. ``http://127.0.0.1:8600``.
        queries: image files, or ``@path`` for an indexed gallery image (as on the CLI).
        method, metric, k, pca_components, negatives, negative_weight: as for
            :meth:`imgrec.Index.search` (negatives: files or ``@path``).
        label: instead of queries, rank by the ImageNet labels matching this text.
        filters: the search filters as :func:`imgrec.search.filters.from_options` takes
            them (``folders``, ``after``, ``before``, ``min_size``, ``formats``,
            ``orientation``, ``label``); the server checks them and answers the exact
            top-k among the images that pass.
        timeout: seconds to wait for the answer.

    Raises:
        ImgrecError: no server answers, a query file is missing, or the server refused the
            request (the message is the server's one-line reason).

    Example:
        Against a running ``imgrec serve`` (skipped as a test: no server is listening):

        >>> search_via_server("http://127.0.0.1:8600", ["cat.jpg", "@dogs/rex.jpg"], k=3)
        ...                                                           # doctest: +SKIP
    """
    if label is not None and (queries or negatives):
        raise QueryError("give query images or a label, not both")
    where = _filter_params(filters)
    if label is not None:
        return _call(url, "GET", "/labels/search", timeout,
                     params=[("q", label), ("k", str(k)), *where])
    fields = [("method", method), ("metric", metric), ("k", str(k)),
              ("negative_weight", str(negative_weight))]
    if pca_components is not None:
        fields.append(("pca_components", str(pca_components)))
    parts = (_parts(queries, "images", "paths")
             + _parts(negatives, "negative_images", "negative_paths")
             + [(key, (None, value.encode())) for key, value in fields + where])
    return _call(url, "POST", "/search", timeout, files=parts)


def server_info(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """What ``GET /info`` says of the server's index (``gallery_root``, ``images``, ...)."""
    return _call(url, "GET", "/info", timeout)


def result_from_dict(d: dict[str, Any]):  # -> imgrec.search.results.SearchResult
    """A :class:`~imgrec.SearchResult` from its JSON form (rows unknown: ``row`` is -1)."""
    from imgrec.search.results import Hit, SearchResult

    def hits(hs: list[dict[str, Any]]) -> list[Hit]:
        return [Hit(h["rank"], h["path"], h["score"], h["distance"], -1, h.get("metrics"))
                for h in hs]

    return SearchResult(d["method"], d["metric"], d["k"], [q["query"] for q in d["queries"]],
                        [hits(q["hits"]) for q in d["queries"]], hits(d["combined"]),
                        list(d.get("notes", [])), list(d.get("negatives", [])),
                        d.get("negative_weight"), combined_metric=d.get("combined_metric"))
