#!/usr/bin/env python
"""Fetch one hub repository at one commit into the Hugging Face cache and write a record of
it (repository, commit, snapshot directory, files and bytes). A local rule: it runs where
``snakemake`` runs, the one place with internet; the jobs then read the snapshot offline.
An interrupted download resumes (the hub library keeps finished files); with the hub
offline (``HF_HUB_OFFLINE=1``) a commit already in the cache is recorded as it is."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from opd.hub import KINDS  # noqa: E402
from opd.io import write_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--kind", choices=KINDS, required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--cache", required=True, help="the Hugging Face hub cache (HF_HUB_CACHE)")
    ap.add_argument("--out", required=True, help="the record (JSON)")
    args = ap.parse_args()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        path = Path(snapshot_download(args.repo, repo_type=args.kind, revision=args.commit, cache_dir=args.cache))
    except LocalEntryNotFoundError as e:
        sys.exit(f"{args.kind} {args.repo} at {args.commit} is not in the hub cache {args.cache}, and the hub "
                 f"cannot be reached from here ({e.__class__.__name__}); run the `download` target where it can "
                 "(a login node): snakemake [the same --configfile/--config] download")
    files = sorted(f for f in path.rglob("*") if f.is_file())
    write_json(args.out, {
        "repo": args.repo, "kind": args.kind, "commit": args.commit, "snapshot": str(path),
        "files": len(files), "bytes": sum(f.stat().st_size for f in files),
    })
    print(f"{args.kind} {args.repo}@{args.commit}: {len(files)} files in {path}")


if __name__ == "__main__":
    main()
