"""Turn V1 and V2 inference request bodies into validated feature columns, or say exactly what is wrong."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models.wachttijden.schema import FEATURES

# How many offending values/rows an error message lists before it abbreviates.
_SHOWN = 10


class RequestError(ValueError):
    """A client mistake; `status_code` is the HTTP status to answer with."""

    status_code = 400


class TooManyRows(RequestError):
    status_code = 413


@dataclass(frozen=True)
class Tensor:
    """The parts of a V2 input tensor the checks need, independent of REST or gRPC decoding."""

    name: str
    datatype: str
    shape: Sequence[Any]
    data: Any  # flat or nested list (REST) or list decoded from binary contents (gRPC)


def _listing(items: Iterable[Any]) -> str:
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:_SHOWN])
    return shown + (f", ... ({len(items)} in total)" if len(items) > _SHOWN else "")


def _expected() -> str:
    return ", ".join(FEATURES)


def _check_names(given: Sequence[str], what: str) -> None:
    duplicates = sorted({n for n in given if given.count(n) > 1})
    if duplicates:
        raise RequestError(f"{what} {_listing(duplicates)} given more than once")
    unknown = [n for n in given if n not in FEATURES]
    missing = [n for n in FEATURES if n not in given]
    problems = []
    if missing:
        problems.append(f"missing {what} {_listing(missing)}")
    if unknown:
        problems.append(f"unknown {what} {_listing(unknown)}")
    if problems:
        raise RequestError(f"{'; '.join(problems)}; expected exactly: {_expected()}")


def _flatten(data: Any, name: str) -> list[Any]:
    """V2 JSON allows row-major nested arrays; a [n, 1] tensor arrives as [[a], [b], ...]."""
    if not isinstance(data, list):
        raise RequestError(f"input {name!r}: 'data' must be a list, got {type(data).__name__}")
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _rows_in_shape(tensor: Tensor) -> int:
    shape = tensor.shape
    if not isinstance(shape, Sequence) or isinstance(shape, str) or not shape:
        raise RequestError(f"input {tensor.name!r}: shape must be [n] or [n, 1], got {shape!r}")
    if any(not isinstance(d, int) or isinstance(d, bool) or d < 0 for d in shape):
        raise RequestError(f"input {tensor.name!r}: shape {list(shape)} must hold non-negative integers")
    if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
        raise RequestError(
            f"input {tensor.name!r}: shape must be [n] or [n, 1] (one value per row), got {list(shape)}"
        )
    return shape[0]


def columns_from_v2(tensors: Sequence[Tensor], *, max_rows: int) -> dict[str, list[str]]:
    """Feature columns from V2 input tensors: one BYTES tensor per feature, shape [n] or [n, 1]."""
    if not tensors:
        raise RequestError(f"request has no inputs; send one BYTES input per feature: {_expected()}")
    _check_names([t.name for t in tensors], "inputs")
    columns: dict[str, list[Any]] = {}
    for tensor in sorted(tensors, key=lambda t: FEATURES.index(t.name)):
        if tensor.datatype.upper() != "BYTES":
            raise RequestError(
                f"input {tensor.name!r} has datatype {tensor.datatype}; expected BYTES (the features are strings)"
            )
        rows = _rows_in_shape(tensor)
        values = _flatten(tensor.data, tensor.name)
        if len(values) != rows:
            raise RequestError(
                f"input {tensor.name!r}: shape {list(tensor.shape)} needs {rows} values but 'data' holds {len(values)}"
            )
        columns[tensor.name] = values
    return check_columns(columns, max_rows=max_rows)


def columns_from_v1(body: Any, *, max_rows: int) -> dict[str, list[str]]:
    """Feature columns from V1 {"instances": [{feature: value, ...}, ...]} (or rows as lists in FEATURES order)."""
    if not isinstance(body, Mapping):
        raise RequestError(
            f"V1 request body must be a JSON object with 'instances', got {type(body).__name__}"
        )
    if "instances" not in body:
        raise RequestError(
            f"V1 request has no 'instances' (found keys: {_listing(body.keys()) or 'none'}); "
            f'send {{"instances": [{{feature: value, ...}}, ...]}} with features {_expected()}'
        )
    instances = body["instances"]
    if not isinstance(instances, list):
        raise RequestError(f"'instances' must be a list of rows, got {type(instances).__name__}")
    if not instances:
        raise RequestError("'instances' is empty; send at least one row")
    if len(instances) > max_rows:
        raise TooManyRows(
            f"request has {len(instances)} rows; this server accepts at most {max_rows} per request"
        )
    columns: dict[str, list[Any]] = {name: [] for name in FEATURES}
    for index, row in enumerate(instances):
        if isinstance(row, Mapping):
            if row.keys() != set(FEATURES):
                try:
                    _check_names(list(row.keys()), "features")
                except RequestError as exc:
                    raise RequestError(f"instance {index}: {exc}") from None
            for name in FEATURES:
                columns[name].append(row[name])
        elif isinstance(row, list):
            if len(row) != len(FEATURES):
                raise RequestError(
                    f"instance {index} is a list of {len(row)} values; a list row needs {len(FEATURES)} "
                    f"values in this order: {_expected()}"
                )
            for name, value in zip(FEATURES, row, strict=True):
                columns[name].append(value)
        else:
            raise RequestError(
                f"instance {index} must be an object {{feature: value}} or a list, got {type(row).__name__}"
            )
    return check_columns(columns, max_rows=max_rows)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check_columns(columns: Mapping[str, list[Any]], *, max_rows: int) -> dict[str, list[str]]:
    """Every feature present, equally long, non-empty, within the row limit, and only non-null strings."""
    _check_names(list(columns), "columns")
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={n}" for name, n in lengths.items())
        raise RequestError(
            f"inputs have different lengths ({described}); every feature needs one value per row"
        )
    rows = next(iter(lengths.values()))
    if rows == 0:
        raise RequestError("the batch is empty; send at least one row")
    if rows > max_rows:
        raise TooManyRows(f"request has {rows} rows; this server accepts at most {max_rows} per request")
    checked: dict[str, list[str]] = {}
    for name in FEATURES:
        values = columns[name]
        nulls = [i for i, v in enumerate(values) if _is_missing(v)]
        if nulls:
            raise RequestError(f"{name} has null values at rows {_listing(nulls)}")
        decoded = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in values]
        wrong = [i for i, v in enumerate(decoded) if not isinstance(v, str)]
        if wrong:
            first = decoded[wrong[0]]
            raise RequestError(
                f"{name} must hold strings; rows {_listing(wrong)} are not (row {wrong[0]} is "
                f"{type(first).__name__} {first!r})"
            )
        checked[name] = decoded
    return checked


def unknown_category_message(
    unknown: Mapping[str, Sequence[str]], vocabularies: Mapping[str, Sequence[str]]
) -> str:
    """Name each column with values the model never saw, and how many values it does know."""
    parts = [
        f"{name}: {_listing(values)} (the model knows {len(vocabularies[name])} values for {name})"
        for name, values in unknown.items()
    ]
    return "unknown categories: " + "; ".join(parts)


_PLAIN_V2_KEYS = frozenset({"id", "inputs"})
_PLAIN_V2_INPUT_KEYS = frozenset({"name", "shape", "datatype", "data"})


def plain_v2_tensors(body: Any) -> list[Tensor] | None:
    """The input tensors of a parsed V2 JSON body when KServe's pydantic model would pass them on unchanged.

    Only plain bodies qualify: an object with `inputs` (and optionally a string `id`), each input
    exactly {name: str, shape: [int, ...], datatype: str, data: list} and no `parameters` or
    `outputs` anywhere. For such a body the tensors equal what KServe hands the model, so the
    model server's fast path gets the same columns and messages as the KServe path. Anything
    else (None) goes through KServe, which coerces, rejects or handles it as it always has.
    """
    if type(body) is not dict or "inputs" not in body or not body.keys() <= _PLAIN_V2_KEYS:
        return None
    request_id = body.get("id")
    inputs = body["inputs"]
    if (request_id is not None and type(request_id) is not str) or type(inputs) is not list:
        return None
    tensors = []
    for item in inputs:
        if type(item) is not dict or item.keys() != _PLAIN_V2_INPUT_KEYS:
            return None
        name, shape, datatype, data = item["name"], item["shape"], item["datatype"], item["data"]
        if type(name) is not str or type(datatype) is not str or type(shape) is not list or type(data) is not list:
            return None
        if any(type(d) is not int for d in shape):
            return None
        tensors.append(Tensor(name, datatype, shape, data))
    return tensors
