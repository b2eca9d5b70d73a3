"""Typed request and response bodies of the HTTP API (pydantic models, shown at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["embedding", "color", "pca"]
Metric = Literal["cosine", "euclidean", "manhattan", "all"]


class HitOut(BaseModel):
    """One ranked gallery image, as ``imgrec search --json`` prints it."""

    model_config = ConfigDict(extra="allow")  # whatever ``--json`` prints, the API answers

    rank: int = Field(description="1 for the best hit")
    path: str = Field(description="the image's path relative to the gallery root")
    score: float = Field(description="higher is better: cosine, or 1 / (1 + distance)")
    distance: float = Field(description="the metric's raw value (for cosine: 1 - cosine)")
    strength: Literal["strong", "related", "weak", "unrated"] | None = Field(
        None, description="what the score means in this gallery: strong (at least as close "
                          "as its median nearest neighbour), related (down to the 10th "
                          "percentile) or weak; absent on a combined or label ranking")
    percentile: float | None = Field(
        None, description="percent of gallery images whose own best match is at most as "
                          "close as this score")
    metrics: dict[str, float] | None = Field(
        None, description="with metric 'all': the mean cosine, euclidean and manhattan values")


class QueryOut(BaseModel):
    """The hits of one query."""

    query: str = Field(description="the query's label: an upload's file name or a gallery path")
    hits: list[HitOut]


class SearchOut(BaseModel):
    """A search result: one list per query plus a combined ranking (``imgrec search --json``)."""

    model_config = ConfigDict(extra="allow")

    method: str
    metric: str
    k: int
    queries: list[QueryOut]
    combined: list[HitOut] = Field(
        description="mean over the queries (refined by the negatives when there are any)")
    notes: list[str]
    combined_metric: str | None = Field(
        None, description="the combined ranking's metric where it differs: 'refined' with "
                          "negatives (mean cosine to the queries - weight x to the negatives)")
    negatives: list[str] | None = Field(None, description="labels of the negative examples")
    negative_weight: float | None = None


class InfoOut(BaseModel):
    """What the server has open."""

    index_dir: str
    version: str
    format_version: int
    model: str
    gallery_root: str
    images: int = Field(description="indexed images")
    skipped: int = Field(description="gallery files that could not be indexed")
    embedding_dim: int
    pca_components: int
    built_at: str
    has_labels: bool = Field(description="whether /labels/search works on this index")
    first_pass: str
    max_queries: int = Field(description="query images (and negatives) per search, at most")
    max_k: int
    max_upload_bytes: int = Field(description="the largest accepted upload, per file")


class HealthOut(BaseModel):
    """Liveness, and whether the CNN is loaded (a search of an upload is then fast)."""

    status: Literal["ok"]
    model_warm: bool
    model_error: str | None = Field(None, description="why the CNN could not be loaded")
    index_version: str
    images: int


class ErrorOut(BaseModel):
    """Every error response: one line saying what was wrong."""

    detail: str
    errors: list[dict[str, Any]] | None = Field(
        None, description="with 422 for invalid parameters: each problem's loc, msg and type")
