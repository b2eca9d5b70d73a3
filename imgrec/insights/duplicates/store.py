"""duplicates.sqlite beside the index (outside its version folders): signals and decisions.

Both tables are keyed by content hash (SHA-256 of the file bytes), so they survive
rebuilds, renames and moves:

* ``signals``: the confirmation signal and detail of every image that was a candidate
  (a cache: recomputed from the gallery file when missing);
* ``decisions``: pairs marked "not duplicates" (``distinct``, stored with the smaller hash
  first) and chosen keepers (``keeper``: one row per hash chosen).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np

from imgrec.insights.duplicates.signals import Signal

FILE = "duplicates.sqlite"
SCHEMA = """
DROP TABLE IF EXISTS signals_v2;
DROP TABLE IF EXISTS signals_v3;
CREATE TABLE IF NOT EXISTS signals_v4 (  -- bump the suffix when signals.py changes
    sha256 TEXT PRIMARY KEY, dct BLOB, thumb BLOB, th INTEGER, tw INTEGER, detail REAL,
    quality REAL, white REAL, black REAL, spread REAL, chroma REAL);
CREATE TABLE IF NOT EXISTS distinct_pairs (
    a TEXT, b TEXT, at REAL, PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS keepers (sha256 TEXT PRIMARY KEY, at REAL);
"""


class Store:
    """The duplicates database of one index folder (created on first write).

    Example:
        >>> sha_a, sha_b = [meta[3] for meta in idx.image_meta()[:2]]
        >>> st = Store(idx.index_dir)
        >>> st.mark_distinct(sha_a, sha_b)
        1
        >>> st.undo(sha_a, sha_b)
        1
    """

    def __init__(self, index_dir: str | Path) -> None:
        self.path = Path(index_dir) / FILE

    def _con(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.executescript(SCHEMA)
        return con

    # ---- signals -------------------------------------------------------------------
    def signals(self, hashes: list[str]) -> dict[str, Signal]:
        """The cached signals among ``hashes``."""
        if not self.path.is_file() or not hashes:
            return {}
        out: dict[str, Signal] = {}
        con = self._con()
        try:
            for s in range(0, len(hashes), 900):
                part = hashes[s:s + 900]
                for sha, dct, thumb, th, tw, det, quality, *clip in con.execute(
                        f"SELECT * FROM signals_v4 WHERE sha256 IN ({','.join('?' * len(part))})",
                        part):
                    out[sha] = Signal(np.frombuffer(dct, np.float32).reshape(8, 8).copy(),
                                      np.frombuffer(thumb, np.float16).reshape(th, tw).astype(
                                          np.float32),
                                      float(det), None if quality is None else float(quality),
                                      None if None in clip else tuple(float(x) for x in clip))
        finally:
            con.close()
        return out

    def put_signals(self, found: dict[str, Signal]) -> None:
        """Cache signals by content hash."""
        if not found:
            return
        con = self._con()
        try:
            rows = [(h, s.dct.astype(np.float32).tobytes(), s.thumb.astype(np.float16).tobytes(),
                     s.thumb.shape[0], s.thumb.shape[1], s.detail, s.quality,
                     *(s.clipped or (None,) * 4)) for h, s in found.items()]
            con.executemany(f"INSERT OR REPLACE INTO signals_v4 VALUES "
                            f"({', '.join('?' * len(rows[0]))})", rows)
            con.commit()
        finally:
            con.close()

    # ---- decisions -----------------------------------------------------------------
    def mark_distinct(self, *hashes: str) -> int:
        """Mark every pair among ``hashes`` "not duplicates"; returns the pairs stored."""
        hs = sorted(set(hashes))
        pairs = [(a, b, time.time()) for k, a in enumerate(hs) for b in hs[k + 1:]]
        con = self._con()
        try:
            con.executemany("INSERT OR REPLACE INTO distinct_pairs VALUES (?, ?, ?)", pairs)
            con.commit()
        finally:
            con.close()
        return len(pairs)

    def choose_keeper(self, sha256: str) -> None:
        """Remember the image with this content as the keeper of whatever group holds it."""
        con = self._con()
        try:
            con.execute("INSERT OR REPLACE INTO keepers VALUES (?, ?)", (sha256, time.time()))
            con.commit()
        finally:
            con.close()

    def undo(self, *hashes: str) -> int:
        """Forget every decision involving ``hashes`` (distinct pairs and keeper choices)."""
        if not self.path.is_file():
            return 0
        con = self._con()
        try:
            n = 0
            for h in set(hashes):
                n += con.execute("DELETE FROM distinct_pairs WHERE a = ? OR b = ?",
                                 (h, h)).rowcount
                n += con.execute("DELETE FROM keepers WHERE sha256 = ?", (h,)).rowcount
            con.commit()
            return n
        finally:
            con.close()

    def forget_pair(self, a: str, b: str) -> int:
        """Forget that the pair (a, b) is "not duplicates"; returns the rows forgotten."""
        return self._delete("DELETE FROM distinct_pairs WHERE a = ? AND b = ?",
                            tuple(sorted((a, b))))

    def forget_keeper(self, sha256: str) -> int:
        """Forget that this content was chosen as a keeper; returns the rows forgotten."""
        return self._delete("DELETE FROM keepers WHERE sha256 = ?", (sha256,))

    def _delete(self, sql: str, args: tuple) -> int:
        if not self.path.is_file():
            return 0
        con = self._con()
        try:
            n = con.execute(sql, args).rowcount
            con.commit()
            return n
        finally:
            con.close()

    def decisions_made(self) -> tuple[dict[tuple[str, str], float], dict[str, float]]:
        """Like :meth:`decisions`, with when each was made: (pair -> time, hash -> time)."""
        if not self.path.is_file():
            return {}, {}
        con = self._con()
        try:
            pairs = {(a, b): at for a, b, at in con.execute("SELECT a, b, at FROM distinct_pairs")}
            keep = dict(con.execute("SELECT sha256, at FROM keepers"))
        finally:
            con.close()
        return pairs, keep

    def stamp(self) -> tuple[int, float]:
        """Changes whenever a decision is made or undone (for a cache key)."""
        pairs, keep = self.decisions()
        return len(pairs) + len(keep), self.path.stat().st_mtime if self.path.is_file() else 0.0

    def decisions(self) -> tuple[set[tuple[str, str]], dict[str, float]]:
        """(distinct pairs, smaller hash first; chosen keeper hash -> time chosen)."""
        if not self.path.is_file():
            return set(), {}
        con = self._con()
        try:
            pairs = {(a, b) for a, b in con.execute("SELECT a, b FROM distinct_pairs")}
            keep = dict(con.execute("SELECT sha256, at FROM keepers"))
        finally:
            con.close()
        return pairs, keep
