"""plain_v2_tensors: which parsed V2 bodies the model server's fast path may take without KServe's pydantic model."""

from __future__ import annotations

import pytest

from serving.request_columns import Tensor, plain_v2_tensors

INPUT = {"name": "SPECIALISME", "datatype": "BYTES", "shape": [2], "data": ["a", "b"]}


def test_a_plain_body_gives_its_tensors_unchanged():
    body = {"id": "x", "inputs": [INPUT, {**INPUT, "name": "ROAZ_REGIO", "shape": [2, 1], "data": [["a"], ["b"]]}]}
    assert plain_v2_tensors(body) == [
        Tensor("SPECIALISME", "BYTES", [2], ["a", "b"]),
        Tensor("ROAZ_REGIO", "BYTES", [2, 1], [["a"], ["b"]]),
    ]
    assert plain_v2_tensors({"inputs": []}) == []


@pytest.mark.parametrize(
    "body",
    [
        [INPUT],
        {"id": "x"},
        {"inputs": {"a": 1}},
        {"inputs": [INPUT], "parameters": {"binary_data_output": True}},
        {"inputs": [INPUT], "outputs": [{"name": "predictions"}]},
        {"inputs": [INPUT], "id": 3},
        {"inputs": [{**INPUT, "parameters": {}}]},
        {"inputs": [{k: v for k, v in INPUT.items() if k != "datatype"}]},
        {"inputs": [{**INPUT, "shape": [2.0]}]},
        {"inputs": [{**INPUT, "shape": ["2"]}]},
        {"inputs": [{**INPUT, "shape": [True]}]},
        {"inputs": [{**INPUT, "shape": 2}]},
        {"inputs": [{**INPUT, "name": 5}]},
        {"inputs": [{**INPUT, "datatype": None}]},
        {"inputs": [{**INPUT, "data": "ab"}]},
        {"inputs": ["SPECIALISME"]},
    ],
)
def test_anything_kserve_might_coerce_or_reject_is_left_to_kserve(body):
    assert plain_v2_tensors(body) is None
