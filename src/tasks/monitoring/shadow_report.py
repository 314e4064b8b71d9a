"""Compare champion and shadow predictions on mirrored requests, joined by request id from the JSON-lines logs."""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks.registry import require_tracking_server

DEFAULT_TOLERANCE_WEEKS = 1.0


@dataclass(frozen=True)
class ShadowReport:
    """What the shadow model would have answered, compared with what the champion did answer."""

    mirrored_requests: int
    shadow_failures: int
    compared_requests: int
    compared_rows: int
    tolerance_weeks: float
    agreement_rate: float | None  # share of compared rows with |shadow - champion| <= tolerance
    mean_abs_diff: float | None
    max_abs_diff: float | None
    champion_requests: int
    champion_failures: int
    champion_latency_p50_ms: float | None
    champion_latency_p95_ms: float | None
    shadow_latency_p50_ms: float | None
    shadow_latency_p95_ms: float | None
    champion_versions: list[str] = field(default_factory=list)
    shadow_versions: list[str] = field(default_factory=list)
    shadow_errors: dict[str, int] = field(default_factory=dict)  # error message → count (most common first)
    # |shadow - champion| per compared row, binned (the web app's Shadow page draws it): {"edges", "counts"}.
    difference_histogram: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_records(sources: Iterable[Any] | str | Path) -> list[dict[str, Any]]:
    """Records from file paths, JSON lines, or already-parsed dicts (mixed is fine); blank/bad lines are skipped."""
    if isinstance(sources, str | Path):
        sources = [sources]
    records: list[dict[str, Any]] = []
    for source in sources:
        if isinstance(source, dict):
            records.append(source)
            continue
        if isinstance(source, Path) or (isinstance(source, str) and not source.lstrip().startswith("{")):
            path = Path(source)
            lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        else:
            lines = [source]
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a log file may hold other output (stdout shared with a shipper)
            if isinstance(record, dict) and record.get("request_id"):
                records.append(record)
    return records


def _percentile(values: pd.Series, q: float) -> float | None:
    values = values.dropna()
    return None if values.empty else round(float(np.percentile(values, q)), 3)


def _last_per_request(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates("request_id", keep="last").set_index("request_id")


def compare_shadow(
    log_paths_or_lines: Iterable[Any] | str | Path, *, tolerance_weeks: float = DEFAULT_TOLERANCE_WEEKS
) -> ShadowReport:
    """Join champion and shadow model-server records (and router records, if given) by request id."""
    records = _read_records(log_paths_or_lines)
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame()
    for column in ("role", "status", "outputs", "target", "latency_ms", "model_version", "error", "request_id"):
        if column not in frame:
            frame[column] = None
    is_prediction = frame["target"].isna()
    predictions, forwards = frame[is_prediction], frame[~is_prediction]
    champion = _last_per_request(predictions[predictions["role"] == "champion"])
    shadow = _last_per_request(predictions[predictions["role"] == "shadow"])
    shadow_calls = _last_per_request(forwards[forwards["role"] == "shadow"])

    mirrored = set(shadow.index) | set(shadow_calls.index)
    failed = set(shadow.index[shadow["status"] != "ok"]) | set(shadow_calls.index[shadow_calls["status"] != "ok"])
    # A copy the router sent that no shadow server logged (dropped, refused, timed out) also failed.
    failed |= set(shadow_calls.index) - set(shadow.index)
    errors = pd.concat(
        [shadow.loc[shadow["status"] != "ok", "error"], shadow_calls.loc[shadow_calls["status"] != "ok", "error"]]
    )
    error_counts = errors.fillna("unknown").astype(str).str.slice(0, 200).value_counts()

    ok_champion = champion[champion["status"] == "ok"]
    ok_shadow = shadow[shadow["status"] == "ok"]
    paired = ok_champion.index.intersection(ok_shadow.index)
    diffs: list[float] = []
    for request_id in paired:
        left, right = ok_champion.at[request_id, "outputs"], ok_shadow.at[request_id, "outputs"]
        if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
            diffs.extend(abs(float(a) - float(b)) for a, b in zip(left, right, strict=True))
        else:
            diffs.append(math.inf)  # differently shaped answers can never agree
    diff_array = np.asarray(diffs, dtype=float)
    finite = diff_array[np.isfinite(diff_array)]

    return ShadowReport(
        mirrored_requests=len(mirrored),
        shadow_failures=len(failed & mirrored),
        compared_requests=len(paired),
        compared_rows=len(diffs),
        tolerance_weeks=tolerance_weeks,
        agreement_rate=round(float(np.mean(diff_array <= tolerance_weeks)), 4) if diffs else None,
        mean_abs_diff=round(float(finite.mean()), 4) if finite.size else None,
        max_abs_diff=round(float(finite.max()), 4) if finite.size else None,
        champion_requests=len(champion),
        champion_failures=int((champion["status"] != "ok").sum()),
        champion_latency_p50_ms=_percentile(ok_champion["latency_ms"], 50),
        champion_latency_p95_ms=_percentile(ok_champion["latency_ms"], 95),
        shadow_latency_p50_ms=_percentile(ok_shadow["latency_ms"], 50),
        shadow_latency_p95_ms=_percentile(ok_shadow["latency_ms"], 95),
        champion_versions=sorted({str(v) for v in champion["model_version"].dropna()}),
        shadow_versions=sorted({str(v) for v in shadow["model_version"].dropna()}),
        shadow_errors={str(k): int(v) for k, v in error_counts.items()},
        difference_histogram=histogram(finite),
    )


HISTOGRAM_BINS = 20


def histogram(differences: np.ndarray) -> dict[str, list[float]]:
    """Bin edges and row counts of the finite differences ({} when there are none)."""
    if not differences.size:
        return {}
    counts, edges = np.histogram(differences, bins=HISTOGRAM_BINS)
    return {"edges": [round(float(e), 4) for e in edges], "counts": [int(c) for c in counts]}


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.3f}{suffix}"
    return f"{value}{suffix}"


def _rows(report: ShadowReport) -> list[tuple[str, str, str]]:
    agreement = "n/a" if report.agreement_rate is None else f"{report.agreement_rate:.1%}"
    return [
        ("Model versions", ", ".join(report.champion_versions) or "n/a", ", ".join(report.shadow_versions) or "n/a"),
        ("Requests", str(report.champion_requests), str(report.mirrored_requests)),
        ("Failures", str(report.champion_failures), str(report.shadow_failures)),
        ("Latency p50", _fmt(report.champion_latency_p50_ms, " ms"), _fmt(report.shadow_latency_p50_ms, " ms")),
        ("Latency p95", _fmt(report.champion_latency_p95_ms, " ms"), _fmt(report.shadow_latency_p95_ms, " ms")),
        ("Compared requests / rows", f"{report.compared_requests} / {report.compared_rows}", ""),
        (f"Agreement (|diff| <= {report.tolerance_weeks:g} weeks)", agreement, ""),
        ("Mean / max absolute difference", f"{_fmt(report.mean_abs_diff)} / {_fmt(report.max_abs_diff)} weeks", ""),
    ]


def render_markdown(report: ShadowReport) -> str:
    """The report as a Markdown document (a table plus the most common shadow errors)."""
    lines = ["# Shadow comparison", "", "| | Champion | Shadow |", "|---|---|---|"]
    lines += [f"| {name} | {champion} | {shadow} |" for name, champion, shadow in _rows(report)]
    if report.shadow_errors:
        lines += ["", "## Shadow errors", "", "| Count | Error |", "|---:|---|"]
        for message, count in list(report.shadow_errors.items())[:10]:
            lines.append(f"| {count} | {message.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def render_html(report: ShadowReport) -> str:
    """The same table as a small standalone HTML page (for MLflow's artifact viewer)."""
    cells = "".join(
        f"<tr><th>{html.escape(n)}</th><td>{html.escape(c)}</td><td>{html.escape(s)}</td></tr>"
        for n, c, s in _rows(report)
    )
    return (
        "<!doctype html><meta charset='utf-8'><title>Shadow comparison</title><h1>Shadow comparison</h1>"
        f"<table border='1' cellpadding='4'><tr><th></th><th>Champion</th><th>Shadow</th></tr>{cells}</table>"
    )


def publish_report(
    log_paths: Iterable[Path],
    *,
    tracking_uri: str,
    experiment: str = "wachttijden-shadow",
    tolerance_weeks: float = DEFAULT_TOLERANCE_WEEKS,
    markdown_path: Path | None = None,
) -> dict[str, Any]:
    """Compare, write the Markdown next to the logs, and log metrics plus both renderings to MLflow."""
    paths = [Path(p) for p in log_paths]
    report = compare_shadow(paths, tolerance_weeks=tolerance_weeks)
    markdown = render_markdown(report)
    if markdown_path is not None:
        markdown_path.write_text(markdown, encoding="utf-8")
    # The Markdown beside the logs is written either way; MLflow down fails here, naming the URL.
    require_tracking_server(tracking_uri)

    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="compare_shadow") as run:
        mlflow.log_params({"tolerance_weeks": tolerance_weeks, "logs": ",".join(p.name for p in paths)[:500]})
        numbers = {k: v for k, v in report.to_dict().items() if isinstance(v, int | float) and v is not None}
        mlflow.log_metrics({k: float(v) for k, v in numbers.items()})
        mlflow.log_text(markdown, "shadow_report.md")
        mlflow.log_text(render_html(report), "shadow_report.html")
        mlflow.log_dict(report.to_dict(), "shadow_report.json")
    return {
        "run_id": run.info.run_id,
        "markdown_path": str(markdown_path) if markdown_path else None,
        **report.to_dict(),
    }
