"""The gate's decision as a report (Markdown and HTML, logged beside the model) and as an alert mail."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from tasks.evaluation.gate import Decision, Score


@dataclass(frozen=True)
class Context:
    """What was compared, where: the registered versions and the data they were scored on."""

    model_name: str
    challenger_version: str
    champion_version: str | None
    partition: str
    airflow_run: str = ""

    def title(self) -> str:
        return f"Evaluation gate: {self.model_name} version {self.challenger_version}"


def _score(score: Score | None, fields: list[str]) -> list[str]:
    return ["-"] * len(fields) if score is None else [f"{getattr(score, name):.4f}" for name in fields]


def _summary_header(context: Context) -> list[str]:
    champion = f"version {context.champion_version}" if context.champion_version else "none"
    return ["", f"challenger (version {context.challenger_version})", f"champion ({champion})"]


def _summary_rows(decision: Decision) -> list[list[str]]:
    labels, fields = zip(*decision.challenger.REPORT_ROWS, strict=True)
    challenger, champion = _score(decision.challenger, fields), _score(decision.champion, fields)
    return [list(row) for row in zip(labels, challenger, champion, strict=True)]


def _slice_rows(decision: Decision) -> list[list[str]]:
    rows = []
    for s in decision.slices:
        if decision.blocking_slice is not None and s.name == decision.blocking_slice.name:
            status = "BLOCKS"
        elif s.name in decision.checked_slices:
            status = "checked"
        elif decision.champion is None:
            status = "-"
        else:
            status = f"not checked (< {decision.rules.min_slice_rows} rows)"
        change = "-" if decision.champion is None else f"{s.worse_by:+.1%}"
        rows.append([s.column, s.value, str(s.rows), f"{s.champion_mae:.4f}" if decision.champion else "-",
                     f"{s.challenger_mae:.4f}", change, status])
    return rows


SLICE_HEADER = ["column", "value", "rows", "champion MAE", "challenger MAE", "change", "status"]


def _rules_line(decision: Decision) -> str:
    rules = decision.rules
    margin = f"margin {rules.objective.margin_text(rules.margin)} on {rules.objective.label}"
    if not rules.slice_columns:
        return f"{margin}; no slices"
    return (f"{margin}; slice tolerance {rules.slice_tolerance:.1%} on slices of "
            f"{', '.join(rules.slice_columns)} with at least {rules.min_slice_rows} rows")


def to_markdown(decision: Decision, context: Context) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows)]

    lines = [
        f"# {context.title()}",
        "",
        f"**Decision: {decision.decision}** — {decision.reason}",
        "",
        f"Scored on the test split of `{context.partition}` ({decision.challenger.rows} rows). "
        f"Rules: {_rules_line(decision)}." + (f" Airflow run: `{context.airflow_run}`." if context.airflow_run else ""),
        "",
        *table(_summary_header(context), _summary_rows(decision)),
        "",
        "## Slices",
        "",
        *table(SLICE_HEADER, _slice_rows(decision)),
        "",
    ]
    return "\n".join(lines)


def to_html(decision: Decision, context: Context) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join(
            "<tr" + (' class="blocks"' if "BLOCKS" in row else "") + ">"
            + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    color = "#1a7f37" if decision.promote else "#9a6700"
    run = f" Airflow run: <code>{html.escape(context.airflow_run)}</code>." if context.airflow_run else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(context.title())}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}} tr.blocks td{{background:#ffebe9}}</style></head>
<body><h1>{html.escape(context.title())}</h1>
<p><strong style="color:{color}">Decision: {html.escape(decision.decision)}</strong> —
{html.escape(decision.reason)}</p>
<p>Scored on the test split of <code>{html.escape(context.partition)}</code> ({decision.challenger.rows} rows).
Rules: {html.escape(_rules_line(decision))}.{run}</p>
{table(_summary_header(context), _summary_rows(decision))}
<h2>Slices</h2>
{table(SLICE_HEADER, _slice_rows(decision))}
</body></html>
"""


def alert_message(result: dict[str, Any], *, dag_id: str, run_id: str) -> tuple[str, str]:
    """(subject, body) of the gate's mail, from what `evaluate_challenger` returned."""
    decision, version = result["decision"], result["challenger_version"]
    champion = result.get("champion_version") or "none"
    metric, label = result.get("metric", "mae"), result.get("metric_label", "MAE")
    subject = f"{dag_id} run {run_id}: {decision} {result['model_name']} version {version} (champion: {champion})"
    body = "\n".join([
        f"DAG:        {dag_id}",
        f"Run:        {run_id}",
        f"Decision:   {decision}",
        f"Reason:     {result['reason']}",
        f"Challenger: version {version}, {label} {result[f'challenger_{metric}']:.4f}",
        f"Champion:   {'version ' + champion if champion != 'none' else 'none'}"
        + (f", {label} {result[f'champion_{metric}']:.4f}" if result.get(f"champion_{metric}") is not None else ""),
        f"Blocking slice: {result.get('blocking_slice') or 'none'}",
        f"Data:       test split of {result['partition']}",
        f"Report:     {result['report_uri']}",
    ])
    return subject, body
