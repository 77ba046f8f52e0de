"""Medians, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.scenarios import HELD, HELD_TRACED, HELD_TRACED_HTTP, TARGET_LABELS, Run, Scenario

__all__ = ["format_scenario", "machine_facts", "summarize", "write_json"]


def machine_facts() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "grpcio": metadata.version("grpcio"),
        "protobuf": metadata.version("protobuf"),
        "httpx": metadata.version("httpx"),
    }


def summarize(scenario: Scenario, runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Per target, the median of every numeric result; with `ratio`, each other median / the baseline's median."""
    medians: dict[str, dict[str, float]] = {}
    for target, results in runs.items():
        keys = [key for key, value in results[0].items() if type(value) in (int, float)]
        medians[target] = {key: statistics.median(result[key] for result in results) for key in keys}
    summary: dict[str, Any] = {"title": scenario.title, "median": medians, "runs": runs}
    baseline = scenario.baseline
    if scenario.ratio and baseline in medians:
        key = scenario.metrics[0][0]
        summary[f"ratio_to_{baseline}"] = {
            target: {key: medians[target][key] / medians[baseline][key]} for target in medians if target != baseline
        }
    costs = _tracing_costs(scenario, runs, medians)
    if costs:
        summary["tracing_cost"] = costs
    return summary


_TRACED = (HELD_TRACED, HELD_TRACED_HTTP)
"""The columns that export every span; each is compared with HELD, the same sidecar untraced."""


def _tracing_costs(
    scenario: Scenario, runs: dict[str, list[Run]], medians: dict[str, dict[str, float]]
) -> dict[str, dict[str, Any]]:
    """What tracing costs in the first metric (throughput), per traced column: each repeat's traced run against the
    untraced run of the same repeat (measured minutes apart, so the machine's drift from repeat to repeat cancels),
    their median, and the ratio of the two columns' medians."""
    key = scenario.metrics[0][0]
    costs: dict[str, dict[str, Any]] = {}
    for target in _TRACED:
        if target not in runs or HELD not in runs:
            continue
        paired = [traced[key] / held[key] - 1 for held, traced in zip(runs[HELD], runs[target], strict=True)]
        costs[target] = {
            "metric": key,
            "paired": paired,
            "median_of_paired": statistics.median(paired),
            "of_medians": medians[target][key] / medians[HELD][key] - 1,
        }
    return costs


def _cell(results: list[Run], median: float, key: str, spec: str) -> str:
    if len(results) == 1:
        return format(median, spec)
    return f"{format(median, spec)} [{' / '.join(format(result[key], spec) for result in results)}]"


def _cost_cell(cost: dict[str, Any]) -> str:
    each = " / ".join(f"{value:+.1%}" for value in cost["paired"])
    return f"{cost['median_of_paired']:+.1%} [{each}], of medians {cost['of_medians']:+.1%}"


def _acks(result: Run) -> str:
    text = ", ".join(f"{name} {count:,}" for name, count in sorted(result["statuses"].items()))
    offered = result.get("offered")
    if offered is not None and offered != sum(result["statuses"].values()):
        text += f"/{offered:,} sent"
    return text + (", capped" if result.get("capped") else "")


def _statuses(results: list[Run]) -> str:
    texts = [_acks(result) for result in results]
    return texts[0] + (" (each run)" if len(texts) > 1 else "") if len(set(texts)) == 1 else " | ".join(texts)


def format_scenario(number: int, scenario: Scenario, summary: dict[str, Any]) -> str:
    """The scenario as a table: one column per target, medians first and each run in brackets."""
    runs: dict[str, list[Run]] = summary["runs"]
    medians: dict[str, dict[str, float]] = summary["median"]
    targets = list(scenario.targets)
    rows = [["", *(TARGET_LABELS[target] for target in targets)]]
    for key, label, spec in scenario.metrics:
        rows.append([label, *(_cell(runs[t], medians[t][key], key, spec) for t in targets)])
    if f"ratio_to_{scenario.baseline}" in summary:
        key, label, _ = scenario.metrics[0]
        ratios = summary[f"ratio_to_{scenario.baseline}"]
        rows.append(
            [
                f"{label} ÷ {TARGET_LABELS[scenario.baseline]}",
                *(f"{ratios[t][key]:.3f}" if t in ratios else "" for t in targets),
            ]
        )
    costs = summary.get("tracing_cost", {})
    if costs:
        rows.append(
            [
                f"tracing cost (each run ÷ that repeat's {TARGET_LABELS[HELD]})",
                *(_cost_cell(costs[t]) if t in costs else "" for t in targets),
            ]
        )
    if all("statuses" in run for target in targets for run in runs[target]):
        rows.append(["acks (client)", *(_statuses(runs[target]) for target in targets)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [f"{number}. {scenario.title}"]
    lines += ["   " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines)


def _finite(value: Any) -> Any:
    """JSON has no Infinity or NaN: those become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_finite(data), indent=2, default=str, allow_nan=False) + "\n", encoding="utf-8")
