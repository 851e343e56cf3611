"""A local stand-in for the Hugging Face Hub: exactly the routes huggingface_hub 2.x calls to create a repo
and make one commit with regular and LFS files (legacy LFS transfer; tests disable Xet).

    POST /api/repos/create                           create_repo (409 + url when it exists)
    GET  /api/models/{ns}/{name}[/revision/{rev}]    repo_info (create_repo calls it after a 401/403)
    POST /api/validate-yaml                          README.md front matter check before a commit
    POST /api/models/{ns}/{name}/preupload/{rev}     regular or LFS, per file
    POST /{ns}/{name}.git/info/lfs/objects/batch     LFS batch: where to PUT each object
    PUT  /_lfs/{oid}  POST /_lfs/{oid}/verify        the upload URL (no auth, like S3) and its check
    POST /api/models/{ns}/{name}/commit/{rev}        NDJSON commit

Every call is recorded with its Authorization header; ``fail_next`` and ``delay_next`` make the next
calls of a route fail or stall so retries and timeouts can be tested against the real client.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import threading
import time
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
    private: bool
    files: dict[str, bytes] = field(default_factory=dict)
    lfs_paths: set[str] = field(default_factory=set)
    commits: list[dict] = field(default_factory=list)


class FakeHub:
    def __init__(self, token: str, *, lfs_threshold: int = 10 * 1024 * 1024):
        self.token = token
        self.lfs_threshold = lfs_threshold
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.calls: list[Call] = []
        self._failures: dict[str, list[tuple[int, str | None]]] = {}
        self._delays: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

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
            if failed := await self._enter(request, "repo_info"):
                return failed
            if (repo := self._repo(namespace, name)) is None:
                return self._missing()
            head = repo.commits[-1]["oid"] if repo.commits else None
            siblings = [{"rfilename": p} for p in sorted(repo.files)]
            return {"id": f"{namespace}/{name}", "sha": head, "private": repo.private, "siblings": siblings}

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
            files: dict[str, bytes] = {}
            lfs: set[str] = set()
            for item in lines:
                value = item["value"]
                if item["key"] == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif item["key"] == "lfsFile":
                    data = self.lfs_objects.get(value["oid"])
                    if data is None or len(data) != value["size"]:
                        return JSONResponse({"error": f"LFS object for {value['path']} missing"}, 422)
                    files[value["path"]] = data
                    lfs.add(value["path"])
            digest = hashlib.sha1(header["summary"].encode())
            for path in sorted(files):
                digest.update(path.encode() + hashlib.sha256(files[path]).digest())
            oid = digest.hexdigest()
            with self._lock:
                repo.files.update(files)
                repo.lfs_paths |= lfs
                repo.commits.append({"oid": oid, "summary": header["summary"], "files": sorted(files)})
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
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
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
