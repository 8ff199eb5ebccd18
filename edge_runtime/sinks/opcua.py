"""OPC UA line output (asyncua): a small information model a PLC, SCADA or MES reads or subscribes to.

`--opcua opc.tcp://HOST:PORT` serves, under `Objects/Inspection` (namespace `urn:slsg:edge`):

| node | type | meaning |
|---|---|---|
| `Ready` | Boolean | true only while frames are judged (status running or degraded) |
| `Status` | String | running / degraded / stalled / stopped |
| `StatusReason` | String | why |
| `Threshold` | Double | the decision threshold the verdicts use |
| `LastPart/ID` | Int64 | the frame's id (−1 before the first) |
| `LastPart/Part` | String | the part's ID the trigger gave (`--trigger`); empty when every frame is judged |
| `LastPart/Verdict` | String | OK / NG / NO-DECISION |
| `LastPart/Score` | Double | the decision score (NaN for an invalid output or no verdict) |
| `LastPart/Heads` | String | every head's score, as JSON |
| `LastPart/Timestamp` | DateTime | when the frame was captured |
| `Counters/{Judged,OK,NG,NoDecision}` | UInt32 | since the run started |
| `Inspect(PartId) → (Verdict, Score)` | method | with `--trigger opcua`: inspect one part now, return its answer |

A part that was to be judged and could not be is written as NO-DECISION, never left at the previous verdict.
The last part's nodes are written together (ID last), so a client that reads on a change of `ID` sees one part.

Security: with `cert_file`/`key_file` the server offers only Basic256Sha256 with sign & encrypt, and a client's
certificate must be in `trust_dir` to open a channel. Without certificates the server is open to anyone who can
reach it, so it starts only when `allow_anonymous` says so (loopback or a closed cell network).
The server runs its own asyncio loop in its own thread; the frame loop only hands it values.
"""

from __future__ import annotations

import asyncio
import collections
import json
import math
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from edge_runtime.errors import SlsgError
from edge_runtime.optional import require
from edge_runtime.pipeline import NG, NO_DECISION, OK
from edge_runtime.records import needs_answer
from edge_runtime.sinks.fanout import Report
from edge_runtime.trigger.requests import QueueTrigger

NAMESPACE = "urn:slsg:edge"


class OpcUaError(SlsgError, RuntimeError):
    """The OPC UA server cannot start as asked."""


@dataclass(frozen=True)
class OpcUaConfig:
    endpoint: str = "opc.tcp://127.0.0.1:4840"
    cert_file: Optional[Path] = None  # the server's certificate (DER or PEM) ...
    key_file: Optional[Path] = None  # ... and its private key: Basic256Sha256, sign & encrypt
    trust_dir: Optional[Path] = None  # client certificates allowed to connect (with a certificate)
    allow_anonymous: bool = False  # serve without security: anyone who reaches the port reads it

    def check(self) -> None:
        """Refuse a configuration that would be open by accident, or secure in name only."""
        if not self.endpoint.startswith("opc.tcp://"):
            raise OpcUaError(f"--opcua wants opc.tcp://HOST:PORT, got {self.endpoint!r}")
        if (self.cert_file is None) != (self.key_file is None):
            raise OpcUaError("give both --opcua-cert and --opcua-key (the server's certificate and private key)")
        if self.cert_file is None and not self.allow_anonymous:
            raise OpcUaError(
                "an OPC UA server without certificates lets anyone on the network read it: give --opcua-cert, "
                "--opcua-key and --opcua-trust DIR, or say --opcua-allow-anonymous on a closed network")
        if self.cert_file is not None and self.trust_dir is None:
            raise OpcUaError("--opcua-cert needs --opcua-trust DIR: the client certificates allowed to connect")
        for f in (self.cert_file, self.key_file, self.trust_dir):
            if f is not None and not Path(f).exists():
                raise OpcUaError(f"{f} does not exist")


class OpcUaSink:
    """Serves the inspection's state over OPC UA; a fan-out sink (its methods run in the fan-out's thread)."""

    name = "opcua"

    def __init__(self, cfg: OpcUaConfig, report: Report, threshold: float, timeout_s: float = 15.0,
                 parts: Optional[QueueTrigger] = None, answer_timeout_s: float = 5.0) -> None:
        cfg.check()
        require("asyncua", "opcua", "OPC UA")
        self.cfg, self.report, self.threshold = cfg, report, float(threshold)
        self.counts = {"Judged": 0, "OK": 0, "NG": 0, "NoDecision": 0}
        self._parts, self.answer_timeout_s = parts, answer_timeout_s  # `Inspect` asks `parts` for one part
        self._waiting: collections.deque[asyncio.Future] = collections.deque()  # Inspect calls, in trigger order
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._serve, name="opcua", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise OpcUaError(f"the OPC UA server at {cfg.endpoint} did not start within {timeout_s:.0f} s")
        if self._error is not None:
            raise OpcUaError(f"cannot serve OPC UA at {cfg.endpoint}: {self._error}") from None

    # ------------------------------------------------------------------ the server's own thread

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as e:  # reported to the constructor, which raises it
            self._error = e
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        from asyncua import Server, ua

        server = Server()
        await server.init()
        server.set_endpoint(self.cfg.endpoint)
        server.set_server_name("slsg-edge inspection")
        if self.cfg.cert_file is not None:
            from asyncua.crypto.truststore import TrustStore
            from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
            await server.load_certificate(str(self.cfg.cert_file))
            await server.load_private_key(str(self.cfg.key_file))
            store = TrustStore([Path(self.cfg.trust_dir)], [])
            await store.load()
            options = CertificateValidatorOptions.TRUSTED_VALIDATION | CertificateValidatorOptions.PEER_CLIENT
            server.set_certificate_validator(CertificateValidator(options, store))
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        server.set_identity_tokens([ua.AnonymousIdentityToken])
        idx = await server.register_namespace(NAMESPACE)
        root = await server.nodes.objects.add_object(idx, "Inspection")
        last = await root.add_object(idx, "LastPart")
        counters = await root.add_object(idx, "Counters")
        v = ua.VariantType
        self._nodes = {
            "Ready": await root.add_variable(idx, "Ready", False, v.Boolean),
            "Status": await root.add_variable(idx, "Status", "stalled", v.String),
            "StatusReason": await root.add_variable(idx, "StatusReason", "starting", v.String),
            "Threshold": await root.add_variable(idx, "Threshold", self.threshold, v.Double),
            "Verdict": await last.add_variable(idx, "Verdict", "", v.String),
            "Score": await last.add_variable(idx, "Score", math.nan, v.Double),
            "Heads": await last.add_variable(idx, "Heads", "{}", v.String),
            "Timestamp": await last.add_variable(idx, "Timestamp", datetime.now(timezone.utc), v.DateTime),
            "Part": await last.add_variable(idx, "Part", "", v.String),
            "ID": await last.add_variable(idx, "ID", -1, v.Int64),
            **{k: await counters.add_variable(idx, k, 0, v.UInt32) for k in self.counts},
        }
        if self._parts is not None:
            await root.add_method(idx, "Inspect", self._inspect, [v.String], [v.String, v.Double])
        self._types = {name: await node.read_data_type_as_variant_type() for name, node in self._nodes.items()}
        await server.start()
        self._server = server

    async def _write(self, values: dict[str, Any]) -> None:
        from asyncua import ua

        for name, value in values.items():  # in the caller's order: the part's ID goes last
            await self._nodes[name].write_value(ua.Variant(value, self._types[name]))

    def _set(self, values: dict[str, Any]) -> None:
        future = asyncio.run_coroutine_threadsafe(self._write(values), self._loop)
        try:
            future.result(timeout=5.0)
        except Exception as e:  # noqa: BLE001 — an OPC UA hiccup costs this update, never the line
            self.report({"event": "sink_error", "sink": self.name, "error": f"{type(e).__name__}: {e}"})

    async def _inspect(self, _parent: Any, part_id: Any) -> list:
        """The trigger method: one part asked for now, its verdict and score returned (NO-DECISION when no answer
        is out within `answer_timeout_s`; the pipeline's own deadline answers well before)."""
        from asyncua import ua

        part = str(getattr(part_id, "Value", part_id) or "")
        future = self._loop.create_future()
        self._waiting.append(future)  # the loop's own thread: calls are queued in the order their parts are fired
        self._parts.fire(part or None)
        try:
            verdict, score = await asyncio.wait_for(future, self.answer_timeout_s)
        except asyncio.TimeoutError:
            verdict, score = NO_DECISION, math.nan
        return [ua.Variant(verdict, ua.VariantType.String), ua.Variant(score, ua.VariantType.Double)]

    def _answer_call(self, verdict: str, score: float) -> None:
        """Hands a triggered part's answer to the Inspect call that asked for it (parts are answered in order)."""
        if not self._waiting:
            return
        future = self._waiting.popleft()

        def resolve() -> None:
            if not future.done():  # a call that timed out has its NO-DECISION already
                future.set_result((verdict, score))

        self._loop.call_soon_threadsafe(resolve)

    # ------------------------------------------------------------------ the sink interface

    def _part(self, frame_id: int, verdict: str, score: float, heads: dict, captured: float,
              part: str | None) -> None:
        self.counts["Judged" if verdict != NO_DECISION else "NoDecision"] += 1
        if verdict in (OK, NG):
            self.counts[verdict] += 1
        self._set({
            "Verdict": verdict,
            "Score": score,
            "Heads": json.dumps(heads),
            "Timestamp": datetime.fromtimestamp(captured, timezone.utc),
            "Part": part or "",
            **dict(self.counts),
            "ID": int(frame_id),
        })
        if part is not None and self._parts is not None:  # after LastPart is written: a caller reads the same part
            self._answer_call(verdict, score)

    def on_frame(self, j: Any) -> None:
        score = float(j.score) if not j.invalid and math.isfinite(j.score) else math.nan
        heads = {k: (float(s) if math.isfinite(s) else None) for k, s in (j.heads or {}).items()}
        self._part(j.frame.id, NG if j.ng else OK, score, heads, j.frame.captured, j.frame.part)

    def on_drop(self, d: Any) -> None:
        if needs_answer(d):
            self._part(d.id, NO_DECISION, math.nan, {}, d.captured, d.part)

    def on_event(self, ev: Any) -> None:
        pass

    def on_status(self, change: Any) -> None:
        self._set({"Status": change.status, "StatusReason": change.reason, "Ready": bool(change.judging)})

    def close(self) -> None:
        """Ready false and status stopped are served for a moment, then the server stops."""
        if getattr(self, "_server", None) is None:
            return
        self._set({"Ready": False, "Status": "stopped", "StatusReason": "the run ended"})
        asyncio.run_coroutine_threadsafe(self._server.stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._server = None
