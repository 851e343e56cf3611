"""Synchronise the ModelRunner service to a Hugging Face Space (Docker SDK).

    HF_TOKEN=... python infra/space/sync_space.py --space-id OWNER/NAME [--hub-repo-id ORG/tweetpulse-{task}]
    python infra/space/sync_space.py --stage-only DIR      # build the Space tree, upload nothing

The Space gets the same paths as this repository for everything infra/model-runner.Dockerfile COPYs,
that Dockerfile as its `Dockerfile`, and infra/space/README.md (with the YAML header that makes it a
Docker Space) as its README. One commit replaces the Space's whole tree, deleting files that are no
longer part of the service, so the Space never builds a half-synchronised state.

The Space serves the models pushed to the Hub (``TWEETPULSE_MODEL_SOURCE=hub``; the image defaults to it
on a Space, see the Dockerfile's CMD). ``--hub-repo-id`` (default: the ``TWEETPULSE_HUB_REPO_ID``
environment variable) also sets the Space variables ``TWEETPULSE_HUB_REPO_ID`` and
``TWEETPULSE_MODEL_SOURCE=hub`` (and ``TWEETPULSE_HUB_REVISION`` with ``--hub-revision``) before the
commit, so the build that commit starts serves that repo with no manual step.

Only the standard library and huggingface_hub are needed (the deploy workflow installs just that).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "infra" / "model-runner.Dockerfile"
README_TEMPLATE = REPO / "infra" / "space" / "README.md"
# Build inputs of the Dockerfile, at the same relative paths (README.md comes from the template).
SERVICE_PATHS = ("model_runner", "pyproject.toml", "requirements/service.lock")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
# Files the Hub manages itself; never deleted by a sync.
KEEP_REMOTE = {".gitattributes"}


def stage(dest: Path, *, commit: str, repository: str) -> list[str]:
    """Write the Space's file tree into ``dest`` (empty or missing); return its relative paths."""
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise SystemExit(f"{dest} is not empty")
    for rel in SERVICE_PATHS:
        src, out = REPO / rel, dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, out, ignore=IGNORED)
        else:
            shutil.copy2(src, out)
    shutil.copy2(DOCKERFILE, dest / "Dockerfile")
    readme = README_TEMPLATE.read_text().replace("{{commit}}", commit).replace("{{repository}}", repository)
    (dest / "README.md").write_text(readme)
    return sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())


def space_variables(hub_repo_id: str | None, hub_revision: str | None = None) -> dict[str, str]:
    """The Space variables that make it serve ``hub_repo_id`` (none without a repo)."""
    if not hub_repo_id:
        return {}
    variables = {"TWEETPULSE_MODEL_SOURCE": "hub", "TWEETPULSE_HUB_REPO_ID": hub_repo_id}
    if hub_revision:
        variables["TWEETPULSE_HUB_REVISION"] = hub_revision
    return variables


def sync(
    space_id: str,
    folder: Path,
    *,
    commit: str,
    private: bool,
    endpoint: str | None = None,
    variables: dict[str, str] | None = None,
) -> str:
    """Create the Space if needed, set its ``variables``, and make its tree equal to ``folder`` in one
    commit; return its URL."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    api = HfApi(endpoint=endpoint)  # the token comes from HF_TOKEN, never from the command line
    api.create_repo(space_id, repo_type="space", space_sdk="docker", private=private, exist_ok=True)
    for key, value in (variables or {}).items():  # before the commit: its build reads them
        api.add_space_variable(space_id, key, value, description="set by infra/space/sync_space.py")
    local = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    remote = set(api.list_repo_files(space_id, repo_type="space"))
    operations = [CommitOperationDelete(path_in_repo=p) for p in sorted(remote - set(local) - KEEP_REMOTE)]
    operations += [CommitOperationAdd(path_in_repo=p, path_or_fileobj=folder / p) for p in local]
    info = api.create_commit(
        space_id,
        repo_type="space",
        operations=operations,
        commit_message=f"Sync ModelRunner from {commit[:12]}",
        commit_description=f"Source commit: {commit}",
    )
    return info.commit_url


def _source_commit() -> str:
    if sha := os.environ.get("GITHUB_SHA"):
        return sha
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--space-id", help="OWNER/NAME of the Space (created when missing)")
    target.add_argument("--stage-only", type=Path, metavar="DIR", help="write the Space tree here and stop")
    parser.add_argument("--private", action="store_true", help="create the Space as private")
    parser.add_argument(
        "--hub-repo-id",
        default=os.environ.get("TWEETPULSE_HUB_REPO_ID") or None,
        help="model repo(s) the Space serves, e.g. ORG/tweetpulse-{task} (default: $TWEETPULSE_HUB_REPO_ID);"
        " set as Space variables with TWEETPULSE_MODEL_SOURCE=hub",
    )
    parser.add_argument(
        "--hub-revision",
        default=os.environ.get("TWEETPULSE_HUB_REVISION") or None,
        help="pin the served revision (default: $TWEETPULSE_HUB_REVISION; unset = latest of main)",
    )
    args = parser.parse_args(argv)

    commit = _source_commit()
    repository = os.environ.get("GITHUB_REPOSITORY", "tweetpulse/tweetpulse")
    if args.stage_only:
        files = stage(args.stage_only, commit=commit, repository=repository)
        print(f"staged {len(files)} files in {args.stage_only}")
        return 0
    if not os.environ.get("HF_TOKEN"):
        print("HF_TOKEN is not set", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="space-") as tmp:
        folder = Path(tmp) / "space"
        files = stage(folder, commit=commit, repository=repository)
        variables = space_variables(args.hub_repo_id, args.hub_revision)
        url = sync(args.space_id, folder, commit=commit, private=args.private, variables=variables)
    print(f"synced {len(files)} files to {args.space_id}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
