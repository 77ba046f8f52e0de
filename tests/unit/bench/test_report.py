"""The bench's report and run order: tracing's cost pairs each traced run with the untraced run of its repeat."""

from __future__ import annotations

import pytest

from benchmarks.report import format_scenario, summarize
from benchmarks.scenarios import HELD, HELD_TRACED, HELD_TRACED_HTTP, Run, Scenario, Settings, run_scenario, scenarios


def _scenario(targets: tuple[str, ...]) -> Scenario:
    return Scenario(
        "send",
        "Send",
        targets,
        lambda bench, target, tag: {},
        (("events_per_s", "events/s (acked)", ",.0f"),),
        ratio=True,
        baseline=HELD,
    )


def test_tracing_cost_pairs_each_traced_run_with_the_untraced_run_of_its_repeat() -> None:
    # The machine slows down in the second repeat: each pair costs 10%, 20%, 10%, where the medians of the two
    # columns (1,000 and 900) happen to say 10% too, and their means would say 12.5%.
    runs: dict[str, list[Run]] = {
        HELD: [{"events_per_s": 1000.0}, {"events_per_s": 600.0}, {"events_per_s": 1100.0}],
        HELD_TRACED: [{"events_per_s": 900.0}, {"events_per_s": 480.0}, {"events_per_s": 990.0}],
    }
    summary = summarize(_scenario((HELD, HELD_TRACED)), runs)
    cost = summary["tracing_cost"][HELD_TRACED]
    assert cost["paired"] == pytest.approx([-0.1, -0.2, -0.1])
    assert cost["median_of_paired"] == pytest.approx(-0.1)
    assert cost["of_medians"] == pytest.approx(900 / 1000 - 1)
    table = format_scenario(1, _scenario((HELD, HELD_TRACED)), summary)
    assert "-10.0% [-10.0% / -20.0% / -10.0%], of medians -10.0%" in table


def test_pairs_are_what_the_medians_of_the_columns_are_not() -> None:
    # Drift that favours one column: the traced runs happened to land in fast repeats.
    runs: dict[str, list[Run]] = {
        HELD: [{"events_per_s": 1000.0}, {"events_per_s": 700.0}, {"events_per_s": 700.0}],
        HELD_TRACED: [{"events_per_s": 900.0}, {"events_per_s": 900.0}, {"events_per_s": 630.0}],
    }
    cost = summarize(_scenario((HELD, HELD_TRACED)), runs)["tracing_cost"][HELD_TRACED]
    assert cost["median_of_paired"] == pytest.approx(-0.1)
    assert cost["of_medians"] == pytest.approx(900 / 700 - 1)


def test_no_tracing_cost_without_both_columns() -> None:
    runs: dict[str, list[Run]] = {HELD: [{"events_per_s": 1000.0}]}
    assert "tracing_cost" not in summarize(_scenario((HELD,)), runs)


def _run_order(targets: tuple[str, ...], bench_repeats: int, scenario_repeats: int | None) -> list[str]:
    """The columns in the order `run_scenario` runs them; each column ran once per repeat."""
    order: list[str] = []

    def run(bench: object, target: str, tag: str) -> Run:
        order.append(target)
        return {"events_per_s": 1.0}

    class _Bench:
        settings = Settings(repeats=bench_repeats)

    metrics = (("events_per_s", "events/s", ",.0f"),)
    scenario = Scenario("send", "Send", targets, run, metrics, repeats=scenario_repeats)
    runs = run_scenario(_Bench(), scenario, lambda message: None)  # type: ignore[arg-type]
    assert {len(results) for results in runs.values()} == {scenario_repeats or bench_repeats}
    return order


def test_odd_repeats_run_the_columns_in_reverse_order() -> None:
    assert _run_order(("a", "b", "c"), 3, None) == ["a", "b", "c", "c", "b", "a", "a", "b", "c"]


def test_a_scenario_with_its_own_repeats_runs_them() -> None:
    """The tracing scenario runs more repeats than the bench's others: its target is close to what it measures."""
    assert _run_order(("a", "b"), 1, 4) == ["a", "b", "b", "a", "a", "b", "b", "a"]


def test_the_tracing_scenario_pairs_both_exports_with_the_untraced_sidecar() -> None:
    by_key = {scenario.key: scenario for scenario in scenarios(Settings(tracing_repeats=7))}
    tracing = by_key["tracing"]
    assert tracing.targets == (HELD, HELD_TRACED, HELD_TRACED_HTTP) and tracing.repeats == 7
    assert HELD_TRACED not in by_key["send"].targets  # measured once, in the tracing scenario
