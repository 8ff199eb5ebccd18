"""The line-side page's HTTP server: standard library only, in threads beside the frame loop.

Nothing is loaded from elsewhere (the line has no internet): the page, its script and its style ship in
`edge_runtime/web/static/`. Live updates are server-sent events, at most `ViewConfig.max_fps` per second per
client; pictures are downscaled JPEGs fetched when an update names a new frame. Every request is checked against
`Access` (viewer or operator); actions that change the model go through `Teacher`, which holds the gate.
"""

from __future__ import annotations

import json
import re
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import parse_qs, urlparse

from edge_runtime.errors import SlsgError
from edge_runtime.web.access import COOKIE, OPERATOR, VIEWER, Access, User
from edge_runtime.web.metrics import CONTENT_TYPE, LineMetrics
from edge_runtime.web.teacher import Teacher
from edge_runtime.web.view import LineView

STATIC = Path(__file__).with_name("static")
_STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
_REJECT_IMAGE = re.compile(r"^/api/rejects/([\w.-]+)\.(jpg|png)$")
MAX_BODY = 64 * 1024


@dataclass
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    users: Optional[Path] = None  # the users file (names, roles, tokens): `web.access`
    cert: Optional[Path] = None   # TLS certificate and key (PEM): HTTPS when given
    key: Optional[Path] = None

    @classmethod
    def parse(cls, address: str, **kw) -> WebConfig:
        """`PORT`, `HOST:PORT` or `[V6]:PORT`."""
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"--web {address!r}: give HOST:PORT (e.g. 127.0.0.1:8080 or 0.0.0.0:8443)")
        return cls(host, int(port), **kw)


class PageServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cfg: WebConfig, access: Access, view: LineView, metrics: LineMetrics,
                 teacher: Optional[Teacher]) -> None:
        self.cfg, self.access, self.view, self.metrics, self.teacher = cfg, access, view, metrics, teacher
        self.stopping = threading.Event()
        self.secure = cfg.cert is not None
        super().__init__((cfg.host, cfg.port), Handler)
        if cfg.cert is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(cfg.cert), str(cfg.key) if cfg.key else None)
            self.socket = ctx.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="web", daemon=True)

    def handle_error(self, request, client_address) -> None:
        """A client that drops or speaks plain HTTP to the TLS port is its own trouble; anything else is a bug."""
        if isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{'https' if self.secure else 'http'}://{host}:{port}/"

    def start(self) -> PageServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    server: PageServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # the event log is the record; keep stderr quiet
        pass

    # ------------------------------------------------------------------ plumbing

    def _user(self) -> Optional[User]:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return self.server.access.who(auth[7:].strip())
        cookie = SimpleCookie(self.headers.get("Cookie", ""))
        return self.server.access.who(cookie[COOKIE].value if COOKIE in cookie else None)

    def _allowed(self, role: str) -> Optional[User]:
        user = self._user()
        if not self.server.access.may(user, role):
            status = HTTPStatus.UNAUTHORIZED if user is None else HTTPStatus.FORBIDDEN
            self._json({"error": self.server.access.refusal(user, role)}, status)
            raise _Answered
        return user

    def _send(self, body: bytes, ctype: str, status: int = HTTPStatus.OK, headers: Optional[dict] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data, status: int = HTTPStatus.OK, headers: Optional[dict] = None) -> None:
        self._send(json.dumps(data, default=str, allow_nan=False).encode(), "application/json", status, headers)

    def _body(self) -> dict:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self._json({"error": f"request body over {MAX_BODY} bytes"}, HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            raise _Answered
        if n and "application/json" not in self.headers.get("Content-Type", ""):
            self._json({"error": "send JSON (Content-Type: application/json)"}, HTTPStatus.UNSUPPORTED_MEDIA_TYPE)
            raise _Answered
        try:
            data = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            self._json({"error": "the body is not JSON"}, HTTPStatus.BAD_REQUEST)
            raise _Answered from None
        if not isinstance(data, dict):
            self._json({"error": "the body must be a JSON object"}, HTTPStatus.BAD_REQUEST)
            raise _Answered
        return data

    def _route(self, routes: dict) -> None:
        path = urlparse(self.path).path
        try:
            handler = routes.get(path)
            if handler is None:
                m = _REJECT_IMAGE.match(path)
                if m and self.command in ("GET", "HEAD"):
                    return self._reject_image(m.group(1), m.group(2))
                if path.startswith("/static/") and self.command in ("GET", "HEAD"):
                    return self._static(path[len("/static/"):])
                return self._json({"error": f"no such page: {path}"}, HTTPStatus.NOT_FOUND)
            handler()
        except _Answered:
            pass
        except SlsgError as e:
            self._json({"error": str(e)}, HTTPStatus.CONFLICT)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 — the standard library's name
        self._route({"/": self._index, "/api/me": self._me, "/api/state": self._state, "/api/events": self._events,
                     "/api/live.jpg": self._live, "/api/rejects": self._rejects, "/api/versions": self._versions,
                     "/metrics": self._metrics})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self._route({"/api/login": self._login, "/api/logout": self._logout, "/api/review": self._review,
                     "/api/refit": self._refit, "/api/rollback": self._rollback})

    # ------------------------------------------------------------------ pages

    def _static(self, name: str) -> None:
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file() or path.suffix not in _STATIC_TYPES:
            return self._json({"error": f"no such file: {name}"}, HTTPStatus.NOT_FOUND)
        self._send(path.read_bytes(), _STATIC_TYPES[path.suffix])

    def _index(self) -> None:
        self._static("index.html")

    def _me(self) -> None:
        user = self._user()
        access = self.server.access
        self._json({"name": user.name if user else None, "role": user.role if user else None,
                    "may_view": access.may(user, VIEWER), "may_operate": access.may(user, OPERATOR),
                    "teach": self.server.teacher is not None})

    def _login(self) -> None:
        token = str(self._body().get("token", ""))
        user = self.server.access.who(token)
        if user is None:
            return self._json({"error": "unknown token"}, HTTPStatus.UNAUTHORIZED)
        secure = "; Secure" if self.server.secure else ""
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"
        self._json({"name": user.name, "role": user.role}, headers={"Set-Cookie": cookie})

    def _logout(self) -> None:
        self._json({"ok": True}, headers={"Set-Cookie": f"{COOKIE}=; Max-Age=0; Path=/"})

    def _state(self) -> None:
        self._allowed(VIEWER)
        self._json(self.server.view.state())

    def _events(self) -> None:
        """Server-sent events: the state whenever it changed, at most max_fps a second, a comment every 15 s."""
        self._allowed(VIEWER)
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        view, period = self.server.view, 1.0 / max(self.server.view.cfg.max_fps, 0.1)
        seq = -1
        while not self.server.stopping.is_set():
            new = view.wait(seq, 15.0)
            if new == seq:
                self.wfile.write(b": idle\n\n")
            else:
                seq = new
                self.wfile.write(b"data: " + json.dumps(view.state(), default=str).encode() + b"\n\n")
            self.wfile.flush()
            time.sleep(period)

    def _live(self) -> None:
        self._allowed(VIEWER)
        frame_id, jpeg = self.server.view.live_jpeg()
        if not jpeg:
            return self._json({"error": "no frame judged yet"}, HTTPStatus.NOT_FOUND)
        self._send(jpeg, "image/jpeg", headers={"X-Frame-Id": str(frame_id)})

    def _rejects(self) -> None:
        self._allowed(VIEWER)
        query = parse_qs(urlparse(self.path).query)
        head = (query.get("head") or [None])[0]
        cards = self.server.view.rejects(head=head or None)
        labels = self.server.teacher.store.labels() if self.server.teacher else {}
        for c in cards:
            c["review"] = labels.get(c["key"])
        self._json({"rejects": cards})

    def _reject_image(self, key: str, kind: str) -> None:
        self._allowed(VIEWER)
        data = self.server.view.reject_image(key, kind)
        if data is None:
            return self._json({"error": f"no kept picture of {key}"}, HTTPStatus.NOT_FOUND)
        self._send(data, "image/jpeg" if kind == "jpg" else "image/png")

    def _versions(self) -> None:
        self._allowed(VIEWER)
        teacher = self.server.teacher
        if teacher is None:
            return self._json({"versions": [], "current": None, "audit": []})
        self._json(teacher.versions())

    def _metrics(self) -> None:
        self._allowed(VIEWER)
        self._send(self.server.metrics.exposition(), CONTENT_TYPE)

    # ------------------------------------------------------------------ actions (operators)

    def _teacher(self) -> Teacher:
        if self.server.teacher is None:
            self._json({"error": "reviewing is off for this run"}, HTTPStatus.NOT_FOUND)
            raise _Answered
        return self.server.teacher

    def _review(self) -> None:
        user = self._allowed(OPERATOR)
        body = self._body()
        self._json(self._teacher().review(str(body.get("key", "")), str(body.get("label", "")), user.name))

    def _refit(self) -> None:
        user = self._allowed(OPERATOR)
        report = self._teacher().refit(user.name)
        self._json(report, HTTPStatus.OK if report["accepted"] else HTTPStatus.UNPROCESSABLE_ENTITY)

    def _rollback(self) -> None:
        user = self._allowed(OPERATOR)
        self._json(self._teacher().rollback(user.name))


class _Answered(Exception):
    """The request was already answered (refused); stop handling it."""
