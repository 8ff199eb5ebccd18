"""The shared timing rules: percentiles equal numpy's, cases alternate, the ORT profile aggregates by op."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.bench import profile_events_by_op
from edge_runtime.timing import Case, alternating_order, percentile, run_alternating, summarize


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1001])
def test_percentiles_match_numpy(n: int) -> None:
    samples = np.random.default_rng(n).lognormal(3.0, 0.5, n)
    for q in (0, 1, 50, 90, 99, 99.9, 100):
        assert percentile(samples, q) == pytest.approx(np.percentile(samples, q), rel=1e-12, abs=1e-12)
    s = summarize(samples)
    assert (s.p50_ms, s.p90_ms, s.p99_ms) == pytest.approx(tuple(np.percentile(samples, [50, 90, 99])))
    assert s.mean_ms == pytest.approx(samples.mean()) and s.fps == pytest.approx(1000 / samples.mean())


def test_percentile_refuses_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_every_round_runs_every_case_once_in_a_repeatable_order() -> None:
    names = ["a", "b", "c", "d"]
    order = alternating_order(names, 5)
    assert [sorted(order[i:i + 4]) for i in range(0, 20, 4)] == [names] * 5
    assert order == alternating_order(names, 5) and alternating_order([], 5) == []


def test_no_case_follows_the_same_case_in_most_rounds() -> None:
    """An engine-only case right after its own end-to-end case finds that model's weights in cache: a fixed
    order made that pairing every round and the end-to-end case look slower than it is."""
    names = ["ov", "ov (engine)", "ort", "ort (engine)", "torch", "bf16"]
    rounds, k = 60, len(names)
    order = alternating_order(names, rounds)
    pairs: dict[tuple[str, str], int] = {}
    for r in range(rounds):
        round_ = order[r * k:(r + 1) * k]
        for x, y in zip(round_, round_[1:]):
            pairs[x, y] = pairs.get((x, y), 0) + 1
    assert max(pairs.values()) < rounds / 3


def test_run_alternating_warms_up_then_times_in_alternation() -> None:
    calls: list[str] = []
    ticks = iter(range(0, 10_000, 2))  # every call of the clock advances 2 s

    def case(name: str) -> Case:
        return Case(name, lambda: calls.append(name) or {"infer": 1.0})

    out = run_alternating([case("a"), case("b")], warmup=1, iterations=3, clock=lambda: next(ticks))
    assert calls == alternating_order(["a", "b"], 1) + alternating_order(["a", "b"], 3)
    assert out["a"].end_to_end_ms == [2000.0] * 3 and out["b"].stages_ms["infer"] == [1.0] * 3
    assert out["a"].summary()["end_to_end"]["n"] == 3


def test_run_alternating_refuses_duplicate_names() -> None:
    with pytest.raises(ValueError):
        run_alternating([Case("a", dict), Case("a", dict)], 0, 1)


def _event(cat: str, name: str, ts: int, dur: int, op: str | None = None) -> dict:
    e = {"cat": cat, "name": name, "ts": ts, "dur": dur}
    if op:
        e["args"] = {"op_name": op}
    return e


def test_profile_drops_the_first_run_and_ranks_op_types() -> None:
    events = [_event("Session", "model_run", 0, 100), _event("Node", "c0_kernel_time", 10, 90, "Conv")]
    for r in range(2):
        t = 1000 * (r + 1)
        events += [
            _event("Session", "model_run", t, 50),
            _event("Node", "c0_kernel_time", t + 1, 30, "Conv"),
            _event("Node", "c0_fence_before", t + 1, 5, "Conv"),
            _event("Node", "c1_kernel_time", t + 31, 10, "Conv"),
            _event("Node", "r_kernel_time", t + 41, 10, "Relu"),
        ]
    prof = profile_events_by_op(events, top=1)
    assert prof["runs"] == 2 and prof["run_ms"] == pytest.approx(0.05)
    assert prof["top_ops"] == [{"op": "Conv", "ms": pytest.approx(0.04), "share": pytest.approx(0.8), "nodes": 2}]
    with pytest.raises(ValueError):
        profile_events_by_op(events[:2])
