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
    shifts: tuple = ()            # local "HH:MM" times a shift starts: the page counts per shift

    def __post_init__(self) -> None:
        for start in self.shifts:
            if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d", str(start)):
                raise ValueError(f"shift start {start!r} is not a time of day: give HH:MM, e.g. 06:00,14:00,22:00")

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


#: who may ask for what: the role each route needs (None: anyone — the page's files and the login)
PUBLIC = None


class Handler(BaseHTTPRequestHandler):
    """Each route names the role it needs; the request is checked once, before its handler runs."""

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

    def _body(self) -> tuple[Optional[dict], str]:
        """(the JSON object sent, "") or (None, what is wrong with it)."""
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            return None, f"request body over {MAX_BODY} bytes"
        if n and "application/json" not in self.headers.get("Content-Type", ""):
            return None, "send JSON (Content-Type: application/json)"
        try:
            data = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return None, "the body is not JSON"
        return (data, "") if isinstance(data, dict) else (None, "the body must be a JSON object")

    def _route(self, routes: dict) -> None:
        """`routes`: path → (role, handler(user)); the reject pictures and the page's files by pattern."""
        path = urlparse(self.path).path
        m = _REJECT_IMAGE.match(path)
        if path in routes:
            role, handler = routes[path]
        elif m and self.command in ("GET", "HEAD"):
            role, handler = VIEWER, lambda _user: self._reject_image(m.group(1), m.group(2))
        elif path.startswith("/static/") and self.command in ("GET", "HEAD"):
            role, handler = PUBLIC, lambda _user: self._static(path[len("/static/"):])
        else:
            return self._json({"error": f"no such page: {path}"}, HTTPStatus.NOT_FOUND)
        user = self._user()
        if role is not PUBLIC and not self.server.access.may(user, role):
            status = HTTPStatus.UNAUTHORIZED if user is None else HTTPStatus.FORBIDDEN
            return self._json({"error": self.server.access.refusal(user, role)}, status)
        if role == OPERATOR and self.server.teacher is None:
            return self._json({"error": "reviewing is off for this run"}, HTTPStatus.NOT_FOUND)
        try:
            handler(user)
        except SlsgError as e:
            self._json({"error": str(e)}, HTTPStatus.CONFLICT)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 — the standard library's name
        self._route({"/": (PUBLIC, self._index), "/api/me": (PUBLIC, self._me), "/api/state": (VIEWER, self._state),
                     "/api/events": (VIEWER, self._events), "/api/live.jpg": (VIEWER, self._live),
                     "/api/rejects": (VIEWER, self._rejects), "/api/versions": (VIEWER, self._versions),
                     "/metrics": (VIEWER, self._metrics)})

    do_HEAD = do_GET

    def do_POST(self) -> None:  # noqa: N802
        self._route({"/api/login": (PUBLIC, self._login), "/api/logout": (PUBLIC, self._logout),
                     "/api/review": (OPERATOR, self._review), "/api/refit": (OPERATOR, self._refit),
                     "/api/rollback": (OPERATOR, self._rollback)})

    # ------------------------------------------------------------------ pages (anyone: no data in them)

    def _static(self, name: str) -> None:
        path = (STATIC / name).resolve()
        if STATIC.resolve() not in path.parents or not path.is_file() or path.suffix not in _STATIC_TYPES:
            return self._json({"error": f"no such file: {name}"}, HTTPStatus.NOT_FOUND)
        self._send(path.read_bytes(), _STATIC_TYPES[path.suffix])

    def _index(self, _user: Optional[User]) -> None:
        self._static("index.html")

    def _me(self, user: Optional[User]) -> None:
        access = self.server.access
        self._json({"name": user.name if user else None, "role": user.role if user else None,
                    "may_view": access.may(user, VIEWER), "may_operate": access.may(user, OPERATOR),
                    "teach": self.server.teacher is not None})

    def _login(self, _user: Optional[User]) -> None:
        body, problem = self._body()
        if body is None:
            return self._json({"error": problem}, HTTPStatus.BAD_REQUEST)
        token = str(body.get("token", ""))
        user = self.server.access.who(token)
        if user is None:
            return self._json({"error": "unknown token"}, HTTPStatus.UNAUTHORIZED)
        secure = "; Secure" if self.server.secure else ""
        cookie = f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"
        self._json({"name": user.name, "role": user.role}, headers={"Set-Cookie": cookie})

    def _logout(self, _user: Optional[User]) -> None:
        self._json({"ok": True}, headers={"Set-Cookie": f"{COOKIE}=; Max-Age=0; Path=/"})

    # ------------------------------------------------------------------ what the line does (viewers)

    def _state(self, _user: Optional[User]) -> None:
        self._json(self.server.view.state())

    def _events(self, _user: Optional[User]) -> None:
        """Server-sent events: the state whenever it changed, at most max_fps a second, a comment every 15 s."""
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

    def _live(self, _user: Optional[User]) -> None:
        frame_id, jpeg = self.server.view.live_jpeg()
        if not jpeg:
            return self._json({"error": "no frame judged yet"}, HTTPStatus.NOT_FOUND)
        self._send(jpeg, "image/jpeg", headers={"X-Frame-Id": str(frame_id)})

    def _rejects(self, _user: Optional[User]) -> None:
        query = parse_qs(urlparse(self.path).query)
        head = (query.get("head") or [None])[0]
        cards = self.server.view.rejects(head=head or None)
        labels = self.server.teacher.store.labels() if self.server.teacher else {}
        for c in cards:
            c["review"] = labels.get(c["key"])
        self._json({"rejects": cards})

    def _reject_image(self, key: str, kind: str) -> None:
        data = self.server.view.reject_image(key, kind)
        if data is None:
            return self._json({"error": f"no kept picture of {key}"}, HTTPStatus.NOT_FOUND)
        self._send(data, "image/jpeg" if kind == "jpg" else "image/png")

    def _versions(self, _user: Optional[User]) -> None:
        teacher = self.server.teacher
        if teacher is None:
            return self._json({"versions": [], "current": None, "audit": []})
        self._json(teacher.versions())

    def _metrics(self, _user: Optional[User]) -> None:
        self._send(self.server.metrics.exposition(), CONTENT_TYPE)

    # ------------------------------------------------------------------ what changes the model (operators)

    def _review(self, user: User) -> None:
        body, problem = self._body()
        if body is None:
            return self._json({"error": problem}, HTTPStatus.BAD_REQUEST)
        self._json(self.server.teacher.review(str(body.get("key", "")), str(body.get("label", "")), user.name))

    def _refit(self, user: User) -> None:
        report = self.server.teacher.refit(user.name)
        self._json(report, HTTPStatus.OK if report["accepted"] else HTTPStatus.UNPROCESSABLE_ENTITY)

    def _rollback(self, user: User) -> None:
        self._json(self.server.teacher.rollback(user.name))
