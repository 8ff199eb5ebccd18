"""`slsg-edge info` and `slsg-edge run`: tables, clean refusals, a complete log after SIGINT, no torch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import typer
from typer.testing import CliRunner

from edge_runtime.commands import info, run
from edge_runtime.tests.conftest import gray, write_video
from edge_runtime.tests.support import OPTIONAL_PACKAGES, make_bundle, run_edge_cli

app = typer.Typer()
app.command("info")(info.command)
app.command("run")(run.command)
runner = CliRunner()
CLI = "import sys; from edge_runtime.cli import app; sys.argv[0] = 'slsg-edge'; app()"


def _records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _frames_logged(path: Path) -> int:
    """Frame records written so far (the last line may still be half-written)."""
    if not path.exists():
        return 0
    return sum('"event": "frame"' in line or '"event":"frame"' in line for line in path.read_text().splitlines())


def test_info_lists_manifest_files_and_engines(bundle_dir: Path) -> None:
    (bundle_dir / "engines").mkdir()
    (bundle_dir / "engines" / "orin_fp16.engine").write_bytes(b"\x01" * 100)
    (bundle_dir / "engines" / "orin_fp16.json").write_text('{"gpu": "Orin", "precision": "fp16"}')
    res = runner.invoke(app, ["info", str(bundle_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for text in (
        "slsg.bundle v2",
        "model.onnx",
        "calibration/images.json",
        "orin_fp16.engine",
        "orin_fp16.json is not an slsg engine sidecar",     # a foreign sidecar is named, not trusted
    ):
        assert text in res.output


def test_info_refuses_a_damaged_bundle_without_traceback(bundle_dir: Path) -> None:
    with open(bundle_dir / "model.onnx", "r+b") as f:
        f.truncate(10)
    res = runner.invoke(app, ["info", str(bundle_dir)], env={"COLUMNS": "200"})
    assert res.exit_code == 2 and "truncated" in res.output and "Traceback" not in res.output


def test_run_on_an_image_folder_logs_every_file_and_saves_ng(bundle_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, v in enumerate([10, 200, 90, 250]):
        cv2.imwrite(str(folder / f"{i:02d}.png"), gray(v))
    (folder / "02b.png").write_bytes(b"broken")
    log, ng = tmp_path / "events.jsonl", tmp_path / "ng"
    res = runner.invoke(
        app,
        [
            "run",
            "--bundle",
            str(bundle_dir),
            "--images",
            str(folder),
            "--log",
            str(log),
            "--save-ng",
            str(ng),
            "--quiet",
            "--backend",
            "onnx",
            "--threads",
            "1",
        ],
        env={"COLUMNS": "200"},
    )
    assert res.exit_code == 0, res.output
    recs = _records(log)
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end"
    assert recs[0]["selection"] == {"how": "asked", "picked": "onnx", "why": "--backend onnx"}
    per_frame = {r["origin"]: r for r in recs if r["event"] in ("frame", "dropped")}
    assert [per_frame[n].get("verdict") for n in ("00.png", "01.png", "02.png", "03.png")] == [
        "OK",
        "NG",
        "OK",
        "NG",
    ]
    assert per_frame["02b.png"]["event"] == "dropped"
    assert recs[-1]["ok"] == 2 and recs[-1]["ng"] == 2 and recs[-1]["dropped"] == 1
    assert len(list(ng.glob("*_frame.png"))) == 2 and len(list(ng.glob("*_overlay.jpg"))) == 2
    ng_id = per_frame["01.png"]["id"]
    assert per_frame["01.png"]["evidence"] == "queued"  # the frame line is written before the image is
    saved = [r for r in recs if r["event"] == "evidence" and r["id"] == ng_id]
    assert len(saved) == 1 and saved[0]["saved"] and all(Path(p).exists() for p in saved[0]["saved"])
    assert len({r["run_id"] for r in recs}) == 1 and recs[-1]["lost"] == 0


def test_run_refuses_bad_input_with_a_message(bundle_dir: Path, tmp_path: Path) -> None:
    log = ["--log", str(tmp_path / "e.jsonl")]  # the log opens first: keep it out of the working directory
    res = runner.invoke(app, ["run", "--bundle", str(bundle_dir), "--video", str(tmp_path / "none.avi"), *log])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["run", "--bundle", str(tmp_path / "nobundle"), "--images", str(tmp_path), *log])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["run", "--bundle", str(bundle_dir), *log])
    assert res.exit_code == 2 and "exactly one source" in res.output
    assert [r["event"] for r in _records(tmp_path / "e.jsonl")] == ["error", "error"]  # each refusal is logged


def test_sigint_mid_run_exits_0_with_a_complete_log(bundle_dir: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mkv", [20, 220, 60, 180])
    log = tmp_path / "events.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLI,
            "run",
            "--bundle",
            str(bundle_dir),
            "--video",
            str(video),
            "--loop",
            "--log",
            str(log),
            "--quiet",
            "--backend",
            "onnx",
            "--threads",
            "1",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60  # SIGINT once several frames are judged, however busy the machine is
    while time.monotonic() < deadline and _frames_logged(log) < 6:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    recs = _records(log)  # every line parses
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end" and recs[-1]["stopped"]
    ids = sorted(r["id"] for r in recs if r["event"] in ("frame", "dropped"))
    assert len(ids) > 4 and ids == list(range(len(ids))) and recs[-1]["frames"] == len(ids)


def test_a_frame_runs_in_a_fresh_interpreter_without_torch(bundle_dir: Path) -> None:
    code = f"""
import sys
import numpy as np
from edge_runtime.backends import select_backend
from edge_runtime.bundle import load_bundle
from edge_runtime.pipeline import Judge
from edge_runtime.sources.items import Frame
import edge_runtime.runner, edge_runtime.commands.run, edge_runtime.commands.info
b = load_bundle({str(bundle_dir)!r})
j = Judge(select_backend(b, "auto", threads=1), b.threshold.value).judge(
    Frame(0, 0.0, np.full((30, 40, 3), 250, np.uint8), "x", 0.0, 0.0))
assert j.ng
from edge_runtime.backends.openvino_backend import openvino_available
if openvino_available():  # the OpenVINO backend (and auto's probe of it) stay torch-free too
    assert Judge(select_backend(b, "openvino", threads=1), b.threshold.value).judge(
        Frame(1, 0.0, np.full((30, 40, 3), 250, np.uint8), "x", 0.0, 0.0)).ng
    assert "openvino" in sys.modules
bad = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "slsg")))
print("LOADED", bad)
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr
    assert "LOADED []" in out.stdout


def test_a_line_runs_with_the_runtime_alone_no_optional_package(bundle_dir: Path, tmp_path: Path) -> None:
    """A device with only the runtime's own dependencies (no onnx, OpenVINO, TensorRT, MQTT, Modbus, OPC UA, Aravis)
    still judges frames and logs them: every optional package is imported where its feature runs, never on the way."""
    images = tmp_path / "images"
    images.mkdir()
    for i, v in enumerate([20, 250]):
        cv2.imwrite(str(images / f"{i}.png"), gray(v))
    log = tmp_path / "events.jsonl"
    out, proc = run_edge_cli(["run", "--bundle", str(bundle_dir), "--images", str(images), "--backend", "auto",
                              "--threads", "1", "--quiet", "--log", str(log)], without=OPTIONAL_PACKAGES)
    assert out == {"torch": False, "code": 0}, proc.stderr
    verdicts = [r["verdict"] for r in _records(log) if r["event"] == "frame"]
    assert verdicts == ["OK", "NG"]


def _run(args: list, bundle: Path) -> object:
    return runner.invoke(app, ["run", "--bundle", str(bundle), "--quiet", "--backend", "onnx", "--threads", "1",
                               *args], env={"COLUMNS": "200"})


def test_run_exits_2_when_the_log_or_ng_folder_cannot_be_created(bundle_dir: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", [20, 220])
    (tmp_path / "file").write_text("")
    res = _run(["--video", str(video), "--log", str(tmp_path / "file" / "e.jsonl")], bundle_dir)
    assert res.exit_code == 2 and "cannot create the event log" in res.output and "Traceback" not in res.output
    log = tmp_path / "e.jsonl"
    res = _run(["--video", str(video), "--log", str(log), "--save-ng", str(tmp_path / "file" / "ng")], bundle_dir)
    assert res.exit_code == 2 and "cannot create the NG folder" in res.output
    recs = _records(log)  # the refusal is in the log too, as its last line
    assert recs[-1]["event"] == "error" and "NG folder" in recs[-1]["error"]


def test_a_model_that_outputs_nan_raises_the_alarm_and_exits_3(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "nan.slsg", nan_at=7)
    video = write_video(tmp_path / "v.avi", [20] + [7] * 6 + [20])
    log = tmp_path / "e.jsonl"
    res = _run(["--video", str(video), "--log", str(log), "--max-invalid", "4"], bundle)
    assert res.exit_code == 3 and "invalid output" in res.output
    recs = _records(log)
    assert not [r for r in recs if r.get("verdict") == "OK" and r["id"] > 0]
    end = recs[-1]
    assert end["event"] == "end" and end["invalid"] == 4 and end["ok"] == 1 and "invalid output" in end["alarm"]
    assert end["status_transitions"][-1] == "stopped"


def test_sigterm_during_a_threaded_live_run_exits_0_with_a_complete_log(bundle_dir: Path, tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mkv", [20, 220, 60, 180] * 5, fps=50.0)
    log, ng = tmp_path / "events.jsonl", tmp_path / "ng"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, "run", "--bundle", str(bundle_dir), "--video", str(video), "--loop",
         "--realtime", "--log", str(log), "--save-ng", str(ng), "--quiet", "--backend", "onnx", "--threads", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (not log.exists() or log.read_text().count('"event":"frame"') < 30):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out.decode()
    recs = _records(log)
    assert recs[0]["event"] == "start" and recs[-1]["event"] == "end" and recs[-1]["stopped"]
    ids = sorted(r["id"] for r in recs if r["event"] in ("frame", "dropped"))
    assert ids == list(range(len(ids))) and recs[-1]["frames"] == len(ids) >= 30
    assert recs[-1]["lost"] == 0 and recs[-1]["status_transitions"][-1] == "stopped"
    queued = {r["id"] for r in recs if r.get("evidence") == "queued"}
    saved = {r["id"] for r in recs if r["event"] == "evidence" and r["saved"]}
    assert queued and queued == saved  # every NG image queued before SIGTERM was written before exit


def test_auto_says_in_the_start_record_what_it_picked_and_why(bundle_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    cv2.imwrite(str(folder / "00.png"), gray(10))
    log = tmp_path / "events.jsonl"
    res = runner.invoke(app, ["run", "--bundle", str(bundle_dir), "--images", str(folder), "--log", str(log),
                              "--quiet", "--threads", "1"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    start = _records(log)[0]
    sel = start["selection"]
    assert sel["how"] == "auto" and start["backend"].startswith(sel["picked"] + ":") and sel["why"]
    if "p50_ms" in sel:  # more than one CPU backend installed: measured, and cached in the bundle
        assert sel["picked"] in sel["p50_ms"] and Path(sel["cache"]).is_file()


def test_every_run_option_sits_in_a_help_panel_named_for_what_it_is_about() -> None:
    run = typer.main.get_command(app).commands["run"]
    loose = [p.name for p in run.params if getattr(p, "rich_help_panel", None) is None]
    assert not loose, f"options of `slsg-edge run` outside a help panel: {loose}"
    res = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    for panel in ("Source", "Model and backend", "Decision", "Line outputs", "Event log and NG images"):
        assert panel in res.output
