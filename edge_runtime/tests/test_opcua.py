"""OPC UA against a real asyncua client on loopback: the information model follows the run (verdicts, a part
without a verdict, status and Ready, counters), an open server only when allowed, and Basic256Sha256 with sign &
encrypt that lets in only the client certificates in the trust folder."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("asyncua", reason="asyncua is not installed (pip install 'slsg[opcua]')")

from asyncua import Client  # noqa: E402
from asyncua.crypto.cert_gen import setup_self_signed_certificate  # noqa: E402
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from typer.testing import CliRunner

from edge_runtime.backends import select_backend  # noqa: E402
from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.cli import app
from edge_runtime.pipeline import Judge, run_pipeline  # noqa: E402
from edge_runtime.sinks.fanout import Fanout  # noqa: E402
from edge_runtime.sinks.opcua import NAMESPACE, OpcUaConfig, OpcUaError, OpcUaSink  # noqa: E402
from edge_runtime.sources.items import Dropped  # noqa: E402
from edge_runtime.sources.spec import SourceSpec, open_source  # noqa: E402
from edge_runtime.status import StatusTracker  # noqa: E402
from edge_runtime.tests.conftest import write_video  # noqa: E402
from edge_runtime.tests.loopback import free_port, wait_until  # noqa: E402
from edge_runtime.trigger.frames import triggered_stream
from edge_runtime.trigger.requests import QueueTrigger

NODES = ("Ready", "Status", "Threshold", "LastPart/ID", "LastPart/Verdict", "LastPart/Score", "LastPart/Heads",
         "Counters/Judged", "Counters/OK", "Counters/NG", "Counters/NoDecision")


async def _read(client: Client) -> dict:
    idx = await client.get_namespace_index(NAMESPACE)
    values = {}
    for path in NODES:
        node = await client.nodes.objects.get_child([f"{idx}:Inspection", *(f"{idx}:{p}" for p in path.split("/"))])
        values[path] = await node.read_value()
    return values


def read_anonymously(endpoint: str) -> dict:
    async def go() -> dict:
        async with Client(endpoint, timeout=10) as client:
            return await _read(client)

    return asyncio.run(go())


def test_an_open_server_is_refused_unless_allowed_and_a_half_secure_one_always() -> None:
    with pytest.raises(OpcUaError, match="--opcua-allow-anonymous"):
        OpcUaConfig("opc.tcp://127.0.0.1:4840").check()
    with pytest.raises(OpcUaError, match="--opcua-trust"):
        OpcUaConfig("opc.tcp://127.0.0.1:4840", Path(__file__), Path(__file__)).check()
    with pytest.raises(OpcUaError, match="both"):
        OpcUaConfig("opc.tcp://127.0.0.1:4840", cert_file=Path(__file__), allow_anonymous=True).check()


def test_the_model_follows_the_run_and_a_part_without_a_verdict_is_no_decision(bundle_dir: Path, tmp_path: Path):
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    b = load_bundle(bundle_dir)
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    reports: list = []
    sink = OpcUaSink(OpcUaConfig(endpoint, allow_anonymous=True), reports.append, threshold=b.threshold.value)
    status = StatusTracker()
    fan = Fanout([status, sink])
    status.start()
    stop = threading.Event()
    video = write_video(tmp_path / "v.avi", [20, 220, 30, 240])
    loop = threading.Thread(target=run_pipeline, args=(open_source(SourceSpec(video=video, loop=True)), judge, fan),
                            kwargs={"stop": stop})
    try:
        loop.start()
        during = wait_until(lambda: (v := read_anonymously(endpoint))["Counters/Judged"] >= 4 and v, timeout_s=30)
        stop.set()
        loop.join(30)
        fan.on_drop(Dropped(10_000, time.time(), "inference failed: backend error", "camera0"))
        status.stop("the run ended")
        time.sleep(0.3)  # the fan-out's thread hands the values over
        after = read_anonymously(endpoint)
    finally:
        stop.set()
        fan.close()
    assert not [r for r in reports if r.get("event") == "sink_error"], reports
    assert during["Ready"] is True and during["Status"] == "running", during
    assert during["LastPart/Verdict"] in ("OK", "NG") and during["LastPart/ID"] >= 3
    assert during["Counters/OK"] + during["Counters/NG"] >= during["Counters/Judged"]  # read one after another
    assert during["Counters/OK"] >= 1 and during["Counters/NG"] >= 1 and during["Threshold"] == b.threshold.value
    assert after["LastPart/ID"] == 10_000 and after["LastPart/Verdict"] == "NO-DECISION"  # never the last verdict
    assert after["Counters/NoDecision"] == 1 and after["LastPart/Score"] != after["LastPart/Score"]  # NaN
    assert after["Ready"] is False and after["Status"] == "stopped"


def _certificate(folder: Path, name: str, uri: str, use) -> tuple[Path, Path]:
    """A self-signed certificate in `folder` (DER) and its key beside the folder (a trust folder holds no keys)."""
    key, cert = folder.parent / f"{name}.key.pem", folder / f"{name}.der"
    asyncio.run(setup_self_signed_certificate(key, cert, uri, "localhost", [use], {"commonName": name}))
    return cert, key


def test_sign_and_encrypt_lets_in_only_trusted_client_certificates(tmp_path: Path) -> None:
    trust, other = tmp_path / "trusted", tmp_path / "other"
    trust.mkdir()
    other.mkdir()
    server_cert, server_key = _certificate(tmp_path, "server", "urn:slsg:edge:server", ExtendedKeyUsageOID.SERVER_AUTH)
    client_cert, client_key = _certificate(trust, "client", "urn:slsg:test:client", ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger_cert, stranger_key = _certificate(other, "stranger", "urn:slsg:test:stranger",
                                               ExtendedKeyUsageOID.CLIENT_AUTH)
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    sink = OpcUaSink(OpcUaConfig(endpoint, server_cert, server_key, trust), print, threshold=0.5)

    async def read_as(cert: Path, key: Path, uri: str) -> float:
        client = Client(endpoint, timeout=10)
        client.application_uri = uri
        await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                                  server_certificate=str(server_cert))
        async with client:
            return (await _read(client))["Threshold"]

    try:
        assert asyncio.run(read_as(client_cert, client_key, "urn:slsg:test:client")) == pytest.approx(0.5)
        with pytest.raises(Exception):  # noqa: B017 — asyncua raises its own status errors on a refused channel
            asyncio.run(read_as(stranger_cert, stranger_key, "urn:slsg:test:stranger"))
        with pytest.raises(Exception):  # noqa: B017 — no security: the server offers no such endpoint
            read_anonymously(endpoint)
    finally:
        sink.close()


def test_run_refuses_an_open_server_before_the_camera_opens(bundle_dir: Path, tmp_path: Path) -> None:


    video = write_video(tmp_path / "v.avi", [20, 220])
    res = CliRunner().invoke(app, ["run", "--bundle", str(bundle_dir), "--video", str(video), "--log",
                                   str(tmp_path / "e.jsonl"), "--quiet", "--opcua", "opc.tcp://127.0.0.1:4840"])
    assert res.exit_code == 2 and "--opcua-allow-anonymous" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "e.jsonl").exists()  # refused before anything ran


def test_the_inspect_method_triggers_one_part_and_returns_its_own_answer(bundle_dir: Path, tmp_path: Path) -> None:
    """`--trigger opcua`: a client calls Inspect(PartId) and gets that part's verdict; a part after the video ended is
    NO-DECISION; LastPart/Part names the part."""

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    b = load_bundle(bundle_dir)
    judge = Judge(select_backend(b, "onnx", threads=1), b.threshold.value)
    parts = QueueTrigger("opcua")
    reports: list = []
    sink = OpcUaSink(OpcUaConfig(endpoint, allow_anonymous=True), reports.append, threshold=b.threshold.value,
                     parts=parts, answer_timeout_s=10)
    fan = Fanout([sink])
    stream = triggered_stream(open_source(SourceSpec(video=write_video(tmp_path / "v.avi", [20, 220]))), parts, 3000)
    loop = threading.Thread(target=run_pipeline, args=(stream, judge, fan), daemon=True)

    async def inspect(ids: list[str]) -> tuple[list, str]:
        async with Client(endpoint, timeout=10) as client:
            idx = await client.get_namespace_index(NAMESPACE)
            inspection = await client.nodes.objects.get_child([f"{idx}:Inspection"])
            method = await inspection.get_child([f"{idx}:Inspect"])
            answers = [await inspection.call_method(method, part) for part in ids]
            part = await inspection.get_child([f"{idx}:LastPart", f"{idx}:Part"])
            return answers, await part.read_value()

    try:
        loop.start()
        answers, last_part = asyncio.run(inspect(["SN-7", "SN-8", "SN-9"]))
    finally:
        parts.close()
        loop.join(10)
        fan.close()
    assert [a[0] for a in answers] == ["OK", "NG", "NO-DECISION"]
    assert answers[0][1] == answers[0][1] and answers[2][1] != answers[2][1]  # a score, then NaN for no verdict
    assert last_part == "SN-9" and not [r for r in reports if r.get("event") == "sink_error"]
