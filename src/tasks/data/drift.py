"""Drift between the data a model was trained on and new data: PSI per categorical feature, KS on the target.

Pure: frames in, numbers and a report out (no data lake, no MLflow); tasks.data.drift_check does the I/O.

- PSI (population stability index) of a categorical feature: sum over categories of
  (current share - reference share) * ln(current share / reference share). A category missing on one
  side has share 0 there, which the logarithm cannot take, so shares are floored at a small epsilon.
  Rule of thumb: below 0.1 stable, 0.1-0.2 moderate, above 0.2 a real shift.
- The target is compared with a two-sample Kolmogorov-Smirnov test (scipy). It counts as drifted only
  when the largest distance between the two distribution functions (D) is above its threshold *and*
  the difference is significant (p below alpha): on 200k rows a shift of a few hundredths of a week is
  already "significant" but not worth a warning, and on a small file a large D can be chance.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

EPSILON = 1e-4
MODES = ("warn", "fail", "off")


@dataclass(frozen=True)
class Thresholds:
    psi: float = 0.2
    ks_statistic: float = 0.1
    ks_alpha: float = 0.05


def shares(values: pd.Series) -> pd.Series:
    """Each category's share of the rows."""
    return values.astype(str).value_counts(normalize=True)


def psi(reference: pd.Series, current: pd.Series, *, epsilon: float = EPSILON) -> tuple[float, pd.DataFrame]:
    """The PSI of `current` against `reference`, and per category the two shares and its part of the sum."""
    table = pd.concat({"reference": shares(reference), "current": shares(current)}, axis=1).fillna(0.0)
    ref, cur = table["reference"].clip(lower=epsilon), table["current"].clip(lower=epsilon)
    table["contribution"] = (cur - ref) * np.log(cur / ref)
    return float(table["contribution"].sum()), table.sort_values("contribution", ascending=False)


def ks_2sample(reference: Sequence[float] | pd.Series, current: Sequence[float] | pd.Series) -> tuple[float, float]:
    """(D statistic, p-value) of the two-sample Kolmogorov-Smirnov test."""
    from scipy.stats import ks_2samp

    result = ks_2samp(np.asarray(reference, dtype=np.float64), np.asarray(current, dtype=np.float64))
    return float(result.statistic), float(result.pvalue)


def compare(
    reference: pd.DataFrame, current: pd.DataFrame, *, features: Sequence[str], target: str, thresholds: Thresholds
) -> dict[str, Any]:
    """PSI of every feature and KS of the target; `drifted` lists, readably, what crossed its threshold."""
    if reference.empty or current.empty:
        raise ValueError(f"cannot compare: {len(reference)} reference and {len(current)} current rows")
    drifted, features_out = [], {}
    for name in features:
        value, table = psi(reference[name], current[name])
        over = value > thresholds.psi
        features_out[name] = {
            "psi": round(value, 6),
            "drifted": over,
            "categories": {
                str(category): {k: round(float(v), 6) for k, v in row.items()} for category, row in table.iterrows()
            },
        }
        if over:
            top = table.head(2).iterrows()
            moved = ", ".join(f"{c} {row['reference']:.1%}->{row['current']:.1%}" for c, row in top)
            drifted.append(f"{name}: PSI {value:.3f} > {thresholds.psi:g} (most moved: {moved})")
    statistic, p_value = ks_2sample(reference[target], current[target])
    over = statistic > thresholds.ks_statistic and p_value < thresholds.ks_alpha
    ref_target, cur_target = reference[target].astype(float), current[target].astype(float)
    target_out = {
        "name": target,
        "ks_statistic": round(statistic, 6),
        "p_value": p_value,
        "drifted": over,
        "reference": {"mean": round(float(ref_target.mean()), 4), "median": float(ref_target.median())},
        "current": {"mean": round(float(cur_target.mean()), 4), "median": float(cur_target.median())},
    }
    if over:
        drifted.append(
            f"{target}: KS D {statistic:.3f} > {thresholds.ks_statistic:g} (p {p_value:.2g} < {thresholds.ks_alpha:g}; "
            f"mean {ref_target.mean():.2f} -> {cur_target.mean():.2f})"
        )
    return {
        "rows": {"reference": len(reference), "current": len(current)},
        "thresholds": asdict(thresholds),
        "features": features_out,
        "target": target_out,
        "drifted": drifted,
    }


def summary(report: dict[str, Any]) -> str:
    """One line: what drifted, or why nothing was compared."""
    if report.get("drifted"):
        return "; ".join(report["drifted"])
    return report.get("reason") or "no drift above the thresholds"


def render_html(report: dict[str, Any]) -> str:
    """The report as a standalone HTML page (what the partition and MLflow keep beside the JSON)."""
    esc = html.escape
    reference = report.get("reference") or {}
    lines = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title>",
        "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}.drift{color:#b00;font-weight:bold}</style></head><body>",
        f"<h1>Drift report: {esc(str(report.get('status', '')).upper())}</h1>",
        f"<p>New data: <code>{esc(str(report.get('raw_file', '')))}</code> into partition "
        f"<code>{esc(str(report.get('partition', '')))}</code> (mode {esc(str(report.get('mode', '')))}).</p>",
        f"<p>{esc(summary(report))}</p>",
    ]
    if reference:
        lines.append(
            f"<p>Compared with the training data of {esc(str(reference.get('model')))} version "
            f"{esc(str(reference.get('version')))} (champion): partition <code>{esc(str(reference.get('partition')))}"
            f"</code>, found in {esc(str(reference.get('partition_source')))}.</p>"
        )
    if report.get("features"):
        rows = report["rows"]
        lines.append(f"<p>Rows: reference {rows['reference']}, new {rows['current']}.</p>")
        lines.append("<h2>Features (PSI)</h2><table><tr><th>feature</th><th>PSI</th><th>threshold</th></tr>")
        for name, result in report["features"].items():
            mark = " class='drift'" if result["drifted"] else ""
            lines.append(f"<tr{mark}><td>{esc(name)}</td><td>{result['psi']:.4f}</td>"
                         f"<td>{report['thresholds']['psi']:g}</td></tr>")
        lines.append("</table>")
        target = report["target"]
        mark = " class='drift'" if target["drifted"] else ""
        lines += [
            f"<h2>Target {esc(target['name'])} (two-sample KS)</h2><table>",
            "<tr><th></th><th>D</th><th>p-value</th><th>mean</th><th>median</th></tr>",
            f"<tr{mark}><td>new vs reference</td><td>{target['ks_statistic']:.4f}</td><td>{target['p_value']:.3g}</td>"
            f"<td>{target['reference']['mean']:.2f} &rarr; {target['current']['mean']:.2f}</td>"
            f"<td>{target['reference']['median']:g} &rarr; {target['current']['median']:g}</td></tr>",
            f"<tr><td>threshold</td><td>{report['thresholds']['ks_statistic']:g}</td>"
            f"<td>{report['thresholds']['ks_alpha']:g}</td><td></td><td></td></tr></table>",
        ]
        for name, result in report["features"].items():
            table = pd.DataFrame.from_dict(result["categories"], orient="index").head(10)
            lines += [f"<h3>{esc(name)}: categories that moved most</h3>",
                      table.to_html(float_format=lambda v: f"{v:.4f}", border=0)]
    lines.append("</body></html>")
    return "\n".join(lines)
