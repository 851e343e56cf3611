"""A local stand-in for the Hugging Face Hub: exactly the routes huggingface_hub 2.x calls to create a repo,
make commits with regular and LFS files (legacy LFS transfer; tests disable Xet) and read them back
(``model_info``, ``list_repo_tree``, ``get_paths_info``, ``hf_hub_download``, ``snapshot_download``).

Upload side (route names for ``fail_next`` / ``delay_next`` / ``calls_to`` in brackets):

    POST /api/repos/create                           [create] create_repo (409 + url when it exists)
    POST /api/validate-yaml                          [validate_yaml] README.md front matter check
    POST /api/models/{ns}/{name}/preupload/{rev}     [preupload] regular or LFS, per file
    POST /{ns}/{name}.git/info/lfs/objects/batch     [lfs_batch] LFS batch: where to PUT each object
    PUT  /_lfs/{oid}  POST /_lfs/{oid}/verify        [lfs_upload, lfs_verify] the upload URL (no auth,
                                                     like S3) and its check
    POST /api/models/{ns}/{name}/commit/{rev}        [commit] NDJSON commit (adds, deletions)

Download side:

    GET  /api/models/{ns}/{name}[/revision/{rev}]    [repo_info] sha + siblings at the revision
                                                     (``?blobs=true``: size, blobId, lfs sha256)
    GET  /api/models/{ns}/{name}/tree/{rev}[/{path}] [tree] list_repo_tree (``recursive``)
    POST /api/models/{ns}/{name}/paths-info/{rev}    [paths_info] get_paths_info
    HEAD|GET /{ns}/{name}/resolve/{rev}/{path}       [resolve] X-Repo-Commit, ETag (git blob sha1) and
                                                     Content-Length; an LFS file answers 302 to the
                                                     "CDN" (``cdn_url``: another origin, so the client
                                                     drops the token) with X-Linked-Etag (its sha256)
                                                     and X-Linked-Size, like the real Hub
    HEAD|GET /_lfs/{oid}                             [lfs_download] the CDN, no auth

Every commit is kept: a revision is a branch (``main``), a tag (``tag``) or a commit sha (full or a
unique prefix of at least 7 characters), so an older sha still resolves after a newer push.
Public repos read without a token; a private repo, or a wrong token, gets 401 like the Hub.

Every call is recorded with its Authorization header; ``fail_next`` and ``delay_next`` make the next
calls of a route fail or stall so retries and timeouts can be tested against the real client;
``corrupt_lfs`` makes the CDN serve other bytes than the LFS object committed (same size).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

import uvicorn
import yaml
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

LFS_SUFFIXES = (".safetensors", ".bin", ".model")


@dataclass
class Call:
    route: str
    method: str
    path: str
    authorization: str | None
    status: int
    at: float


@dataclass
class Repo:
    """``files`` / ``lfs_paths``: the tree at the head of ``main``; ``trees`` / ``lfs_trees``: the tree
    of every commit, by commit sha; ``refs``: branches and tags -> commit sha."""

    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[dict] = field(default_factory=list)
    trees: dict[str, dict[str, bytes]] = field(default_factory=dict)
    lfs_trees: dict[str, set[str]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        """The commit sha a branch, tag or (prefix of a) sha names; None when it names none."""
        if revision in self.refs:
            return self.refs[revision]
        if revision in self.trees:
            return revision
        if len(revision) >= 7:
            found = [sha for sha in self.trees if sha.startswith(revision.lower())]
            if len(found) == 1:
                return found[0]
        return None


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


class FakeHub:
    def __init__(self, token: str, *, lfs_threshold: int = 10 * 1024 * 1024):
        self.token = token
        self.lfs_threshold = lfs_threshold
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self._served_lfs: dict[str, bytes] = {}  # corrupt_lfs: what the CDN serves instead
        self.calls: list[Call] = []
        self._failures: dict[str, list[tuple[int, str | None]]] = {}
        self._delays: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self.cdn_url = ""  # the same server under another origin (localhost), like cdn-lfs.hf.co

    # --- test controls ------------------------------------------------------------------------------
    def fail_next(self, route: str, n: int = 1, *, status: int = 503, retry_after: str | None = None) -> None:
        with self._lock:
            self._failures.setdefault(route, []).extend([(status, retry_after)] * n)

    def delay_next(self, route: str, seconds: float, n: int = 1) -> None:
        with self._lock:
            self._delays.setdefault(route, []).extend([seconds] * n)

    def calls_to(self, route: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.route == route]

    def tag(self, repo_id: str, name: str, revision: str = "main") -> str:
        """Point tag (or branch) ``name`` of ``repo_id`` at ``revision``; returns the commit sha."""
        with self._lock:
            repo = self.repos[repo_id]
            sha = repo.resolve(revision)
            if sha is None:
                raise KeyError(f"{repo_id} has no revision {revision!r}")
            repo.refs[name] = sha
            return sha

    def corrupt_lfs(self, oid: str, data: bytes | None = None) -> None:
        """From now on the CDN serves other bytes for LFS object ``oid``: ``data``, or the committed
        bytes inverted (same size). ``oid`` may be one not uploaded yet (pass ``data`` then)."""
        with self._lock:
            if data is None:
                data = bytes(b ^ 0xFF for b in self.lfs_objects[oid])
            self._served_lfs[oid] = data

    def recover(self) -> None:
        """Drop every pending ``fail_next`` / ``delay_next``: the outage is over."""
        with self._lock:
            self._failures.clear()
            self._delays.clear()

    def head(self, repo_id: str, revision: str = "main") -> str | None:
        with self._lock:
            repo = self.repos.get(repo_id)
            return repo.resolve(revision) if repo else None

    # --- plumbing -----------------------------------------------------------------------------------
    async def _enter(self, request: Request, route: str, *, auth: bool = True) -> Response | None:
        """Record the call; answer with an injected failure or a 401 when the token is wrong."""
        with self._lock:
            delays = self._delays.get(route)
            delay = delays.pop(0) if delays else 0.0
            failures = self._failures.get(route)
            status, retry_after = failures.pop(0) if failures else (200, None)
        if delay:
            await asyncio.sleep(delay)
        header = request.headers.get("authorization")
        if status == 200 and auth and header != f"Bearer {self.token}":
            status = 401
        with self._lock:
            self.calls.append(Call(route, request.method, request.url.path, header, status, time.monotonic()))
        if status == 200:
            return None
        headers = {"Retry-After": retry_after} if retry_after else None
        # echoes the credentials like a careless proxy would, so that masking on our side is exercised
        error = f"fake hub says {status} to {header}" if status == 401 else f"fake hub says {status}"
        return JSONResponse({"error": error}, status_code=status, headers=headers)

    def _repo(self, namespace: str, name: str) -> Repo | None:
        return self.repos.get(f"{namespace}/{name}")

    def _readable(self, request: Request, namespace: str, name: str) -> tuple[Repo | None, Response | None]:
        """The repo a read names, or the answer the Hub would give: a wrong token is 401 even for a
        public repo, no token on a private one is 401 RepoNotFound, an unknown repo 404."""
        header = request.headers.get("authorization")
        repo = self._repo(namespace, name)
        if header is not None and header != f"Bearer {self.token}":
            return None, JSONResponse({"error": "Invalid credentials in Authorization header"}, 401)
        if repo is None:
            return None, self._missing()
        if repo.private and header is None:
            return None, JSONResponse(
                {"error": "Repository not found"}, status_code=401, headers={"X-Error-Code": "RepoNotFound"}
            )
        return repo, None

    @staticmethod
    def _no_revision(revision: str) -> JSONResponse:
        return JSONResponse(
            {"error": f"Invalid rev id: {revision}"},
            status_code=404,
            headers={"X-Error-Code": "RevisionNotFound"},
        )

    def _entry(self, repo: Repo, sha: str, path: str) -> dict:
        data = repo.trees[sha][path]
        entry: dict = {"type": "file", "path": path, "size": len(data)}
        if path in repo.lfs_trees[sha]:
            pointer = _lfs_pointer(data)
            entry["oid"] = git_blob_sha1(pointer)
            entry["lfs"] = {
                "oid": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            }
        else:
            entry["oid"] = git_blob_sha1(data)
        return entry

    def _listing(self, repo: Repo, sha: str, base: str, *, recursive: bool) -> list[dict] | None:
        """Files and folders under ``base`` ('' = root) at commit ``sha``; None when ``base`` is no folder."""
        tree = repo.trees[sha]
        prefix = f"{base.strip('/')}/" if base.strip("/") else ""
        out: list[dict] = []
        folders: set[str] = set()
        for path in sorted(tree):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):
                folder = prefix + "/".join(rest[:depth])
                if folder not in folders and (recursive or depth == 1):
                    folders.add(folder)
                    oid = hashlib.sha1(f"{sha}:{folder}".encode()).hexdigest()
                    out.append({"type": "directory", "path": folder, "oid": oid})
            if recursive or len(rest) == 1:
                out.append(self._entry(repo, sha, path))
        if prefix and not out:
            return None
        return out

    @staticmethod
    def _missing() -> JSONResponse:
        return JSONResponse(
            {"error": "Repository not found"}, status_code=404, headers={"X-Error-Code": "RepoNotFound"}
        )

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/repos/create")
        async def create(request: Request):
            if failed := await self._enter(request, "create"):
                return failed
            body = await request.json()
            repo_id = f"{body.get('organization') or 'user'}/{body['name']}"
            url = f"{self.url}/{repo_id}"
            with self._lock:
                if repo_id in self.repos:
                    return JSONResponse({"error": "You already created this model repo", "url": url}, 409)
                self.repos[repo_id] = Repo(private=body.get("visibility") == "private")
            return {"url": url, "name": repo_id}

        @app.get("/api/models/{namespace}/{name}")
        @app.get("/api/models/{namespace}/{name}/revision/{revision}")
        async def repo_info(namespace: str, name: str, request: Request, revision: str = "main"):
            if failed := await self._enter(request, "repo_info", auth=False):
                return failed
            repo, refused = self._readable(request, namespace, name)
            if refused:
                return refused
            with self._lock:
                if not repo.trees:  # created, nothing committed yet
                    return {"id": f"{namespace}/{name}", "sha": None, "private": repo.private, "siblings": []}
                sha = repo.resolve(revision)
                if sha is None:
                    return self._no_revision(revision)
                blobs = request.query_params.get("blobs", "").lower() == "true"
                siblings = []
                for path in sorted(repo.trees[sha]):
                    sibling: dict = {"rfilename": path}
                    if blobs:
                        entry = self._entry(repo, sha, path)
                        sibling.update(size=entry["size"], blobId=entry["oid"])
                        if "lfs" in entry:
                            lfs = entry["lfs"]
                            sibling["lfs"] = {
                                "size": lfs["size"],
                                "sha256": lfs["oid"],
                                "pointerSize": lfs["pointerSize"],
                            }
                    siblings.append(sibling)
            return {
                "id": f"{namespace}/{name}",
                "modelId": f"{namespace}/{name}",
                "sha": sha,
                "private": repo.private,
                "siblings": siblings,
            }

        @app.get("/api/models/{namespace}/{name}/tree/{revision}")
        @app.get("/api/models/{namespace}/{name}/tree/{revision}/{path:path}")
        async def tree(namespace: str, name: str, revision: str, request: Request, path: str = ""):
            if failed := await self._enter(request, "tree", auth=False):
                return failed
            repo, refused = self._readable(request, namespace, name)
            if refused:
                return refused
            with self._lock:
                sha = repo.resolve(revision)
                if sha is None:
                    return self._no_revision(revision)
                recursive = request.query_params.get("recursive", "").lower() == "true"
                listing = self._listing(repo, sha, path, recursive=recursive)
            if listing is None:
                return JSONResponse(
                    {"error": f"{path} does not exist"}, 404, headers={"X-Error-Code": "EntryNotFound"}
                )
            return listing  # one page: no Link header

        @app.post("/api/models/{namespace}/{name}/paths-info/{revision}")
        async def paths_info(namespace: str, name: str, revision: str, request: Request):
            if failed := await self._enter(request, "paths_info", auth=False):
                return failed
            repo, refused = self._readable(request, namespace, name)
            if refused:
                return refused
            form = urllib.parse.parse_qs((await request.body()).decode())
            with self._lock:
                sha = repo.resolve(revision)
                if sha is None:
                    return self._no_revision(revision)
                out = []
                for path in form.get("paths", []):
                    path = path.strip("/")
                    if path in repo.trees[sha]:
                        out.append(self._entry(repo, sha, path))
                    elif any(p.startswith(f"{path}/") for p in repo.trees[sha]):
                        oid = hashlib.sha1(f"{sha}:{path}".encode()).hexdigest()
                        out.append({"type": "directory", "path": path, "oid": oid})
            return out

        @app.api_route("/{namespace}/{name}/resolve/{revision}/{path:path}", methods=["GET", "HEAD"])
        async def resolve(namespace: str, name: str, revision: str, path: str, request: Request):
            if failed := await self._enter(request, "resolve", auth=False):
                return failed
            repo, refused = self._readable(request, namespace, name)
            if refused:
                return refused
            with self._lock:
                sha = repo.resolve(revision)
                if sha is None:
                    return self._no_revision(revision)
                data = repo.trees[sha].get(path)
                lfs = path in repo.lfs_trees[sha]
            if data is None:
                return JSONResponse(
                    {"error": f"Entry not found: {path}"},
                    404,
                    headers={"X-Error-Code": "EntryNotFound", "X-Repo-Commit": sha},
                )
            headers = {"X-Repo-Commit": sha}
            if lfs:
                oid = hashlib.sha256(data).hexdigest()
                headers.update(
                    {
                        "X-Linked-Etag": f'"{oid}"',
                        "X-Linked-Size": str(len(data)),
                        "ETag": f'"{git_blob_sha1(_lfs_pointer(data))}"',
                        "Location": f"{self.cdn_url}/_lfs/{oid}",
                        "Content-Length": "0",
                    }
                )
                return Response(status_code=302, headers=headers)
            headers.update({"ETag": f'"{git_blob_sha1(data)}"', "Content-Length": str(len(data))})
            return Response(b"" if request.method == "HEAD" else data, 200, headers=headers)

        @app.api_route("/_lfs/{oid}", methods=["GET", "HEAD"])
        async def lfs_download(oid: str, request: Request):
            if failed := await self._enter(request, "lfs_download", auth=False):
                return failed
            with self._lock:
                data = self._served_lfs.get(oid, self.lfs_objects.get(oid))
            if data is None:
                return JSONResponse({"error": "no such object"}, 404)
            headers = {"ETag": f'"{oid}"', "Content-Length": str(len(data))}
            return Response(b"" if request.method == "HEAD" else data, 200, headers=headers)

        @app.post("/api/validate-yaml")
        async def validate_yaml(request: Request):
            if failed := await self._enter(request, "validate_yaml"):
                return failed
            content = (await request.json())["content"]
            if content.startswith("---\n"):
                try:
                    yaml.safe_load(content[4 : content.index("\n---\n", 4)])
                except (ValueError, yaml.YAMLError) as exc:
                    return JSONResponse({"errors": [{"message": str(exc)}], "warnings": []}, 400)
            return {"errors": [], "warnings": []}

        @app.post("/api/models/{namespace}/{name}/preupload/{revision}")
        async def preupload(namespace: str, name: str, revision: str, request: Request):
            if failed := await self._enter(request, "preupload"):
                return failed
            if self._repo(namespace, name) is None:
                return self._missing()
            files = (await request.json())["files"]
            modes = [
                {
                    "path": f["path"],
                    "uploadMode": "lfs"
                    if f["path"].endswith(LFS_SUFFIXES) or f["size"] >= self.lfs_threshold
                    else "regular",
                    "shouldIgnore": False,
                    "oid": None,
                }
                for f in files
            ]
            return {"files": modes}

        @app.post("/{namespace}/{repo_git}/info/lfs/objects/batch")
        async def lfs_batch(namespace: str, repo_git: str, request: Request):
            if failed := await self._enter(request, "lfs_batch"):
                return failed
            body = await request.json()
            objects = []
            for obj in body["objects"]:
                oid, size = obj["oid"], obj["size"]
                entry = {"oid": oid, "size": size, "authenticated": True}
                with self._lock:
                    present = oid in self.lfs_objects
                if not present:  # an object the Hub already holds needs no upload
                    entry["actions"] = {
                        "upload": {"href": f"{self.url}/_lfs/{oid}", "header": {}},
                        "verify": {"href": f"{self.url}/_lfs/{oid}/verify", "header": {}},
                    }
                objects.append(entry)
            return JSONResponse(
                {"transfer": "basic", "objects": objects}, media_type="application/vnd.git-lfs+json"
            )

        @app.put("/_lfs/{oid}")
        async def lfs_upload(oid: str, request: Request):
            if failed := await self._enter(request, "lfs_upload", auth=False):
                return failed
            data = await request.body()
            if hashlib.sha256(data).hexdigest() != oid:
                return JSONResponse({"error": "sha256 mismatch"}, 400)
            with self._lock:
                self.lfs_objects[oid] = data
            return Response(status_code=200, headers={"ETag": f'"{oid[:32]}"'})

        @app.post("/_lfs/{oid}/verify")
        async def lfs_verify(oid: str, request: Request):
            if failed := await self._enter(request, "lfs_verify"):
                return failed
            body = await request.json()
            data = self.lfs_objects.get(oid)
            if data is None or len(data) != body["size"]:
                return JSONResponse({"error": "object not uploaded"}, 404)
            return {}

        @app.post("/api/models/{namespace}/{name}/commit/{revision}")
        async def commit(namespace: str, name: str, revision: str, request: Request):
            if failed := await self._enter(request, "commit"):
                return failed
            repo = self._repo(namespace, name)
            if repo is None:
                return self._missing()
            lines = [json.loads(line) for line in (await request.body()).splitlines() if line.strip()]
            header = next(item["value"] for item in lines if item["key"] == "header")
            with self._lock:
                parent = repo.refs.get(revision)
                if revision != "main" and parent is None:
                    return self._no_revision(revision)
                if header.get("parentCommit") and header["parentCommit"] != parent:
                    return JSONResponse(
                        {"error": "A commit has happened since. Please refresh and try again."}, 412
                    )
                files = dict(repo.trees[parent]) if parent else {}
                lfs = set(repo.lfs_trees[parent]) if parent else set()
            added: dict[str, bytes] = {}
            for item in lines:
                value = item["value"]
                if item["key"] == "file":
                    added[value["path"]] = base64.b64decode(value["content"])
                    files[value["path"]] = added[value["path"]]
                    lfs.discard(value["path"])
                elif item["key"] == "lfsFile":
                    data = self.lfs_objects.get(value["oid"])
                    if data is None or len(data) != value.get("size", len(data)):
                        return JSONResponse({"error": f"LFS object for {value['path']} missing"}, 422)
                    added[value["path"]] = files[value["path"]] = data
                    lfs.add(value["path"])
                elif item["key"] == "deletedFile":
                    files.pop(value["path"], None)
                    lfs.discard(value["path"])
                elif item["key"] == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    for path in [p for p in files if p.startswith(prefix)]:
                        files.pop(path)
                        lfs.discard(path)
            # like git: the parent is part of the commit, so the same files pushed again are a new commit
            digest = hashlib.sha1(f"{parent or ''}\n{header['summary']}\n".encode())
            for path in sorted(files):
                digest.update(path.encode() + hashlib.sha256(files[path]).digest())
            oid = digest.hexdigest()
            with self._lock:
                repo.trees[oid] = files
                repo.lfs_trees[oid] = lfs
                repo.refs[revision] = oid
                if revision == "main":
                    repo.files = dict(files)
                    repo.lfs_paths = set(lfs)
                repo.commits.append(
                    {"oid": oid, "summary": header["summary"], "files": sorted(added), "parent": parent}
                )
            repo_id = f"{namespace}/{name}"
            return {
                "commitUrl": f"{self.url}/{repo_id}/commit/{oid}",
                "commitOid": oid,
                "pullRequestUrl": None,
            }

        # registered last: anything the client calls that the real Hub flow was not expected to need
        @app.api_route("/{path:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"])
        async def unexpected(path: str, request: Request):
            await self._enter(request, "unexpected", auth=False)
            return JSONResponse({"error": f"fake hub has no route for {request.method} /{path}"}, 404)

        return app

    # --- lifecycle ----------------------------------------------------------------------------------
    def start(self) -> FakeHub:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.cdn_url = f"http://localhost:{port}"
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake hub did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=5)
