"""What a log line, an MQTT message and a webhook body say: one record builder per kind, and strict JSON.

Every record is plain JSON: `json_line` refuses NaN and infinities (`allow_nan=False`); a value that is not
finite becomes `null` and the record names the fields that were, so no reader ever meets `NaN`.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from edge_runtime.pipeline import NO_DECISION, Judgement
from edge_runtime.sources.items import Dropped, SourceEvent
from edge_runtime.sources.stream import SUPERSEDED


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _finite(v: Any, path: str, bad: list[str]) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        bad.append(path)
        return None
    if isinstance(v, dict):
        return {k: _finite(x, f"{path}.{k}" if path else str(k), bad) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_finite(x, f"{path}[{i}]", bad) for i, x in enumerate(v)]
    return v


def json_line(record: dict) -> str:
    """Compact strict JSON; non-finite numbers become null and are listed under `non_finite`."""
    try:
        return json.dumps(record, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:
        bad: list[str] = []
        clean = _finite(record, "", bad)
        clean["non_finite"] = bad
        return json.dumps(clean, separators=(",", ":"), allow_nan=False, default=str)


def _round(v: float | None, nd: int = 6) -> float | None:
    return None if v is None or not math.isfinite(v) else round(v, nd)


def frame_record(j: Judgement) -> dict:
    f = j.frame
    return {
        "event": "frame",
        "id": f.id,
        **({"part": f.part} if f.part is not None else {}),
        "captured": round(f.captured, 6),
        "origin": f.origin,
        "score": _round(j.score),
        **({"heads": {k: _round(v) for k, v in j.heads.items()}} if j.heads else {}),
        "threshold": round(j.threshold, 6),
        "verdict": j.verdict,
        "version": j.version,
        **({"reason": j.reason, "detail": j.detail} if j.reason else {}),
        "latency_ms": {k: round(v, 3) for k, v in j.timings_ms.items()},
        **({"evidence": j.evidence} if j.evidence else {}),
    }


def needs_answer(d: Dropped) -> bool:
    """Whether the line must be told NO-DECISION for a dropped frame: every frame that was to be judged and could not
    be (unreadable, inference failed, the run stopped with it in hand). A live camera's frame superseded by a newer
    one before it was read is not a part asked about: the newer view of the same scene is judged instead (the event
    log still records it)."""
    return d.reason != SUPERSEDED


def drop_record(d: Dropped) -> dict:
    return {
        "event": "dropped",
        "id": d.id,
        **({"part": d.part} if d.part is not None else {}),
        "captured": round(d.captured, 6),
        "origin": d.origin,
        "verdict": NO_DECISION,
        "reason": d.reason,
    }


def source_record(ev: SourceEvent) -> dict:
    return {"event": ev.channel, "kind": ev.kind, "detail": ev.detail, "at": round(ev.at, 6)}
