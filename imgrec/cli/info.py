"""The ``info`` command: what an index holds, or (``--verify``) whether its files agree."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from imgrec.cli.commands import index_dir as _index_dir
from imgrec.cli.parser import EXIT_USAGE

EXIT_OK = 0


def _verify(args: argparse.Namespace) -> int:
    from imgrec.index.verify import read_manifest, verify
    from imgrec.index.writer import current_version

    index_dir = _index_dir(args.index)
    problems = verify(index_dir)
    if args.json:
        print(json.dumps({"index_dir": str(index_dir), "ok": not problems,
                          "problems": problems}, indent=2))
        return EXIT_USAGE if problems else EXIT_OK
    if problems:
        for problem in problems:
            print(f"problem: {problem}")
        print(f"imgrec: the index at {index_dir} failed verification ({len(problems)} "
              f"problem{'s' if len(problems) > 1 else ''}); rebuild it with "
              f"`imgrec index GALLERY --index {index_dir} --full`", file=sys.stderr)
        return EXIT_USAGE
    version = current_version(index_dir)
    assert version is not None
    m = read_manifest(version)
    print(f"ok: {index_dir} version {m['version']}: {m['count']} images, {m['skipped']} "
          f"skipped; manifest, catalog, matrices and PCA agree (no NaN/inf, unit embeddings)")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from imgrec.build.lock import holder
    from imgrec.index.index import Index

    if args.verify:
        return _verify(args)
    idx = Index.open(_index_dir(args.index))
    entries = idx.entries()
    size = sum(f.stat().st_size for f in idx.dir.iterdir() if f.is_file())
    formats = Counter(e.format for e in entries if e.row is not None)
    running = holder(idx.index_dir)
    info = {**idx.manifest, "index_dir": str(idx.index_dir), "size_bytes": size,
            "formats": dict(sorted(formats.items())),
            "skipped_files": [{"path": p, "reason": r} for p, r in idx.skipped()],
            "build_running": running, "first_pass": idx.first_pass}
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    m = idx.manifest
    print(f"index      {idx.index_dir} (version {m['version']}, format {m['format_version']}, "
          f"{size / 1e6:.1f} MB)")
    print(f"gallery    {m['gallery_root']}")
    print(f"model      {m['model']} ({m['embedding_dim']}-d embeddings, "
          f"{m['histogram_dim']}-bin histograms, {m['pca_components']} PCA components)")
    print(f"images     {m['count']} indexed, {m['skipped']} skipped; formats: "
          + ", ".join(f"{k} {v}" for k, v in sorted(formats.items())))
    print(f"built      {m['built_at']}" + (f" in {m['build_seconds']:.1f} s"
                                           if m.get("build_seconds") else ""))
    print("search     exact; first pass over the " + (
        "float16 copy of the embeddings, candidates rescored from float32"
        if idx.first_pass == "float16" else
        "float32 embeddings (no float16 copy: rebuild with --full to add one)"))
    if running:
        print(f"building   a build is running now (pid {running.get('pid')}, "
              f"started {running.get('started')})")
    for p, r in idx.skipped():
        print(f"skipped    {p}: {r}")
    return EXIT_OK


COMMANDS = {"info": _info}
