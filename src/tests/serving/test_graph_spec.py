"""Graph and VirtualService manifests are checked at load time, and conditions follow GJSON's subset."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from serving.gjson_subset import ConditionError, parse_condition
from serving.graph_spec import SpecError
from serving.routing_plan import load_plan, parse_resolve
from tests.serving.servers import mirror_virtual_service

RESOLVE = {"champion": "http://127.0.0.1:1", "challenger": "http://127.0.0.1:2"}


def graph(nodes: str) -> str:
    return textwrap.dedent(
        """\
        apiVersion: serving.kserve.io/v1alpha1
        kind: InferenceGraph
        metadata:
          name: g
        spec:
          nodes:
        """
    ) + textwrap.indent(textwrap.dedent(nodes), "    ")


def load(tmp_path: Path, text: str, resolve: dict[str, str] = RESOLVE):
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return load_plan([path], resolve)


MALFORMED = [
    ("missing root", "other:\n  routerType: Sequence\n  steps:\n  - serviceName: champion\n", ["'root'"]),
    (
        "unknown routerType",
        "root:\n  routerType: Parallel\n  steps:\n  - serviceName: champion\n",
        ["node 'root'", "routerType", "Parallel"],
    ),
    (
        "step with no target",
        "root:\n  routerType: Sequence\n  steps:\n  - name: a\n",
        ["node 'root' step 0", "exactly one of", "found none"],
    ),
    (
        "step with two targets",
        "root:\n  routerType: Sequence\n  steps:\n  - serviceName: champion\n    nodeName: x\n",
        ["node 'root' step 0", "serviceName, nodeName"],
    ),
    (
        "missing node",
        "root:\n  routerType: Sequence\n  steps:\n  - nodeName: nowhere\n",
        ["node 'root' step 0", "nodeName", "'nowhere'"],
    ),
    (
        "splitter weights",
        "root:\n  routerType: Splitter\n  steps:\n  - serviceName: champion\n    weight: 60\n"
        "  - serviceName: challenger\n    weight: 30\n",
        ["node 'root'", "Splitter", "sum to 90"],
    ),
    (
        "splitter without weight",
        "root:\n  routerType: Splitter\n  steps:\n  - serviceName: champion\n",
        ["node 'root'", "no weight"],
    ),
    (
        "switch without condition",
        "root:\n  routerType: Switch\n  steps:\n  - serviceName: champion\n",
        ["node 'root'", "no condition"],
    ),
    (
        "unsupported condition",
        "root:\n  routerType: Switch\n  steps:\n  - serviceName: champion\n"
        "    condition: 'instances.#(a==1)#'\n",
        ["node 'root' step 0", "condition", "all-match"],
    ),
    (
        "cycle",
        "root:\n  routerType: Sequence\n  steps:\n  - nodeName: a\na:\n  routerType: Sequence\n  steps:\n"
        "  - nodeName: root\n",
        ["cycle", "root -> a -> root"],
    ),
    (
        "unresolved service",
        "root:\n  routerType: Sequence\n  steps:\n  - serviceName: nobody\n",
        ["node 'root' step 0", "serviceName", "'nobody'", "--resolve"],
    ),
    (
        "bad dependency",
        "root:\n  routerType: Sequence\n  steps:\n  - serviceName: champion\n    dependency: Maybe\n",
        ["node 'root' step 0", "dependency", "Maybe"],
    ),
    (
        "bad data",
        "root:\n  routerType: Sequence\n  steps:\n  - serviceName: champion\n    data: $input\n",
        ["node 'root' step 0", "data", "$input"],
    ),
    (
        "condition on first sequence step",
        "root:\n  routerType: Sequence\n  steps:\n  - serviceName: champion\n    condition: predictions\n",
        ["node 'root' step 0", "condition", "first step"],
    ),
]


@pytest.mark.parametrize(("nodes", "words"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_graph_is_rejected_naming_node_and_field(tmp_path, nodes, words):
    with pytest.raises(SpecError) as raised:
        load(tmp_path, graph(nodes))
    for word in words:
        assert word in str(raised.value), f"{word!r} not in {raised.value}"


def test_valid_graph_loads_with_a_warning_for_unset_dependencies(tmp_path):
    plan = load(
        tmp_path,
        graph(
            """\
            root:
              routerType: Sequence
              steps:
              - serviceName: challenger
                name: shadow
              - serviceName: champion
                name: champion
                data: $request
                dependency: Hard
            """
        ),
    )
    (warning,) = plan.entry.warnings
    assert "['shadow']" in warning and "Soft" in warning


VIRTUAL_SERVICE = mirror_virtual_service(25.0)


def test_virtual_service_uses_first_dns_label_as_service_name(tmp_path):
    plan = load(tmp_path, VIRTUAL_SERVICE)
    (route,) = plan.entry.routes
    assert route.destinations[0].service == "champion"
    assert route.mirror == "challenger" and route.mirror_percentage == 25.0


def test_virtual_service_with_unresolved_mirror_is_rejected(tmp_path):
    with pytest.raises(SpecError, match=r"mirror.host names 'challenger'"):
        load(tmp_path, VIRTUAL_SERVICE, {"champion": "http://127.0.0.1:1"})


def test_resolve_entries_must_be_name_equals_url():
    assert parse_resolve(["a=http://127.0.0.1:9/"]) == {"a": "http://127.0.0.1:9"}
    with pytest.raises(SpecError, match="NAME=http"):
        parse_resolve(["a"])


V1 = {"instances": [{"SPECIALISME": "Cardiologie", "age": 50}, {"SPECIALISME": "Urologie", "age": 30}]}
V2 = {"inputs": [{"name": "SPECIALISME", "datatype": "BYTES", "shape": [1], "data": ["Cardiologie"]}]}


@pytest.mark.parametrize(
    ("expression", "document", "exists"),
    [
        ("instances", V1, True),
        ("parameters.segment", V1, False),
        ("instances.1.SPECIALISME", V1, True),
        ("instances.5", V1, False),
        ("instances.#", V1, True),
        ('instances.#(SPECIALISME=="Cardiologie")', V1, True),
        ('instances.#(SPECIALISME=="Oogheelkunde")', V1, False),
        ('instances.#(SPECIALISME!="Cardiologie")', V1, True),
        ("instances.#(age>45)", V1, True),
        ("instances.#(age>60)", V1, False),
        ("instances.#(age<=30)", V1, True),
        ('instances.#(SPECIALISME%"Uro*")', V1, True),
        ('instances.#(SPECIALISME=="Urologie").age', V1, True),
        ("instances.#(missing)", V1, False),
        ('inputs.#(name=="SPECIALISME").data.#(=="Cardiologie")', V2, True),
        ('inputs.#(name=="SPECIALISME").data.#(=="Urologie")', V2, False),
        ('instances.#(SPECIALISME=="a.b|c")', V1, False),
    ],
)
def test_condition_subset_matches_gjson_exists(expression, document, exists):
    assert parse_condition(expression).exists_in(document) is exists


@pytest.mark.parametrize(
    "expression", ["a..b", "a|b", "@this", "a.*", "instances.#(a==1)#", "a.#(b==Cardio)", ""]
)
def test_unsupported_condition_syntax_is_rejected(expression):
    with pytest.raises(ConditionError):
        parse_condition(expression)


@pytest.mark.parametrize(
    ("body", "sent"),
    [
        # KServe decodes into a struct of only `predictions` and `instances`: other fields are dropped.
        (b'{"predictions": [1.5, 2], "model_name": "m"}', b'{"instances":[1.5,2]}'),
        (b'{"Predictions": [[1, 2]], "instances": [0]}', b'{"instances":[[1,2]]}'),  # keys match in any case
        (b'{"predictions": []}', b'{"predictions": []}'),  # nothing to move: the body goes on unchanged
        (b'{"predictions": 5}', b'{"predictions": 5}'),  # not a list: decoding fails, body unchanged
        (b'[{"predictions": [1]}]', b'[{"predictions": [1]}]'),
        (b"not json", b"not json"),
    ],
)
def test_map_predictions_to_instances_decodes_like_kserve(body, sent):
    from serving.graph_runner import _map_predictions_to_instances

    assert _map_predictions_to_instances(body) == sent
