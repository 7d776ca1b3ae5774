"""A tiny stand-in for the Hugging Face Hub's HTTP API, on 127.0.0.1, for the online error paths.

It answers the two calls ``hf_hub_download`` makes (HEAD then GET on
``/<repo>/resolve/<revision>/<file>``) and the ``repo_info`` call of ``HfApi``
with the headers the real Hub sends (``X-Repo-Commit``, ``ETag``,
``X-Error-Code``), so ``huggingface_hub`` builds its own exceptions
(``GatedRepoError``, ``RepositoryNotFoundError``, ``RemoteEntryNotFoundError``)
through its real code path. A client runs in a subprocess with
``HF_ENDPOINT=<url>``, because ``huggingface_hub`` reads the endpoint at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "c" * 40


class FakeHub:
    """``files``: repo -> {path: bytes}; ``gated``/``fail``: behaviour per repo.

    ``fail[repo] = n`` answers the first ``n`` requests for that repo with 503;
    ``refuse[repo] = (status, message)`` answers every request with that refusal
    (401 "Invalid credentials in Authorization header" is what a bad token gets).
    """

    def __init__(self):
        self.files: dict = {}
        self.gated: set = set()
        self.fail: dict = {}
        self.refuse: dict = {}
        self.requests: list = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, status, headers=None, body=b""):
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _route(self):
                path = self.path.split("?")[0]
                hub.requests.append((self.command, path))
                if path.startswith("/api/"):  # /api/models/<org>/<name>/revision/<rev>
                    parts = path.split("/")
                    repo = "/".join(parts[3:5])
                    rest = parts[5:]
                else:  # /<org>/<name>/resolve/<rev>/<file>
                    parts = path.lstrip("/").split("/")
                    repo = "/".join(parts[:2])
                    rest = parts[2:]
                if hub.fail.get(repo, 0) > 0:
                    hub.fail[repo] -= 1
                    return self._send(503, {}, b"Service Unavailable")
                if repo in hub.refuse:
                    status, msg = hub.refuse[repo]
                    return self._send(status, {"X-Error-Message": msg}, b"{}")
                if repo in hub.gated:
                    msg = "Access to model is restricted. You must have access to it and be authenticated."
                    return self._send(401, {"X-Error-Code": "GatedRepo", "X-Error-Message": msg}, b"{}")
                if repo not in hub.files:
                    return self._send(401, {"X-Error-Code": "RepoNotFound",
                                            "X-Error-Message": "Repository not found"}, b"{}")
                if path.startswith("/api/"):
                    body = json.dumps({"id": repo, "sha": COMMIT, "siblings": [
                        {"rfilename": f} for f in sorted(hub.files[repo])]}).encode()
                    return self._send(200, {"Content-Type": "application/json"}, body)
                fname = "/".join(rest[2:])
                content = hub.files[repo].get(fname)
                if content is None:
                    return self._send(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT,
                                            "X-Error-Message": "Entry not found"}, b"{}")
                etag = hashlib.sha256(content).hexdigest()
                headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
                rng = self.headers.get("Range", "")
                if self.command == "GET" and rng.startswith("bytes=") and rng.endswith("-"):  # resume
                    start = int(rng[len("bytes="):-1])
                    headers["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
                    return self._send(206, headers, content[start:])
                return self._send(200, headers, content)

            do_GET = do_HEAD = _route

        return Handler


CLIENT = r"""
import json, sys, time, types
from clipdyn.hub import client as hub
delays, hf_delays = [], []
hub.time = types.SimpleNamespace(sleep=delays.append)  # record clipdyn's backoff instead of waiting
time.sleep = hf_delays.append  # and huggingface_hub's own
call = json.loads(sys.argv[1])
try:
    fn = getattr(hub, call.pop("fn"))
    out = fn(**call)
    res = {"ok": True, "result": [str(x) for x in out] if isinstance(out, tuple) else str(out)}
except Exception as err:
    res = {"ok": False, "type": type(err).__name__, "message": str(err),
           "cause": type(err.__cause__).__name__ if err.__cause__ is not None else None}
res["delays"], res["hf_delays"] = delays, hf_delays
print("RESULT " + json.dumps(res))
"""


def call_hub(fakehub: FakeHub, cache: Path, fn: str, token: str = "", **kwargs) -> dict:
    """Run ``clipdyn.hub.client.<fn>(**kwargs)`` in a fresh interpreter pointed at the fake Hub
    (with ``HF_TOKEN=token`` if given)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_ENDPOINT=fakehub.url, HF_HUB_CACHE=str(cache), HF_HOME=str(cache.parent / "hf-home"),
               HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_XET="1", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", HF_HUB_ETAG_TIMEOUT="5", HF_HUB_DOWNLOAD_TIMEOUT="5")
    if token:
        env["HF_TOKEN"] = token
    proc = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(dict(fn=fn, **kwargs))], env=env,
                          capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out = json.loads(line[len("RESULT "):])
            out["stdout"] = proc.stdout
            return out
    raise AssertionError(f"client crashed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
