"""RFC 6902 ops and RFC 6901 pointers, built explicitly."""

from __future__ import annotations

from typing import Any

import jsonpatch
import jsonpointer
import pytest
from hypothesis import given, strategies as st

from webhook import errors, patch


@pytest.mark.parametrize(
    ("token", "escaped"),
    [
        ("plain", "plain"),
        ("a/b", "a~1b"),
        ("a~b", "a~0b"),
        ("~1", "~01"),  # '~' first: otherwise '~1' would read back as '/'
        ("envoy-inject.io/status", "envoy-inject.io~1status"),
        ("", ""),
    ],
    ids=["plain", "slash", "tilde", "tilde-one", "annotation-key", "empty"],
)
def test_tokens_are_escaped_per_rfc_6901(token: str, escaped: str) -> None:
    assert patch.escape(token) == escaped
    assert patch.unescape(escaped) == token


@given(st.text())
def test_escaping_round_trips_for_any_text(token: str) -> None:
    assert patch.unescape(patch.escape(token)) == token


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_pointers_resolve_to_the_same_value_in_an_independent_implementation(
    tokens: list[str],
) -> None:
    doc: Any = "leaf"
    for token in reversed(tokens):
        doc = {token: doc}
    assert jsonpointer.resolve_pointer(doc, patch.pointer(*tokens)) == "leaf"


def test_the_root_pointer_is_empty_and_indices_are_decimal() -> None:
    assert patch.pointer() == ""
    assert patch.pointer("spec", "containers", 10) == "/spec/containers/10"


def test_absent_parents_are_created_in_one_op() -> None:
    doc: dict[str, Any] = {"spec": {}}
    ops = patch.put_map_entries(doc, ("spec", "template", "metadata", "annotations"), {"k": "v"})
    assert ops == [
        {"op": "add", "path": "/spec/template", "value": {"metadata": {"annotations": {"k": "v"}}}}
    ]
    assert patch.apply(doc, ops) == {
        "spec": {"template": {"metadata": {"annotations": {"k": "v"}}}}
    }


def test_a_null_map_is_treated_as_absent() -> None:
    doc = {"metadata": {"annotations": None}}
    ops = patch.put_map_entries(doc, ("metadata", "annotations"), {"a/b": "1"})
    assert patch.apply(doc, ops) == {"metadata": {"annotations": {"a/b": "1"}}}


def test_entries_are_added_one_by_one_to_an_existing_map_with_escaped_keys() -> None:
    doc = {"metadata": {"annotations": {"keep": "me"}}}
    ops = patch.put_map_entries(doc, ("metadata", "annotations"), {"x.io/y~z": "1"})
    assert ops == [{"op": "add", "path": "/metadata/annotations/x.io~1y~0z", "value": "1"}]
    assert patch.apply(doc, ops)["metadata"]["annotations"] == {"keep": "me", "x.io/y~z": "1"}


def test_an_existing_key_is_never_overwritten() -> None:
    doc = {"metadata": {"annotations": {"taken": "mine"}}}
    with pytest.raises(errors.NameClash, match="taken"):
        patch.put_map_entries(doc, ("metadata", "annotations"), {"taken": "ours"})


def test_list_items_are_appended_by_explicit_index() -> None:
    doc = {"spec": {"containers": [{"name": "a"}, {"name": "b"}]}}
    ops = patch.add_list_items(doc, ("spec", "containers"), [{"name": "c"}])
    assert ops == [{"op": "add", "path": "/spec/containers/2", "value": {"name": "c"}}]


def test_list_items_inserted_at_the_front_keep_their_order_and_shift_the_rest() -> None:
    doc = {"spec": {"initContainers": [{"name": "user-init"}]}}
    ops = patch.add_list_items(
        doc, ("spec", "initContainers"), [{"name": "a"}, {"name": "b"}], at=0
    )
    result = patch.apply(doc, ops)
    assert [c["name"] for c in result["spec"]["initContainers"]] == ["a", "b", "user-init"]


def test_an_absent_list_is_created_with_all_items() -> None:
    doc: dict[str, Any] = {"spec": {"containers": []}}
    ops = patch.add_list_items(doc, ("spec", "volumes"), [{"name": "v"}])
    assert ops == [{"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}]}]


@pytest.mark.parametrize(
    ("doc", "path"),
    [
        ({"metadata": "text"}, ("metadata", "annotations")),
        ({"metadata": {"annotations": ["a"]}}, ("metadata", "annotations")),
    ],
    ids=["parent-is-a-string", "map-is-a-list"],
)
def test_a_wrongly_typed_parent_is_a_clear_error(
    doc: dict[str, Any], path: tuple[str, ...]
) -> None:
    with pytest.raises(errors.MalformedObject, match="/metadata"):
        patch.put_map_entries(doc, path, {"k": "v"})


def test_a_wrongly_typed_list_is_a_clear_error() -> None:
    with pytest.raises(errors.MalformedObject, match="not an array"):
        patch.add_list_items({"spec": {"volumes": {}}}, ("spec", "volumes"), [{"name": "v"}])


def test_ops_are_valid_rfc_6902_for_an_independent_implementation() -> None:
    doc = {"metadata": {}, "spec": {"containers": [{"name": "a"}]}}
    ops = [
        *patch.add_list_items(doc, ("spec", "containers"), [{"name": "b"}]),
        *patch.put_map_entries(doc, ("metadata", "annotations"), {"k/1": "v"}),
    ]
    result = jsonpatch.JsonPatch(ops).apply(doc)
    assert result == {
        "metadata": {"annotations": {"k/1": "v"}},
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
    }
