"""A small, strict model of what our Filebeat config and an Elasticsearch query do to a log line.

No Filebeat or Elasticsearch runs here, so the log_id contract test replays our actual Filebeat
settings (from the rendered Beat object) and Airflow's actual read query through this model. It
implements only the processors and conditions our config uses and raises on anything else, so a
config change it does not understand fails the test instead of passing unexamined.
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from datetime import UTC, datetime
from typing import Any

MISSING = object()


class UnsupportedConfig(AssertionError):
    """The config uses a Filebeat feature this model does not implement."""


def cfg(config: dict[str, Any], dotted: str, default: Any = MISSING) -> Any:
    """Look a setting up the way libbeat does: 'a.b.c' may be nested or written with dots."""
    if dotted in config:
        return config[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head, rest = ".".join(parts[:i]), ".".join(parts[i:])
        if isinstance(config.get(head), dict):
            found = cfg(config[head], rest, MISSING)
            if found is not MISSING:
                return found
    if default is MISSING:
        raise KeyError(dotted)
    return default


def get_field(event: dict[str, Any], dotted: str, default: Any = MISSING) -> Any:
    node: Any = event
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def put_field(event: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = event
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def delete_field(event: dict[str, Any], dotted: str) -> bool:
    parts = dotted.split(".")
    node = get_field(event, ".".join(parts[:-1])) if len(parts) > 1 else event
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def condition_matches(condition: dict[str, Any], event: dict[str, Any]) -> bool:
    if len(condition) != 1:
        raise UnsupportedConfig(f"condition with several operators: {condition}")
    (operator, argument), = condition.items()
    if operator == "equals":
        return all(get_field(event, k, MISSING) == v for k, v in argument.items())
    if operator == "has_fields":
        return all(get_field(event, k, MISSING) is not MISSING for k in argument)
    if operator == "contains":
        return all(str(v) in str(get_field(event, k, "")) for k, v in argument.items())
    if operator == "and":
        return all(condition_matches(c, event) for c in argument)
    if operator == "or":
        return any(condition_matches(c, event) for c in argument)
    if operator == "not":
        return not condition_matches(argument, event)
    raise UnsupportedConfig(f"condition operator {operator!r}")


def _when(settings: dict[str, Any]) -> dict[str, Any] | None:
    when = settings.get("when")
    dotted = {k[len("when."):]: v for k, v in settings.items() if k.startswith("when.")}
    if when and dotted:
        raise UnsupportedConfig("both when: and when.* given")
    return when or dotted or None


def _decode_json_fields(settings: dict[str, Any], event: dict[str, Any]) -> None:
    known = {"fields", "target", "overwrite_keys", "add_error_key", "process_array", "max_depth", "when"}
    if set(settings) - known:
        raise UnsupportedConfig(f"decode_json_fields options {set(settings) - known}")
    if settings.get("process_array"):
        raise UnsupportedConfig("decode_json_fields.process_array")
    for field in settings["fields"]:
        raw = get_field(event, field, MISSING)
        if not isinstance(raw, str):
            continue
        try:
            decoded = json.loads(raw)
        except ValueError:
            if settings.get("add_error_key"):
                put_field(event, "error.message", "decoding failed")
            continue
        if not isinstance(decoded, dict):
            continue
        target = settings.get("target", field)
        if target == "":
            for key, value in decoded.items():
                if key in event and not settings.get("overwrite_keys", False):
                    continue
                event[key] = value
        else:
            put_field(event, target, decoded)


def _drop_fields(settings: dict[str, Any], event: dict[str, Any]) -> None:
    for field in settings["fields"]:
        if not delete_field(event, field) and not settings.get("ignore_missing", False):
            raise AssertionError(f"drop_fields: {field} missing and ignore_missing is false")


def run_processors(processors: list[dict[str, Any]], event: dict[str, Any]) -> dict[str, Any]:
    for processor in processors:
        (name, settings), = processor.items()
        settings = settings or {}
        when = _when(settings)
        if when is not None and not condition_matches(when, event):
            continue
        if name == "decode_json_fields":
            _decode_json_fields(settings, event)
        elif name == "drop_fields":
            _drop_fields(settings, event)
        elif name == "add_kubernetes_metadata":
            # Its output (kubernetes.namespace, kubernetes.pod.name, ...) is what the test event
            # carries already; only its matching by log path is checked.
            matchers = settings.get("matchers", [])
            if not any("logs_path" in m for m in matchers):
                raise UnsupportedConfig("add_kubernetes_metadata without a logs_path matcher")
        else:
            raise UnsupportedConfig(f"processor {name!r}")
    return event


CRI_LINE = re.compile(r"^(?P<time>\S+) (?P<stream>stdout|stderr) (?P<tag>[FP]) (?P<log>.*)$")


def container_parser(raw: str) -> dict[str, Any]:
    """Filebeat's `container` parser for the CRI format kubelet writes to /var/log/containers."""
    match = CRI_LINE.match(raw)
    if not match:
        raise AssertionError(f"not a CRI log line: {raw!r}")
    if match["tag"] != "F":
        raise UnsupportedConfig("partial CRI lines")
    return {"@timestamp": match["time"], "stream": match["stream"], "message": match["log"]}


def ship(
    config: dict[str, Any], raw_line: str, kubernetes: dict[str, Any], path: str
) -> tuple[str, dict[str, Any]] | None:
    """The (index, document) our Filebeat config makes of one container log line, or None."""
    inputs = cfg(config, "filebeat.inputs")
    matching = [i for i in inputs if any(fnmatch.fnmatch(path, p) for p in i.get("paths", []))]
    assert len(matching) == 1, f"{path} is read by {len(matching)} inputs"
    item = matching[0]
    if item.get("type") != "filestream":
        raise UnsupportedConfig(f"input type {item.get('type')}")
    parsers = item.get("parsers", [])
    if [next(iter(p)) for p in parsers] != ["container"]:
        raise UnsupportedConfig(f"parsers {parsers}")
    event = container_parser(raw_line)
    event["kubernetes"] = copy.deepcopy(kubernetes)
    event["log"] = {"file": {"path": path}, "offset": 0}
    event["input"] = {"type": "filestream"}
    run_processors(item.get("processors", []), event)
    run_processors(cfg(config, "processors", []), event)
    return select_index(cfg(config, "output.elasticsearch"), event), event


def _format_index(pattern: str, timestamp: str) -> str:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(UTC)

    def date(match: re.Match[str]) -> str:
        java = match.group(1)
        return moment.strftime(java.replace("yyyy", "%Y").replace("MM", "%m").replace("dd", "%d"))

    formatted = re.sub(r"%\{\+([^}]+)\}", date, pattern)
    if "%{" in formatted:
        raise UnsupportedConfig(f"index format {pattern}")
    return formatted


def select_index(output: dict[str, Any], event: dict[str, Any]) -> str:
    for rule in output.get("indices", []):
        when = _when(rule)
        if when is None or condition_matches(when, event):
            return _format_index(rule["index"], event["@timestamp"])
    return _format_index(output["index"], event["@timestamp"])


# --- Elasticsearch side ----------------------------------------------------------------------


def index_matches(index: str, patterns: str) -> bool:
    included = False
    for pattern in (p.strip() for p in patterns.split(",")):
        if pattern.startswith("-"):
            if fnmatch.fnmatchcase(index, pattern[1:]):
                return False
        elif fnmatch.fnmatchcase(index, pattern):
            included = True
    return included


def query_matches(query: dict[str, Any], doc: dict[str, Any], keyword_fields: set[str]) -> bool:
    (kind, body), = query.items()
    if kind == "bool":
        clauses = [*body.get("filter", []), *body.get("must", [])]
        if isinstance(body.get("must"), dict) or isinstance(body.get("filter"), dict):
            raise UnsupportedConfig("bool clause given as an object")
        if not all(query_matches(c, doc, keyword_fields) for c in clauses):
            return False
        must_not = body.get("must_not", [])
        must_not = [must_not] if isinstance(must_not, dict) else must_not
        if any(query_matches(c, doc, keyword_fields) for c in must_not):
            return False
        should = body.get("should", [])
        if should:
            wanted = int(body.get("minimum_should_match", 1 if not clauses else 0))
            return sum(query_matches(c, doc, keyword_fields) for c in should) >= wanted
        return True
    if kind == "match_phrase":
        (field, value), = body.items()
        if field not in keyword_fields:
            raise AssertionError(f"match_phrase on {field}, which the index template does not map as keyword")
        return get_field(doc, field, MISSING) == value
    if kind == "range":
        (field, bounds), = body.items()
        value = get_field(doc, field, MISSING)
        if value is MISSING or set(bounds) - {"gt", "gte", "lt", "lte"}:
            return False
        return (
            ("gt" not in bounds or value > bounds["gt"])
            and ("gte" not in bounds or value >= bounds["gte"])
            and ("lt" not in bounds or value < bounds["lt"])
            and ("lte" not in bounds or value <= bounds["lte"])
        )
    if kind == "exists":
        return get_field(doc, body["field"], MISSING) is not MISSING
    raise UnsupportedConfig(f"query {kind}")


def source_filter(doc: dict[str, Any], includes: list[str] | None) -> dict[str, Any]:
    if not includes:
        return doc
    filtered: dict[str, Any] = {}
    for field in includes:
        value = get_field(doc, field, MISSING)
        if value is not MISSING:
            put_field(filtered, field, copy.deepcopy(value))
    return filtered


def search(
    store: list[tuple[str, dict[str, Any]]], templates: list[dict[str, Any]], *, index: str,
    query: dict[str, Any], sort: list[str], size: int, from_: int = 0,
    source_includes: list[str] | None = None, **_: Any,
) -> dict[str, Any]:
    """Answer an elasticsearch-py `search` call against the shipped documents.

    templates: our index templates (parsed JSON); match_phrase is exact only on keyword fields,
    so a field the template does not map as keyword is an error, not a guess.
    """
    hits = []
    for name, doc in store:
        if not index_matches(name, index):
            continue
        covering = [t for t in templates if any(fnmatch.fnmatchcase(name, p) for p in t["index_patterns"])]
        if not covering:
            raise AssertionError(f"no index template covers {name}: its mapping would be guessed")
        keyword_fields = set().union(*(keyword_fields_of(t) for t in covering))
        if query_matches(query, doc, keyword_fields):
            hits.append((name, doc))
    for field in reversed(sort):
        hits.sort(key=lambda hit, f=field: get_field(hit[1], f))
    page = hits[from_: from_ + size]
    return {
        "took": 1,
        "hits": {
            "total": {"value": len(hits), "relation": "eq"},
            "hits": [
                {"_index": name, "_id": str(i), "_score": None, "_source": source_filter(doc, source_includes),
                 "sort": [get_field(doc, f) for f in sort]}
                for i, (name, doc) in enumerate(page)
            ],
        },
    }


def mapping_types(template: dict[str, Any]) -> dict[str, str]:
    """Dotted field name -> mapped type of an index template."""
    types: dict[str, str] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, spec in properties.items():
            if "properties" in spec:
                walk(spec["properties"], f"{prefix}{name}.")
            if "type" in spec:
                types[f"{prefix}{name}"] = spec["type"]

    walk(template["template"]["mappings"].get("properties", {}), "")
    return types


def keyword_fields_of(template: dict[str, Any]) -> set[str]:
    return {field for field, kind in mapping_types(template).items() if kind == "keyword"}
