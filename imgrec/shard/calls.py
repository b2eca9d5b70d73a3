"""Calling every shard's actor at once: a call to an actor that died is retried once when
Ray has restarted it, a shard's error is raised naming it, and no answer is returned unless
every shard asked answered (never a partial answer)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from imgrec import errors
from imgrec.errors import ImgrecError

RESTART_WAIT = 120.0  # seconds a query waits for a restarted actor


def each(path: Path, shards: Sequence[Any], actors: Sequence[Any], method: str,
         args: Sequence[tuple | None]) -> list[Any]:
    """``method(*args[i])`` on the actor of shard ``i`` (None: that shard is not asked,
    its answer is None), all at once; the answers in shard order.

    Raises:
        ImgrecError: a shard's actor died and did not come back, or a shard answered
            with an error (raised as its own class; the message names the shard when it
            could not be opened).
    """
    import ray
    from ray.exceptions import RayActorError

    refs = [None if x is None else getattr(a, method).remote(*x)
            for a, x in zip(actors, args, strict=True)]
    out: list[Any] = []
    for s, a, x, ref in zip(shards, actors, args, refs, strict=True):
        if x is None:
            out.append(None)
            continue
        try:
            got = ray.get(ref)
        except RayActorError:
            try:
                wait_alive(a)
                got = ray.get(getattr(a, method).remote(*x))
            except RayActorError as exc:
                raise ImgrecError(f"shard {s.name} of {path} is unreachable: its actor died "
                                  f"and did not come back ({type(exc).__name__})") from None
        if "error" in got:
            kind, msg = got["error"]
            cls = getattr(errors, kind, ImgrecError)
            if kind == "IndexFormatError":
                msg = f"shard {s.name} of {path} cannot be opened: {msg}"
            raise cls(msg)
        out.append(got["ok"])
    return out


def wait_alive(actor: Any) -> None:
    """Return once ``actor`` answers (Ray restarts a dead one: up to RESTART_WAIT s)."""
    import ray
    from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError

    deadline = time.monotonic() + RESTART_WAIT
    while True:
        try:
            ray.get(actor.ping.remote(), timeout=max(0.1, deadline - time.monotonic()))
            return
        except (ActorUnavailableError, GetTimeoutError):
            if time.monotonic() >= deadline:
                raise ActorDiedError() from None
            time.sleep(0.2)
