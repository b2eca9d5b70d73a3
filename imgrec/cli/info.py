"""The ``info`` command: what an index holds, or (``--verify``) whether its files agree."""

from __future__ import annotations

import argparse
import json
import sys

from imgrec.cli.commands import index_dir as _index_dir
from imgrec.cli.parser import EXIT_USAGE

EXIT_OK = 0


def _verify(args: argparse.Namespace) -> int:
    from imgrec.index.index import Index
    from imgrec.index.verify import verify

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
    f = Index.open(index_dir).facts()
    print(f"ok: {index_dir} version {f.version}: {f.count} images, {len(f.skipped)} "
          f"skipped; manifest, catalog, matrices and PCA agree (no NaN/inf, unit embeddings)")
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from imgrec.build.lock import holder
    from imgrec.features.recipe import describe
    from imgrec.index.index import Index
    from imgrec.shard.cli import info, is_sharded

    if is_sharded(_index_dir(args.index)):
        return info(_index_dir(args.index), args.json, args.verify)
    if args.verify:
        return _verify(args)
    idx = Index.open(_index_dir(args.index))
    f = idx.facts()
    running = holder(idx.index_dir)
    recipe, hint = describe(idx.model, idx.manifest.recipe)
    if args.json:
        print(json.dumps({**idx.manifest.to_json(), **f.to_json(), "build_running": running,
                          "recipe": idx.manifest.recipe or "v1", "rebuild_hint": hint},
                         indent=2))
        return EXIT_OK
    print(f"index      {f.index_dir} (version {f.version}, format {f.format_version}, "
          f"{f.size_bytes / 1e6:.1f} MB)")
    print(f"gallery    {f.gallery}")
    print(f"model      {f.model} ({f.embedding_dim}-d embeddings, "
          f"{f.histogram_dim}-bin histograms, {f.pca_components} PCA components)")
    print(f"images     {f.count} indexed, {len(f.skipped)} skipped; formats: "
          + ", ".join(f"{k} {v}" for k, v in sorted(f.formats.items())))
    print(f"recipe     {recipe}")
    if hint:
        print(f"rebuild    {hint}")
    if f.decoders:
        print("decoded    " + ", ".join(f"{k} {v}" for k, v in sorted(f.decoders.items())))
    print(f"built      {f.built_at}" + (f" in {f.build_seconds:.1f} s"
                                         if f.build_seconds else ""))
    print("search     exact; first pass over the " + (
        "float16 copy of the embeddings, candidates rescored from float32"
        if f.first_pass == "float16" else
        "float32 embeddings (no float16 copy: rebuild with --full to add one)"))
    if running:
        print(f"building   a build is running now (pid {running.get('pid')}, "
              f"started {running.get('started')})")
    for p, r in f.skipped:
        print(f"skipped    {p}: {r}")
    return EXIT_OK


COMMANDS = {"info": _info}
