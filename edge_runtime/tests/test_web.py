"""The line-side page over real HTTP on loopback, fed by a real pipeline run on a video: what it shows, who may do
what, the teach loop through it, server-sent events, Prometheus metrics and TLS."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge, run_pipeline
from edge_runtime.run_counts import RunStats
from edge_runtime.sinks.counters import StatsSink
from edge_runtime.sinks.fanout import Fanout
from edge_runtime.sources.spec import SourceSpec, open_source
from edge_runtime.status import StatusTracker
from edge_runtime.teach.follow import VersionFollower
from edge_runtime.teach.store import LineStore
from edge_runtime.tests.conftest import make_bundle, write_video
from edge_runtime.web.access import Access, AccessError, read_users
from edge_runtime.web.page import LinePage
from edge_runtime.web.server import WebConfig
from edge_runtime.web.view import ViewConfig, flagged_by, shift_bounds

OPERATOR_TOKEN, VIEWER_TOKEN = "operator-token-123456", "viewer-token-1234567"
# brightness / 255 is the test model's score, threshold 0.5: 100 OK, 140 a false reject, 230 a real defect
VALUES = [100, 140, 230] * 4


def _users(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"name": "ana", "role": "operator", "token": OPERATOR_TOKEN},
                                          {"name": "tv", "role": "viewer", "token": VIEWER_TOKEN}]}))
    return path


class Line:
    """A run on a video with the page open (port 0: any free one), its store, judge and follower."""

    def __init__(self, tmp_path: Path, open_viewing: bool = True, pictures_per_s: float = 1e6, **web) -> None:
        self.bundle = make_bundle(tmp_path / "model.slsg")
        self.store = LineStore(self.bundle)
        bundle = load_bundle(self.bundle)
        self.judge = Judge(select_backend(bundle, "onnx"), bundle.threshold.value)
        self.stats = RunStats()
        cfg = WebConfig("127.0.0.1", 0, users=_users(tmp_path), **web)
        # every reject's picture kept unless asked (the line keeps two a second; this video runs as fast as it can)
        self.page = LinePage.open(cfg, self.store, self.judge, self.stats, "run1",
                                  view_cfg=ViewConfig(reject_pictures_per_s=pictures_per_s, shifts=cfg.shifts))
        self.page.server.access.open_viewing = open_viewing
        self.page.start()
        self.follower = VersionFollower(self.store, self.judge, lambda b: select_backend(b, "onnx"), lambda r: None)
        self.video = write_video(tmp_path / "line.mkv", VALUES)

    def run(self) -> None:
        status = StatusTracker()
        fan = Fanout([StatsSink(self.stats), status, self.page.metrics, self.page.view])
        status.start()
        run_pipeline(open_source(SourceSpec(video=self.video)), self.judge, fan)
        fan.close()  # the view's queue drained: every frame is on the page

    def url(self, path: str) -> str:
        return self.page.url.rstrip("/") + path

    def get(self, path: str, token: str | None = None, context=None):
        req = urllib.request.Request(self.url(path), headers={"Authorization": f"Bearer {token}"} if token else {})
        return urllib.request.urlopen(req, timeout=10, context=context)

    def post(self, path: str, body: dict, token: str | None = OPERATOR_TOKEN) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        req = urllib.request.Request(self.url(path), json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def close(self) -> None:
        self.page.stop()


@pytest.fixture
def line(tmp_path):
    line = Line(tmp_path)
    line.run()
    yield line
    line.close()


def test_the_page_shows_the_runs_counts_newest_frame_rejects_and_metrics(line):
    state = json.loads(line.get("/api/state").read())
    assert state["counts"]["OK"] == 4 and state["counts"]["NG"] == 8 and state["counts"]["NO-DECISION"] == 0
    assert state["latest"]["id"] == len(VALUES) - 1 and state["latest"]["verdict"] == "NG" and state["version"] == 1
    assert state["status"]["status"] in ("running", "stopped") and state["threshold"] == 0.5
    assert sum(state["histogram"]["counts"]) == len(VALUES) and len(state["latency_ms"]) == len(VALUES)
    live = line.get("/api/live.jpg")
    assert live.headers["Content-Type"] == "image/jpeg" and live.read()[:2] == b"\xff\xd8"
    rejects = json.loads(line.get("/api/rejects").read())["rejects"]
    assert [r["id"] for r in rejects] == [11, 10, 8, 7, 5, 4, 2, 1]  # NG frames, newest first
    assert line.get(f"/api/rejects/{rejects[0]['key']}.jpg").read()[:2] == b"\xff\xd8"
    metrics = line.get("/metrics").read().decode()
    assert 'slsg_frames_total{verdict="NG"} 8.0' in metrics and 'slsg_frames_total{verdict="OK"} 4.0' in metrics
    assert "slsg_threshold 0.5" in metrics and "slsg_bundle_version 1.0" in metrics
    assert 'slsg_latency_seconds_count{stage="inference"} 12.0' in metrics
    page = line.get("/").read().decode()
    assert "<script src=\"/static/app.js\">" in page and "http" not in page.split("<body>")[1]  # nothing from elsewhere


def test_server_sent_events_carry_the_state(line):
    with line.get("/api/events") as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        first = stream.readline().decode()
    assert first.startswith("data: ") and json.loads(first[6:])["counts"]["NG"] == 8


def test_reviews_and_a_refit_over_http_switch_the_running_line_and_rollback_returns(line):
    rejects = json.loads(line.get("/api/rejects").read())["rejects"]
    false_reject = next(r for r in rejects if abs(r["score"] - 140 / 255) < 1e-3)
    defect = next(r for r in rejects if r["score"] > 0.85)
    assert line.post("/api/review", {"key": false_reject["key"], "label": "good"})[0] == 200
    assert line.post("/api/review", {"key": defect["key"], "label": "defect"})[0] == 200
    reviewed = {r["key"]: r["review"] for r in json.loads(line.get("/api/rejects").read())["rejects"]}
    assert reviewed[false_reject["key"]] == "good" and reviewed[defect["key"]] == "defect"
    status, report = line.post("/api/refit", {})
    assert status == 200 and report["accepted"] and report["version"] == 2
    line.follower.check()  # what the follower's thread does every half second
    assert json.loads(line.get("/api/state").read())["version"] == 2
    line.run()  # the same video again: the false reject passes, the defect is still caught
    state = json.loads(line.get("/api/state").read())
    assert state["latest"]["version"] == 2 and state["counts"]["OK"] == 4 + 8
    status, back = line.post("/api/rollback", {})
    line.follower.check()
    assert status == 200 and back["version"] == 1 and line.judge.active.version == 1
    audit = [a["action"] for a in json.loads(line.get("/api/versions").read())["audit"]]
    assert audit == ["review", "review", "refit", "switch after refit", "rollback"]


def test_a_refit_that_would_miss_a_confirmed_defect_is_refused_over_http(line):
    rejects = json.loads(line.get("/api/rejects").read())["rejects"]
    defect = next(r for r in rejects if r["score"] > 0.85)
    false_reject = next(r for r in rejects if abs(r["score"] - 140 / 255) < 1e-3)
    line.post("/api/review", {"key": defect["key"], "label": "good"})  # a mistake: the defect called good …
    line.post("/api/review", {"key": false_reject["key"], "label": "defect"})  # … and a good part a defect
    status, report = line.post("/api/refit", {})
    assert status == 422 and not report["accepted"] and "would no longer be flagged" in report["reasons"][0]
    assert json.loads(line.get("/api/versions").read())["current"] == 1


def test_actions_need_an_operator_and_viewing_beyond_loopback_needs_a_token(tmp_path):
    line = Line(tmp_path, open_viewing=False)  # as when bound beyond loopback
    try:
        line.run()
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            line.get("/api/state")
        assert anonymous.value.code == 401
        for path in ("/metrics", "/api/events", "/api/live.jpg", "/api/rejects"):
            with pytest.raises(urllib.error.HTTPError):
                line.get(path)
        assert line.get("/api/state", VIEWER_TOKEN).status == 200 and line.get("/metrics", VIEWER_TOKEN).status == 200
        key = json.loads(line.get("/api/rejects", VIEWER_TOKEN).read())["rejects"][0]["key"]
        status, body = line.post("/api/review", {"key": key, "label": "good"}, token=VIEWER_TOKEN)
        assert status == 403 and "tv is a viewer" in body["error"]
        assert line.post("/api/refit", {}, token=None)[0] == 401
        assert line.post("/api/rollback", {}, token="wrong-token-000000000")[0] == 401
        assert line.store.labels() == {} and line.store.audit_log() == []  # nothing changed
        status, body = line.post("/api/login", {"token": OPERATOR_TOKEN}, token=None)
        assert status == 200 and body["role"] == "operator"
    finally:
        line.close()
    with pytest.raises(AccessError, match="beyond this machine"):
        Access.for_page("0.0.0.0", None)
    assert Access.for_page("127.0.0.1", None).open_viewing
    assert not Access.for_page("0.0.0.0", _users(tmp_path)).open_viewing


def test_rejects_of_an_earlier_run_do_not_pile_up_on_the_disk(tmp_path):
    line = Line(tmp_path)
    try:
        line.run()
        kept = sorted(p.name for p in line.page.view.rejects_dir.iterdir())
        assert len(kept) == 16  # 8 rejects: a picture and a thumbnail each
    finally:
        line.close()
    restarted = LinePage.open(WebConfig("127.0.0.1", 0), line.store, line.judge, RunStats(), "run2")
    assert list(restarted.view.rejects_dir.iterdir()) == [] and line.store.labels() == {}
    restarted.server.server_close()


def test_a_burst_of_rejects_keeps_pictures_at_the_set_rate_and_lists_every_reject(tmp_path):
    line = Line(tmp_path, pictures_per_s=2.0)
    try:
        line.run()  # 8 NG frames within well under a second
        rejects = json.loads(line.get("/api/rejects").read())["rejects"]
        assert len(rejects) == 8 and sum(r["image"] for r in rejects) == 2
    finally:
        line.close()


def test_a_users_file_with_a_short_token_or_an_unknown_role_is_refused(tmp_path):
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": [{"name": "a", "role": "operator", "token": "short"}]}))
    with pytest.raises(AccessError, match="shorter than"):
        read_users(path)
    path.write_text(json.dumps({"users": [{"name": "a", "role": "admin", "token": "x" * 20}]}))
    with pytest.raises(AccessError, match="role"):
        read_users(path)


def test_the_page_speaks_tls_when_given_a_certificate(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    line = Line(tmp_path, cert=cert, key=key)
    try:
        assert line.page.url.startswith("https://")
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        assert line.get("/api/me", context=context).status == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # plain HTTP is not answered
            urllib.request.urlopen(line.url("/api/me").replace("https", "http"), timeout=5)
    finally:
        line.close()


def test_the_page_never_holds_up_the_frame_loop(tmp_path):
    """A client that connects and never reads: the loop still judges every frame (the view is an isolated sink)."""
    line = Line(tmp_path)
    try:
        stalled = threading.Event()

        def hold():
            with line.get("/api/events"):
                stalled.wait(10)

        t = threading.Thread(target=hold, daemon=True)
        t.start()
        line.run()
        assert line.stats.judged == len(VALUES)
        stalled.set()
    finally:
        line.close()


def test_the_head_that_flagged_a_reject_is_the_one_with_the_largest_normalised_score():
    norms = {"slsg": {"location": 0.01, "scale": 0.05}, "global": {"location": 30.0, "scale": 8.0}}
    assert flagged_by({"slsg": 0.2, "global": 45.0}, norms) == "slsg"      # z 3.8 against 1.9: raw sizes mislead
    assert flagged_by({"slsg": 0.05, "global": 70.0}, norms) == "global"
    assert flagged_by({"local": 3.0}, norms) is None and flagged_by({}, norms) is None


def test_a_shift_starts_at_the_latest_start_time_before_now_and_its_counts_start_there(tmp_path):
    at = datetime(2026, 3, 4, 7, 30).timestamp()
    assert shift_bounds(("06:00", "14:00", "22:00"), at) == (datetime(2026, 3, 4, 6, 0).timestamp(),
                                                             datetime(2026, 3, 4, 14, 0).timestamp())
    assert shift_bounds(("22:00",), at) == (datetime(2026, 3, 3, 22, 0).timestamp(),  # the night shift began yesterday
                                            datetime(2026, 3, 4, 22, 0).timestamp())
    assert shift_bounds((), at) is None
    with pytest.raises(ValueError, match="HH:MM"):
        WebConfig(shifts=("25:00",))
    line = Line(tmp_path, shifts=("06:00", "14:00"))
    now = [datetime(2026, 3, 4, 13, 50).timestamp()]
    line.page.view.clock = lambda: now[0]
    try:
        line.run()  # the run started mid-shift: what it counted so far is that shift's
        first = json.loads(line.get("/api/state").read())["shift"]
        assert first["since"] == datetime(2026, 3, 4, 6, 0).timestamp()
        assert first["counts"] == {"OK": 4, "NG": 8, "NO-DECISION": 0}
        now[0] = datetime(2026, 3, 4, 14, 1).timestamp()
        line.run()
        shift = json.loads(line.get("/api/state").read())
        assert shift["shift"]["since"] == datetime(2026, 3, 4, 14, 0).timestamp()
        assert shift["shift"]["counts"]["OK"] + shift["shift"]["counts"]["NG"] <= 12  # only the second run's frames
        assert shift["counts"]["OK"] == 8  # the run's own counts go on
    finally:
        line.close()
