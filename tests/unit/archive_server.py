"""A small HTTP file server on 127.0.0.1 (standard library), for download tests.

It serves ``files`` (URL path -> bytes) with ``Range`` support, and misbehaves on
purpose per path (``modes``): ``truncate`` announces the full length and closes the
connection half way, every time; ``interrupt_once`` does that on the first request
only; ``html`` answers 200 with an HTML error page (``text/html``); ``html_binary``
sends the same page labelled ``application/octet-stream``; ``norange`` ignores
``Range``; ``noetag`` sends no ``ETag``; ``close`` sends no ``Content-Length`` (the
body ends when the connection closes) and ``close_truncate`` closes that way half
way, every time; ``slow`` sends the body in 64 KiB pieces 20 ms apart;
``ignore_if_range`` honours ``Range`` but not ``If-Range`` (a changed file's tail is sent). Every other
answer carries a strong ``ETag`` (of the content) and honours ``If-Range``.
Unknown paths answer 404. ``requests`` records (path, Range header);
``if_ranges`` the If-Range header of each request.
"""

from __future__ import annotations

import hashlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = b"<!DOCTYPE html><html><head><title>Moved</title></head><body>This page has moved.</body></html>\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        path = self.path.split("?")[0]
        rng = self.headers.get("Range")
        with srv.lock:
            srv.requests.append((path, rng))
            srv.if_ranges.append(self.headers.get("If-Range"))
            n_seen = sum(1 for p, _ in srv.requests if p == path)
        if path not in srv.files:
            body = b"<html><body>404 Not Found</body></html>"
            self.send_response(404)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        data, mode = srv.files[path], srv.modes.get(path, "ok")
        if mode in ("html", "html_binary"):
            self.send_response(200)
            self.send_header("Content-Type",
                             "text/html; charset=utf-8" if mode == "html" else "application/octet-stream")
            self.send_header("Content-Length", str(len(HTML)))
            self.end_headers()
            self.wfile.write(HTML)
            return
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range != etag and mode != "ignore_if_range":
            rng = None  # RFC 9110: the representation changed, send all of it
        if mode in ("close", "close_truncate"):
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("ETag", etag)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data if mode == "close" else data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        start = 0
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if mode != "noetag":
            self.send_header("ETag", etag)
        self.end_headers()
        if mode == "slow":
            for i in range(0, len(body), 1 << 16):
                self.wfile.write(body[i:i + (1 << 16)])
                self.wfile.flush()
                time.sleep(0.02)
            return
        cut = mode == "truncate" or (mode == "interrupt_once" and n_seen == 1)
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


class ArchiveServer:
    """``with ArchiveServer({"/a.zip": data}) as srv: srv.url("/a.zip")``."""

    def __init__(self, files: dict, modes: dict | None = None):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.files = dict(files)
        self.httpd.modes = dict(modes or {})
        self.httpd.requests = []
        self.httpd.if_ranges = []
        self.httpd.lock = threading.Lock()
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def files(self) -> dict:
        return self.httpd.files

    @property
    def modes(self) -> dict:
        return self.httpd.modes

    @property
    def requests(self) -> list:
        return self.httpd.requests

    @property
    def if_ranges(self) -> list:
        return self.httpd.if_ranges

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> "ArchiveServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
