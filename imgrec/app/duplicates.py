"""The Insights page's duplicates view: tiers, evidence, keepers, and decisions made here.

Every button writes through :class:`imgrec.insights.duplicates.decide.Decisions` (what
``imgrec duplicates --distinct/--keep/--forget`` uses), so a decision shows at once (the
report's cache key holds the decisions) and survives reloads and rebuilds.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from imgrec.app import data, state, widgets
from imgrec.app.cache import per_index
from imgrec.app.detail import open_detail, show_if_open
from imgrec.app.formatting import card_label, chunks, duplicates_csv, member_detail
from imgrec.app.insights import duplicate_slider
from imgrec.app.quarantine import quarantine_view
from imgrec.app.state import Key
from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.insights.duplicates import EXACT, SAME, SIMILAR, TIERS
from imgrec.insights.duplicates.decide import KEEPER, Decision, Decisions

GROUPS_SHOWN = 20  # duplicate groups per page (all are in the CSV)
COLS = 5  # member cards per line
MEMBERS_SHOWN = 25  # member cards per group (more are in the CSV; groups rarely are larger)
DECISIONS_SHOWN = 50  # decisions listed (the CLI lists none; --forget takes paths)
RAW = "dup_raw"  # widget: show the raw result (decisions not applied)
TIER = "dup_tier"  # widget: the tier shown
PAGE = "dup_page"  # widget: the page of groups
MESSAGE = "dup_message"  # state: what the last click did, ("success" | "error", text)
TIER_NAMES = {EXACT: "exact copies", SAME: "same picture", SIMILAR: "similar shots"}
TIER_SHORT = {EXACT: "the same bytes", SAME: "the same photograph, confirmed by a second signal",
              SIMILAR: "the same scene or a burst, not confirmed: look before removing any"}
TIER_HELP = {EXACT: "the same bytes",
             SAME: "the same photograph (re-encoded, resized, rotated, mirrored, cropped or "
                   "colour-edited), confirmed by a second signal beside the CNN",
             SIMILAR: "the same scene or a burst, not confirmed as the same picture: look "
                      "before you remove anything"}


@per_index(max_entries=4)
def _hashes(idx: Index) -> dict[str, str]:
    from imgrec.insights.duplicates.core import hashes_by_path

    return hashes_by_path(idx)


def decisions(idx: Index) -> Decisions:
    """The decisions of ``idx`` (its path -> hash table cached per index version)."""
    return Decisions(idx, _hashes(idx))


def _say(kind: str, text: str) -> None:
    state.put(MESSAGE, (kind, text))


def _distinct(idx: Index, paths: list[str]) -> None:
    try:
        n = decisions(idx).distinct(paths)
    except ImgrecError as exc:
        return _say("error", f"Not remembered: {exc}")
    what = (f"`{paths[1]}` is not a duplicate of `{paths[0]}`" if len(paths) == 2 else
            f"none of the {len(paths)} images of the group duplicates another ({n} pairs)")
    _say("success", f"Remembered: {what}.")


def _keep(idx: Index, path: str, group: list[str]) -> None:
    try:
        decisions(idx).keep(path, [p for p in group if p != path])
    except ImgrecError as exc:
        return _say("error", f"Not remembered: {exc}")
    _say("success", f"Remembered: `{path}` is its group's keeper.")


def _forget(idx: Index, d: Decision) -> None:
    decisions(idx).forget_one(d)
    _say("success", f"Forgotten: {describe(d)}.")


def describe(d: Decision) -> str:
    """One decision in words (paths in backticks; content no longer indexed by its hash)."""
    names = [f"`{p}`" if p else f"an image no longer indexed ({h[:12]}…)"
             for p, h in zip(d.paths, d.hashes, strict=True)]
    return (f"{names[0]} is its group's keeper" if d.kind == KEEPER
            else f"{names[0]} and {names[1]} are not duplicates")


def duplicates_view(idx: Index) -> None:
    """Groups by tier with their evidence and keeper's reason; decide, forget, preview moves."""
    st.subheader("Duplicates")
    if data.sharded(idx):
        st.info("Duplicates are not looked for across the shards of a sharded index: run "
                "`imgrec duplicates` on the unsharded index (`imgrec shard split` makes the "
                "shards from it).", icon=":material/info:")
        return
    st.info("imgrec never deletes your files. Mark what is **not a duplicate** or **keep** "
            "another image: decisions are remembered beside the index (by content, so they "
            "survive rebuilds and renames) and `imgrec duplicates` applies them too. Moving "
            "the non-keepers to a quarantine folder is shown as a dry run first and can be "
            "undone.", icon=":material/shield:")
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    lo, default = duplicate_slider(idx)
    held = state.get(Key.DUP_THRESHOLD)
    if isinstance(held, int | float) and held < lo:  # kept from an index of another recipe
        state.put(Key.DUP_THRESHOLD, lo)
    threshold = c1.slider("Near-duplicate threshold (cosine similarity)", lo, 1.0, default,
                          0.01, key=Key.DUP_THRESHOLD, persist_state="session",
                          help="Default: the threshold calibrated for this index's embedding "
                               "recipe.")
    raw = c2.toggle("Raw result", key=RAW, persist_state="session",
                    help="Ignore the decisions (they stay remembered): the groups as found.")
    message = state.pop(MESSAGE)
    if message:
        (st.success if message[0] == "success" else st.error)(message[1])
    rep = data.duplicates(idx, threshold, not raw)
    _metrics(rep)
    d = decisions(idx)
    made = d.stamp()
    n_made = len(made[0]) + len(made[1])
    if raw:
        st.caption(f"The raw result: {n_made} remembered decision{'s' if n_made != 1 else ''} "
                   "not applied. Turn *Raw result* off to decide.")
    elif n_made:
        st.caption(f"{rep.decisions_applied} of your {n_made} decisions apply at this "
                   "threshold.")
    st.download_button("Download groups (CSV)", duplicates_csv(rep).encode(),
                       "imgrec-duplicates.csv", "text/csv", on_click="ignore",
                       icon=":material/download:", key="dup_csv", disabled=not rep.groups)
    groups = _tier_groups(rep)
    if not groups:
        st.caption("No duplicates at this threshold." if not rep.groups else
                   "No group of this tier at this threshold.")
    page = widgets.pager("Groups", len(groups), GROUPS_SHOWN, PAGE)
    chosen = set(made[1])
    for g in groups[page * GROUPS_SHOWN:(page + 1) * GROUPS_SHOWN]:
        group_card(idx, g, raw, chosen)
    decisions_list(idx, d, n_made)
    quarantine_view(idx, rep, raw)
    show_if_open(idx)


def _metrics(rep: Any) -> None:
    c = st.columns(5)
    c[0].metric("Groups", f"{len(rep.groups):,}")
    for col, t in zip(c[1:4], TIERS, strict=True):
        col.metric(TIER_NAMES[t].capitalize(), f"{len(rep.tier(t)):,}", help=TIER_HELP[t])
    c[4].metric("Images to review", f"{rep.redundant:,}")


def _tier_groups(rep: Any) -> list:
    if not rep.groups:
        return []
    counts = {t: len(rep.tier(t)) for t in TIERS}
    tier = st.segmented_control(
        "Tier", ["all", *TIERS], key=TIER, default="all", persist_state="session",
        format_func=lambda t: f"all ({len(rep.groups)})" if t == "all"
        else f"{TIER_NAMES[t]} ({counts[t]})") or "all"
    return rep.groups if tier == "all" else rep.tier(tier)


def group_card(idx: Index, g: Any, raw: bool, chosen: set[str]) -> None:
    """One group: its tier, the keeper's reason, every member's evidence and buttons."""
    paths = [m.path for m in g.members]
    with st.container(border=True, key=f"dup-group-{g.id}"):
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        c1.markdown(f"**Group {g.id}** · {TIER_NAMES.get(g.tier, g.tier)} · "
                    f"{len(g.members)} images · :gray[{TIER_SHORT.get(g.tier, '')}]")
        c2.button("Not duplicates", key=f"dup-split-g{g.id}", icon=":material/call_split:",
                  on_click=_distinct, args=(idx, paths), disabled=raw or g.tier == EXACT,
                  width="stretch", help="Remember that none of these images duplicates another"
                  if g.tier != EXACT else "Exact copies have the same bytes.")
        st.markdown(f"★ Keeper `{g.keeper.path}`: {g.reason}")
        shown = list(enumerate(g.members[:MEMBERS_SHOWN]))
        for line in chunks(shown, COLS):
            for col, (i, m) in zip(st.columns(COLS), line, strict=False):
                with col:
                    _member(idx, g, i, m, raw, chosen, paths)
        if len(g.members) > MEMBERS_SHOWN:
            st.caption(f"and {len(g.members) - MEMBERS_SHOWN} more (all in the CSV)")


def _member(idx: Index, g: Any, i: int, m: Any, raw: bool, chosen: set[str],
            paths: list[str]) -> None:
    widgets.image_card(data.thumbnail(idx, m.path),
                       card_label("keeper" if i == 0 else "duplicate", "★ keeper" if i == 0 else "",
                                  member_detail(m, i == 0), m.path))
    if i > 0:
        st.caption(m.evidence)
    same_bytes = i > 0 and m.sha256 == g.keeper.sha256
    with st.container(horizontal=True, gap="small"):
        st.button("", key=f"dup-open-{m.row}" if i else f"dup-open-g{g.id}",
                  icon=":material/open_in_full:", type="tertiary", on_click=open_detail,
                  args=(m.path,), help="Details of this image")
        if i == 0 and m.sha256 in chosen:
            st.button("Clear", key=f"dup-unkeep-g{g.id}", icon=":material/undo:",
                      type="tertiary", disabled=raw, on_click=_forget,
                      args=(idx, Decision(KEEPER, (m.sha256,), (m.path,))),
                      help="Forget that you chose this keeper")
        elif i > 0:
            st.button("Keep", key=f"dup-keep-{m.row}", icon=":material/star:", type="tertiary",
                      disabled=raw or same_bytes, on_click=_keep, args=(idx, m.path, paths),
                      help="Keep this one instead of the suggested keeper")
            st.button("Not dup.", key=f"dup-distinct-{m.row}",
                      type="tertiary", disabled=raw or same_bytes, on_click=_distinct,
                      args=(idx, [g.keeper.path, m.path]),
                      help="Remember that this image is not a duplicate of the keeper")


def decisions_list(idx: Index, d: Decisions, n_made: int) -> None:
    """The remembered decisions, each with Forget."""
    if not n_made:
        return
    with st.expander(f"Your decisions ({n_made})", icon=":material/history:"):
        listed = d.listed()
        for k, x in enumerate(listed[:DECISIONS_SHOWN]):
            c1, c2 = st.columns([5, 1], vertical_alignment="center")
            c1.markdown(describe(x))
            c2.button("Forget", key=f"dup-forget-{k}", on_click=_forget, args=(idx, x),
                      icon=":material/undo:", type="tertiary")
        if len(listed) > DECISIONS_SHOWN:
            st.caption(f"and {len(listed) - DECISIONS_SHOWN} more: forget them with "
                       "`imgrec duplicates --forget PATH …`")
