"""The dashboard's duplicates: tiers and evidence on Insights, decisions made with its
buttons (remembered where the CLI reads them), the quarantine move, uploads the collection
already holds, and the detail dialog's duplicate group. Real gallery, real CNN."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from test_app import assert_clean, cards, open_insights, paths_of, result_rows, upload, wait_for_build

from imgrec import Index, build_index
from imgrec.insights.duplicates import SAME, find_duplicates
from imgrec.insights.duplicates.check import check_image
from imgrec.insights.duplicates.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture
def dup_index(tmp_path: Path, gallery_maker, app_embedder) -> tuple[Path, Path]:
    """A gallery (3 photos x 4 variants) and index this test may decide on and change."""
    gallery = gallery_maker(tmp_path / "gallery")
    index_dir = tmp_path / "index"
    build_index(gallery, index_dir, embedder=app_embedder, workers=0)
    return gallery, index_dir


def shown_groups(at) -> list[list[str]]:
    """The members of every group card on the page, keeper first."""
    out: list[list[str]] = []
    for kind, _, _, path in cards(at):
        if kind == "keeper":
            out.append([path])
        elif kind == "duplicate":
            out[-1].append(path)
    return out


def want_groups(index_dir: Path, decisions: bool = True) -> list[list[str]]:
    rep = find_duplicates(Index.open(index_dir), decisions=decisions)
    return [[m.path for m in g.members] for g in rep.groups]


def group_id(index_dir: Path, keeper: str) -> int:
    """The id of the first group ``keeper`` keeps (a keeper of a same-picture group may also
    keep a group of similar shots)."""
    return next(g.id for g in find_duplicates(Index.open(index_dir)).groups
                if g.keeper.path == keeper)


def messages(at) -> str:
    return " ".join(s.value for s in [*at.success, *at.error])


def texts(at) -> str:
    return " ".join(m.value for m in [*at.markdown, *at.caption])


def test_groups_show_their_tier_evidence_and_keeper_reason(make_app, tiny_index: Path) -> None:
    at = open_insights(make_app, tiny_index, "duplicates")
    rep = find_duplicates(Index.open(tiny_index))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Groups"] == "3" and metrics["Same picture"] == "3"
    assert metrics["Exact copies"] == "0" and metrics["Similar shots"] == "0"
    body = texts(at)
    for g in rep.groups:
        assert g.tier == SAME and f"**Group {g.id}** · same picture · 4 images" in body
        assert f"★ Keeper `{g.keeper.path}`: {g.reason}" in body and "most detail" in g.reason
        for m in g.members[1:]:
            assert m.evidence.startswith("same picture:")
            assert m.evidence in [c.value for c in at.main.caption]
            assert at.button(key=f"dup-keep-{m.row}") and at.button(key=f"dup-distinct-{m.row}")
        assert at.button(key=f"dup-split-g{g.id}")
    assert shown_groups(at) == want_groups(tiny_index)
    at.segmented_control(key="dup_tier").set_value("similar shots").run()
    assert_clean(at)
    assert shown_groups(at) == [] and "No group of this tier" in texts(at)


def test_decisions_from_the_buttons_survive_a_reload_and_a_rebuild(make_app, dup_index,
                                                                  app_embedder) -> None:
    gallery, index_dir = dup_index
    at = open_insights(make_app, index_dir, "duplicates")
    raw = want_groups(index_dir)
    assert shown_groups(at) == raw and not Store(index_dir).decisions()[0]
    idx = Index.open(index_dir)
    coffee = next(g for g in raw if g[0].startswith("coffee/"))
    keeper, out, chosen = coffee[0], coffee[1], coffee[2]
    at.button(key=f"dup-distinct-{idx.row_of(out)}").click().run()
    assert_clean(at)
    assert f"Remembered: `{out}` is not a duplicate of `{keeper}`." in messages(at)
    now = shown_groups(at)
    assert now == want_groups(index_dir) and now != raw
    assert not any(keeper in g and out in g for g in now)  # at once, and as the CLI sees it
    at.button(key=f"dup-keep-{idx.row_of(chosen)}").click().run()
    assert_clean(at)
    assert f"Remembered: `{chosen}` is its group's keeper." in messages(at)
    assert all(g[0] == chosen for g in shown_groups(at) if chosen in g)
    assert f"★ Keeper `{chosen}`: chosen by you" in texts(at)
    assert at.button(key=f"dup-unkeep-g{group_id(index_dir, chosen)}")
    decided = shown_groups(at)
    assert decided == want_groups(index_dir)
    assert any(e.label == "Your decisions (2)" for e in at.expander)
    assert f"`{chosen}` is its group's keeper" in texts(at)
    a, b = sorted([out, keeper])
    assert f"`{a}` and `{b}` are not duplicates" in texts(at)

    at.toggle(key="dup_raw").set_value(True).run()  # the raw result, decisions kept
    assert_clean(at)
    assert shown_groups(at) == raw and at.button(key=f"dup-keep-{idx.row_of(out)}").disabled
    assert "2 remembered decisions not applied" in texts(at)
    at.toggle(key="dup_raw").set_value(False).run()
    assert shown_groups(at) == decided

    assert shown_groups(open_insights(make_app, index_dir, "duplicates")) == decided  # reload
    before = Index.open(index_dir).version
    build_index(gallery, index_dir, embedder=app_embedder, workers=0, full=True)
    assert Index.open(index_dir).version != before
    at = open_insights(make_app, index_dir, "duplicates")  # a rebuilt index, a new session
    assert shown_groups(at) == decided

    at.button(key=f"dup-unkeep-g{group_id(index_dir, chosen)}").click().run()  # clear it
    assert_clean(at)
    assert f"Forgotten: `{chosen}` is its group's keeper." in messages(at)
    assert any(e.label == "Your decisions (1)" for e in at.expander)
    at.button(key="dup-forget-0").click().run()  # the pair, from the list
    assert_clean(at)
    assert "are not duplicates." in messages(at)
    assert not [e for e in at.expander if e.label.startswith("Your decisions")]
    assert shown_groups(at) == raw and Store(index_dir).decisions() == (set(), {})


def test_not_duplicates_for_a_whole_group(make_app, dup_index) -> None:
    _, index_dir = dup_index
    at = open_insights(make_app, index_dir, "duplicates")
    rocket = next(g for g in shown_groups(at) if g[0].startswith("rocket/"))
    at.button(key=f"dup-split-g{group_id(index_dir, rocket[0])}").click().run()
    assert_clean(at)
    assert "none of the 4 images of the group duplicates another (6 pairs)" in messages(at)
    assert not any(p.startswith("rocket/") for g in shown_groups(at) for p in g)
    assert {m.label: m.value for m in at.metric}["Groups"] == "2"
    assert len(Store(index_dir).decisions()[0]) == 6


def test_quarantine_is_a_dry_run_until_confirmed_and_can_be_undone(make_app, dup_index,
                                                                  tmp_path: Path) -> None:
    gallery, index_dir = dup_index
    at = open_insights(make_app, index_dir, "duplicates")
    rep = find_duplicates(Index.open(index_dir))
    moving = [m.path for g in rep.groups for m in g.members[1:]]
    assert len(moving) == 9
    assert "**Dry run:** would move **9** files" in texts(at)
    assert at.code[0].value.splitlines() == moving
    assert at.button(key="dup_move").disabled  # nothing moves without the confirmation
    before = {p: (gallery / p).read_bytes() for p in moving}
    at.text_input(key="dup_move_dest").set_value(str(gallery / "q")).run()
    assert "lies inside the gallery" in " ".join(w.value for w in at.warning)
    assert at.checkbox(key="dup_move_confirm").disabled
    dest = tmp_path / "quarantine"
    at.text_input(key="dup_move_dest").set_value(str(dest)).run()
    at.checkbox(key="dup_move_confirm").check().run()
    assert not at.button(key="dup_move").disabled and all((gallery / p).is_file() for p in moving)
    at.button(key="dup_move").click().run()
    assert_clean(at)
    assert all(not (gallery / p).exists() and (dest / p).is_file() for p in moving)
    manifest = next(dest.glob("imgrec-undo-*.json"))
    assert [f["path"] for f in json.loads(manifest.read_text())["files"]] == moving
    wait_for_build(at, index_dir)
    assert len(Index.open(index_dir)) == 3  # the index followed the gallery
    assert f"imgrec duplicates --undo {manifest}" in " ".join(s.value for s in at.success)
    at.button(key="dup_undo").click().run()
    assert_clean(at)
    assert "Restored 9 files" in " ".join(s.value for s in at.success)
    assert {p: (gallery / p).read_bytes() for p in moving} == before
    wait_for_build(at, index_dir)
    assert len(Index.open(index_dir)) == 12


def _mirrored(data: bytes) -> bytes:
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(buf, "PNG")
    return buf.getvalue()


def test_search_says_which_uploads_the_collection_holds(make_app, tiny_index: Path,
                                                       gallery_bytes, app_demo) -> None:
    idx = Index.open(tiny_index)
    exact = gallery_bytes("coffee/coffee_color.jpg")
    mirror = _mirrored(gallery_bytes("chelsea/chelsea_color.jpg"))
    new = (app_demo.root / app_demo.families["astronaut"][0]).read_bytes()
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", exact), ("cat.png", mirror), ("new.jpg", new)])
    assert_clean(at)
    infos = [i.value for i in at.info]
    assert ("`cup.jpg` is already in the collection as `coffee/coffee_color.jpg` "
            "(exact, score 1.000; same bytes).") in infos
    v = check_image(idx, "cat.png", mirror)
    assert v.tier == SAME and v.match.startswith("chelsea/") and "mirrored" in v.evidence
    assert (f"`cat.png` is already in the collection as `{v.match}` (same picture, score "
            f"{v.score:.3f}; {v.evidence}).") in infos
    assert check_image(idx, "new.jpg", new).tier is None
    assert not any("new.jpg" in i for i in infos) and len(result_rows(at)) == 4


def test_detail_dialog_names_the_duplicate_group(make_app, tiny_index: Path, gallery_bytes,
                                                 monkeypatch) -> None:
    rep = find_duplicates(Index.open(tiny_index))
    at = open_insights(make_app, tiny_index, "duplicates")
    g = rep.groups[1]
    member = g.members[2]
    at.button(key=f"dup-open-{member.row}").click().run()
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"**Path:** `{member.path}`" in text
    t = Index.open(tiny_index).recipe.duplicate_threshold
    assert rep.threshold == t == 0.78  # the v3 recipe's calibrated threshold
    assert (f"**Duplicates:** same picture (cosine ≥ {t:g}), 4 images, keeper `{g.keeper.path}`; "
            f"{member.evidence}") in text
    others = [m for m in g.members if m.path != member.path]
    assert [b.help for b in at.button if (b.key or "").startswith("detail_dup_")] == \
        [m.path for m in others]
    assert at.button(key="detail_dup_0").label == "★ keeper"
    at.button(key="detail_dup_0").click().run()  # to the keeper's own detail
    assert_clean(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"**Path:** `{g.keeper.path}`" in text and "the suggested keeper" in text

    import imgrec.app.known as known

    monkeypatch.setattr(known, "AUTO_GROUPS", 5)  # a "large" gallery: groups on a click
    at = make_app(tiny_index)
    at.run()
    upload(at, [("cup.jpg", gallery_bytes("coffee/coffee_color.jpg"))])
    first = paths_of(result_rows(at)[0])[0]
    at.button(key="detail-q0-1").click().run()
    assert "**Duplicates:** not looked for yet" in " ".join(m.value for m in at.markdown)
    at.button(key="detail_dups").click().run()
    assert_clean(at)
    want = next(x for x in rep.groups if first in [m.path for m in x.members])
    assert f"same picture (cosine ≥ {t:g}), {len(want.members)} images" in \
        " ".join(m.value for m in at.markdown)
