"""The IR keeps producer/consumer links in sync; passes never splice edges by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ir import Graph, TensorType
from edge_infer.errors import GraphError

F32 = np.dtype(np.float32)


def chain() -> tuple[Graph, list]:
    g = Graph(name="chain")
    x = g.add_input("x", TensorType((2, 3), F32))
    a = g.add_node("Relu", [x], ["a"], name="relu")
    b = g.add_node("Neg", [a.outputs[0]], ["b"], name="neg")
    c = g.add_node("Add", [a.outputs[0], b.outputs[0]], ["c"], name="add")
    g.add_output(c.outputs[0], "y")
    return g, [a, b, c]


def test_links_are_kept_in_sync() -> None:
    g, (relu, neg, add) = chain()
    a = relu.outputs[0]
    assert a.producer is relu
    assert a.uses == [(neg, 0), (add, 0)]
    assert a.consumers == [neg, add]
    assert add.i(1) is neg and relu.o(1) is add
    g.verify()


def test_replace_all_uses_with_moves_node_inputs_and_graph_outputs() -> None:
    g, (relu, neg, add) = chain()
    x = g.inputs[0]
    g.replace_all_uses_with(relu.outputs[0], x)
    assert neg.inputs[0] is x and add.inputs[0] is x
    assert relu.outputs[0].uses == []
    g.remove_node(relu)
    g.verify()
    const = g.add_constant("k", np.ones((2, 3), np.float32))
    g.replace_all_uses_with(add.outputs[0], const)
    assert g.outputs == [("y", const)], "the graph output keeps its public name"


def test_remove_node_refuses_while_outputs_are_used() -> None:
    g, (relu, _, _) = chain()
    with pytest.raises(GraphError, match="still used by neg, add"):
        g.remove_node(relu)


def test_removal_while_iterating_is_safe() -> None:
    g, _ = chain()
    seen = []
    for node in g.iter_nodes():
        seen.append(node.name)
        if node.name == "relu":
            g.replace_all_uses_with(node.outputs[0], g.inputs[0])
            g.remove_node(node)
            neg = g.node("neg")
            g.replace_all_uses_with(neg.outputs[0], g.inputs[0])
            g.remove_node(neg)  # removed before the iterator reaches it: skipped
    assert seen == ["relu", "add"]
    g.verify()
    assert [n.name for n in g.nodes] == ["add"]


def test_topological_sort_orders_producers_first_and_detects_cycles() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((1,), F32))
    later = g.add_value("t")
    consumer = g.add_node("Neg", [later], ["y"], name="consumer")
    g.add_node("Relu", [x], [later], name="producer")
    g.add_output(consumer.outputs[0])
    with pytest.raises(GraphError, match="used before produced"):
        g.verify()
    g.topological_sort()
    assert [n.name for n in g.nodes] == ["producer", "consumer"]
    g.verify()
    # close a cycle: producer now reads consumer's output
    g.node("producer").set_input(0, consumer.outputs[0])
    with pytest.raises(GraphError, match="cycle"):
        g.topological_sort()


def test_verify_catches_bad_outputs_and_duplicate_names() -> None:
    g, _ = chain()
    dangling = g.add_value("nowhere")
    g.add_output(dangling, "z")
    with pytest.raises(GraphError, match="never produced"):
        g.verify()
    g2, (_, _, add) = chain()
    g2.add_output(add.outputs[0], "y")
    with pytest.raises(GraphError, match="duplicate graph output"):
        g2.verify()
    with pytest.raises(GraphError, match="duplicate value name"):
        g2.add_value("a", unique=False)


def test_add_node_rejects_second_producer() -> None:
    g, (relu, _, _) = chain()
    with pytest.raises(GraphError, match="already produced"):
        g.add_node("Abs", [g.inputs[0]], [relu.outputs[0]])


def test_copy_is_independent() -> None:
    g, _ = chain()
    c = g.copy()
    c.verify()
    node = c.node("neg")
    c.replace_all_uses_with(node.outputs[0], c.inputs[0])
    c.remove_node(node)
    c.verify()
    assert len(g) == 3 and len(c) == 2
    g.verify()
    assert g.value("a") is not c.value("a")


def test_set_inputs_and_unique_names() -> None:
    g, (relu, neg, add) = chain()
    add.set_inputs([g.inputs[0]])
    assert add.inputs == (g.inputs[0],)
    assert relu.outputs[0].uses == [(neg, 0)]
    assert g.unique_name("a") != "a" and g.unique_name("fresh") == "fresh"
    g.verify()
