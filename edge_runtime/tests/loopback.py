"""Real line-side servers on loopback, for the tests and the soak run: a mosquitto broker (plain and TLS +
password) and a pymodbus TCP server whose registers record every write. No mocks: the sinks speak the real
protocols, so a soak run or a test proves what the line would see.

mosquitto comes from Debian's packages (`.ci/run` installs it); without it `start_mosquitto` raises
`ServiceMissing`, which the tests turn into a skip (a failure under CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from edge_runtime.errors import SlsgError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


def wait_until(cond: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    return cond()


class ServiceMissing(SlsgError, RuntimeError):
    """A server these helpers start is not installed on this machine."""


# ---------------------------------------------------------------------- MQTT


@dataclass
class Broker:
    port: int
    tls_port: int
    ca: Path
    user: str
    password: str


def _run(cmd: list[str], cwd: Path) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(d: Path) -> None:
    """A throw-away CA and a server certificate for 127.0.0.1 (EC keys: fast to make)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=slsg-test-ca",
          "-days", "2"], d)
    _run(["openssl", "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"], d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
          "-out", "server.crt", "-days", "2", "-extfile", "san.ext"], d)


def start_mosquitto(d: Path):
    exe = shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)
    passwd = shutil.which("mosquitto_passwd")
    if not exe or not passwd or not shutil.which("openssl"):
        raise ServiceMissing("mosquitto (with mosquitto_passwd and openssl) is not installed here "
                             "(apt-get install mosquitto; .ci/run installs it)")
    _certificates(d)
    _run([passwd, "-b", "-c", str(d / "passwd"), "line1", "s3cret"], d)
    os.chmod(d / "passwd", 0o600)
    port, tls_port = free_port(), free_port()
    (d / "mosquitto.conf").write_text(
        f"user {getpass.getuser()}\npersistence true\npersistence_location {d}/\nper_listener_settings true\n"
        f"log_dest file {d}/broker.log\n"
        f"listener {port} 127.0.0.1\nallow_anonymous true\n"
        f"listener {tls_port} 127.0.0.1\nallow_anonymous false\npassword_file {d}/passwd\n"
        f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
    )
    return run_mosquitto(d, port, tls_port), Broker(port, tls_port, d / "ca.crt", "line1", "s3cret")


def run_mosquitto(d: Path, *ports: int) -> subprocess.Popen:
    """mosquitto with the configuration in `d` (written by `start_mosquitto`): a start, or a restart on its ports."""
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([exe, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        for port in ports:
            wait_for_port(port)
    except RuntimeError:
        proc.kill()
        raise RuntimeError(f"mosquitto did not start: {proc.communicate()[1].decode()[-2000:]}") from None
    return proc


@dataclass
class Message:
    topic: str
    payload: Any
    qos: int
    retain: bool


@dataclass
class Listener:
    """A subscriber to `topic/#` that keeps every message (JSON-decoded)."""

    broker: Broker
    topic: str
    messages: list[Message] = field(default_factory=list)
    client: Any = None

    def start(self) -> Listener:
        import paho.mqtt.client as mqtt

        try:
            c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        except AttributeError:
            c = mqtt.Client()
        subscribed = threading.Event()
        c.on_connect = lambda cl, *a: cl.subscribe(f"{self.topic}/#", qos=1) or cl.subscribe(self.topic, qos=1)
        c.on_subscribe = lambda *a: subscribed.set()
        c.on_message = lambda cl, ud, m: self.messages.append(
            Message(m.topic, json.loads(m.payload), m.qos, bool(m.retain)))
        c.connect("127.0.0.1", self.broker.port)
        c.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the test subscriber could not subscribe")
        time.sleep(0.1)  # both subscriptions
        self.client = c
        return self

    def on(self, suffix: str = "") -> list[Message]:
        topic = f"{self.topic}/{suffix}" if suffix else self.topic
        return [m for m in self.messages if m.topic == topic]

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# ---------------------------------------------------------------------- Modbus


class RecordingServer:
    """A pymodbus TCP server on loopback; every write to coils or holding registers is kept with its time."""

    def __init__(self, size: int = 200, port: Optional[int] = None) -> None:
        """`port`: the port of a server that went away, to come back on (a PLC restarting)."""
        from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext

        try:
            from pymodbus.datastore import ModbusDeviceContext as Device  # pymodbus ≥ 3.10
            devices_kw = "devices"
        except ImportError:
            from pymodbus.datastore import ModbusSlaveContext as Device
            devices_kw = "slaves"
        self.writes: list[tuple] = []
        server = self

        class Recording(ModbusSequentialDataBlock):
            kind = ""

            def setValues(self, address, values):  # noqa: N802 — pymodbus's name
                vals = values if isinstance(values, list) else [values]
                server.writes.append((self.kind, address, [int(v) for v in vals], time.monotonic()))
                return super().setValues(address, values)

        coils, regs = Recording(0, [0] * size), Recording(0, [0] * size)
        coils.kind, regs.kind = "coil", "reg"
        self.coils, self.regs = coils, regs
        device = Device(co=coils, hr=regs, di=ModbusSequentialDataBlock(0, [0] * size),
                        ir=ModbusSequentialDataBlock(0, [0] * size))
        self.context = ModbusServerContext(**{devices_kw: device, "single": True})
        self.port = port or free_port()
        self._thread: Optional[threading.Thread] = None
        self._loop: Any = None
        self._server: Any = None

    def start(self) -> RecordingServer:
        from pymodbus.server import ModbusTcpServer

        ready = threading.Event()

        async def main() -> None:
            self._server = ModbusTcpServer(self.context, address=("127.0.0.1", self.port))
            ready.set()
            await self._server.serve_forever()

        def serve() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            try:
                self._loop.run_until_complete(main())
            finally:
                ready.set()

        self._thread = threading.Thread(target=serve, name="modbus-server", daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_for_port(self.port)
        self._offset = self._probe_offset()
        return self

    def _probe_offset(self) -> int:
        """Some pymodbus versions store protocol address a at block index a + 1: find out by writing once."""
        from pymodbus.client import ModbusTcpClient

        c = ModbusTcpClient("127.0.0.1", port=self.port, timeout=2)
        c.connect()
        c.write_register(150, 7)
        c.close()
        probe = next(w for w in self.writes if w[0] == "reg" and w[2] == [7] and w[1] in (150, 151))
        self.writes.remove(probe)  # a client of the runtime may already be writing (a PLC that restarted)
        return probe[1] - 150

    def offset(self) -> int:
        return self._offset

    def coil_values(self, address: int) -> list[int]:
        off = self.offset()
        return [v for kind, a, vals, _ in self.writes if kind == "coil" for i, v in enumerate(vals)
                if a + i - off == address]

    def registers(self, address: int, count: int) -> list[int]:
        return [int(v) for v in self.regs.getValues(address + self.offset(), count)]

    def coil(self, address: int) -> int:
        return int(self.coils.getValues(address + self.offset(), 1)[0])

    def stop(self) -> None:
        if self._server is not None and self._loop is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(5)
        if self._thread is not None:
            self._thread.join(5)
