"""What the dashboard tests read from deploy/grafana and docs/runbooks, without Grafana.

- `load_dashboards` / `panels` / `targets`: the dashboard JSON files, their panels (rows
  flattened) and every query target with the panel it belongs to.
- `substitute`: Grafana's template-variable interpolation for Prometheus queries, enough for
  the forms the dashboards use (``$name``, ``${name}``, ``${name:format}``, ``[[name]]``);
  an unknown variable is an error, never left in the query.
- `metric_names`: the metric names a PromQL expression reads (a lexical approximation that
  is exact for the dashboards' style: selectors, functions, aggregations, binary operators).
- `runbook_panels`: the panel titles docs/runbooks/README.md names, per dashboard title.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
PROVISIONING = GRAFANA / "provisioning"
RUNBOOKS_README = ROOT / "docs" / "runbooks" / "README.md"
RULES = ROOT / "deploy" / "prometheus" / "rules"
#: Where the workers' metrics are defined: every ``"ml_…"`` string in them is a metric name.
METRICS_SOURCES = (ROOT / "agents" / "metrics.py", ROOT / "agents" / "performance_metrics.py")

#: The dashboard files issue 5 asks for.
DASHBOARD_FILES = ("undertow-overview.json", "undertow-model.json", "undertow-operations.json")
#: Grafana's own variables the queries may use.
BUILTIN_VARIABLES = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
)
_VARIABLE = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)|\[\[(\w+)(?::(\w+))?\]\]")


def load_dashboards() -> dict[str, dict[str, Any]]:
    """File name → parsed dashboard, for every JSON file in deploy/grafana/dashboards."""
    out = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        with path.open(encoding="utf-8") as f:
            out[path.name] = json.load(f)
    return out


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside (collapsed) rows included; rows themselves too."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}


@dataclass(frozen=True)
class Target:
    """One query of one panel."""

    file: str
    dashboard: str
    panel_id: int
    panel: str
    ref_id: str
    expr: str
    instant: bool
    legend: str = ""

    @property
    def id(self) -> str:
        return f"{self.dashboard} → {self.panel} [{self.ref_id}]"


def targets(dashboards: Mapping[str, Mapping[str, Any]]) -> list[Target]:
    out = []
    for file, dashboard in dashboards.items():
        for panel in panels(dashboard):
            for t in panel.get("targets", []):
                out.append(
                    Target(
                        file=file,
                        dashboard=str(dashboard.get("title")),
                        panel_id=int(panel.get("id", -1)),
                        panel=str(panel.get("title")),
                        ref_id=str(t.get("refId")),
                        expr=str(t.get("expr", "")),
                        # Grafana runs an instant query when only "instant" is set.
                        instant=bool(t.get("instant")) and not t.get("range", False),
                        legend=str(t.get("legendFormat") or ""),
                    )
                )
    return out


def legend_labels(legend: str) -> set[str]:
    """The series labels a legend format shows.

    >>> sorted(legend_labels("{{attribute}}={{ segment }} {{model_version}}"))
    ['attribute', 'model_version', 'segment']
    """
    return set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))


def used_variables(text: str) -> set[str]:
    """Names of the template variables ``text`` uses.

    >>> sorted(used_variables('x{a=~"$model", b="${version:regex}"}[$__rate_interval] [[f]]'))
    ['__rate_interval', 'f', 'model', 'version']
    """
    return {m.group(1) or m.group(3) or m.group(4) for m in _VARIABLE.finditer(text)}


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every template variable replaced by ``values[name]``.

    KeyError for a variable that has no value: a query must never reach Prometheus with
    ``$something`` left in it.
    """

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(4)
        if name not in values:
            raise KeyError(f"no value for template variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(one, expr)


def regex_value(values: list[str]) -> str:
    """A multi-value selection as Grafana formats it for a Prometheus regex matcher."""
    escaped = [re.sub(r"([\\^$.|?*+()\[\]{}])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


# ---------------------------------------------------------------------- metric names

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless"}
    | {"offset", "bool", "inf", "nan", "atan2"}
)


def metric_names(expr: str) -> set[str]:
    """The metric (and recording-rule) names ``expr`` selects.

    >>> sorted(metric_names('sum by (le) (rate(a_bucket{x=~"$m"}[5m])) / on (x) b or vector(0)'))
    ['a_bucket', 'b']
    >>> sorted(metric_names("time() - max(undertow:model_evaluator:freshest) offset 1d"))
    ['undertow:model_evaluator:freshest']
    """
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?", s):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def exported_metrics() -> set[str]:
    """Metric names the workers register (agents/metrics.py, agents/performance_metrics.py),
    histograms with their series suffixes."""
    names: set[str] = set()
    for path in METRICS_SOURCES:
        names |= set(re.findall(r'"(ml_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    out = set(names)
    for name in names:
        if name.endswith("_total"):
            continue
        out |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return out


def recording_rules() -> set[str]:
    import yaml

    out = set()
    for path in sorted(RULES.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            out |= {r["record"] for r in group["rules"] if "record" in r}
    return out


# ---------------------------------------------------------------------- label_values

_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)\s*$", re.S)


def label_values_query(query: str) -> tuple[str | None, str]:
    """(series selector or None, label) of a Grafana ``label_values(…)`` variable query.

    >>> label_values_query('label_values(m{a=~"$x"}, b)')
    ('m{a=~"$x"}', 'b')
    """
    m = _LABEL_VALUES.match(query)
    if m is None:
        raise ValueError(f"not a label_values() query: {query!r}")
    return m.group(1), m.group(2)


# ---------------------------------------------------------------------- runbooks

RUNBOOK_SECTION = "## Grafana panels the runbooks refer to"


def runbook_panels(path: Path = RUNBOOKS_README) -> dict[str, list[str]]:
    """Dashboard title → the panel titles the runbooks README names for it.

    The section is a list of ``- **undertow / X** (…): *Panel*, *Panel* …`` items; titles
    may wrap across lines.
    """
    text = path.read_text(encoding="utf-8")
    if RUNBOOK_SECTION not in text:
        raise ValueError(f"{path} has no section {RUNBOOK_SECTION!r}")
    section = text.split(RUNBOOK_SECTION, 1)[1].split("\n## ", 1)[0]
    out: dict[str, list[str]] = {}
    for item in re.split(r"^- ", section, flags=re.M)[1:]:
        item = " ".join(item.split())
        head = re.match(r"\*\*([^*]+)\*\*", item)
        if head is None:
            continue
        out[head.group(1).strip()] = [
            t.strip() for t in re.findall(r"(?<!\*)\*([^*]+)\*(?!\*)", item[head.end() :])
        ]
    return out


def runbook_references(directory: Path = RUNBOOKS_README.parent) -> list[tuple[str, str, str]]:
    """(runbook file, dashboard title, panel title) of every ``**undertow / D → Panel**``
    reference in the runbooks."""
    out = []
    for path in sorted(directory.glob("*.md")):
        text = " ".join(path.read_text(encoding="utf-8").split())
        for dashboard, title in re.findall(r"\*\*(undertow / [^*→]+?) → ([^*]+)\*\*", text):
            out.append((path.name, dashboard.strip(), title.strip()))
    return out
