"""Moving the non-keepers of duplicate groups to a quarantine folder: dry run, move, undo.

A move happens only after an explicit confirmation; everything goes through
:mod:`imgrec.insights.duplicates.actions`, as ``imgrec duplicates --move-to/--undo`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from imgrec.app import state, widgets
from imgrec.app.folders import refused
from imgrec.errors import ImgrecError
from imgrec.index.index import Index
from imgrec.insights.duplicates import EXACT, SAME, TIERS, actions

TIERS_KEY = "dup_move_tiers"  # widget: the tiers moved
DEST_KEY = "dup_move_dest"  # widget: the quarantine folder
CONFIRM_KEY = "dup_move_confirm"  # widget: the confirmation checkbox
MOVED = "dup_moved"  # state: (index folder, undo manifest) of the last move
LISTED = 100  # files the dry run lists (its count covers them all)


def default_folder(root: Path) -> Path:
    """Where the quarantine goes unless the user says otherwise: beside the gallery."""
    return root.parent / f"{root.name}-quarantine"


def destination(text: str, root: Path) -> tuple[Path | None, str | None]:
    """The quarantine folder typed, or why it cannot be used."""
    text = text.strip()
    if not text:
        return None, "Name a quarantine folder."
    dest = Path(text).expanduser()
    if not dest.is_absolute():
        return None, f"{text} is not an absolute path: name the folder in full."
    dest = dest.resolve()
    if dest == root or root in dest.parents:
        return None, f"{dest} lies inside the gallery: choose a folder outside it."
    why = refused(dest)
    return (None, why) if why else (dest, None)


def quarantine_view(idx: Index, rep: Any, raw: bool) -> None:
    """The dry run of moving the non-keepers of the chosen tiers, Move, and Undo."""
    with st.expander("Move the non-keepers to a quarantine folder", icon=":material/move_item:"):
        _undo_box(idx)
        root = Path(idx.root).resolve()
        tiers = st.multiselect("Tiers to move", list(TIERS), default=[EXACT, SAME],
                               key=TIERS_KEY, help="Similar shots are different photos: "
                               "review them before moving any.")
        text = st.text_input("Quarantine folder (outside the gallery)",
                             str(default_folder(root)), key=DEST_KEY)
        dest, why = destination(text, root)
        moves = actions.plan(rep, tiers)
        if why:
            st.warning(why, icon=":material/folder_off:")
        st.markdown(f"**Dry run:** would move **{len(moves)}** file{'s' if len(moves) != 1 else ''}"
                    f" from `{root}` to `{dest or text}`, relative paths kept. Nothing is deleted; "
                    "every file's hash is checked first, and an undo manifest is written.")
        if moves:
            listed = "\n".join(rel for rel, _ in moves[:LISTED])
            more = f"\n… and {len(moves) - LISTED} more" if len(moves) > LISTED else ""
            st.code(listed + more, language=None)
        if raw:
            st.caption("This is the raw result: turn *Raw result* off to move what your "
                       "decisions leave.")
        ok = st.checkbox(f"Yes, move these {len(moves)} files", key=CONFIRM_KEY,
                         disabled=raw or not moves or dest is None)
        if st.button("Move to quarantine", key="dup_move", icon=":material/move_item:",
                     type="primary", disabled=not (ok and moves and dest) or raw):
            _move(idx, root, moves, dest)  # type: ignore[arg-type]


def _move(idx: Index, root: Path, moves: list[tuple[str, str]], dest: Path) -> None:
    try:
        manifest = actions.move(root, moves, dest)
    except (ImgrecError, OSError) as exc:
        st.error(f"Nothing moved: {exc}", icon=":material/error:")
        return
    state.put(MOVED, (str(idx.index_dir), str(manifest), len(moves)))
    state.pop(CONFIRM_KEY)
    widgets.start_build(root, idx.index_dir, "rebuild")  # the index follows the gallery
    st.rerun()


def _undo_box(idx: Index) -> None:
    moved = state.get(MOVED)
    if not moved or moved[0] != str(idx.index_dir):
        return
    _, manifest, count = moved
    st.success(f"Moved {count} files; the index syncs in the background. Undo here or with "
               f"`imgrec duplicates --undo {manifest}`.", icon=":material/check:")
    if st.button("Undo the move", key="dup_undo", icon=":material/undo:"):
        try:
            root, n = actions.undo(Path(manifest))
        except ImgrecError as exc:
            st.error(f"Nothing restored: {exc}", icon=":material/error:")
            return
        state.pop(MOVED)
        widgets.start_build(root, idx.index_dir, "rebuild")
        st.success(f"Restored {n} files into {root} (checked by hash); syncing the index.")
