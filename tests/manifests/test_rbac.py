"""Least privilege: the cert job gets exactly what it needs, by name; the webhook may only list
and watch LimitRanges and ResourceQuotas (to fit sidecars into them), nothing else."""

from __future__ import annotations

from typing import Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, Manifest, Object

INJECTOR_OBJECTS: Final = documents.objects(INJECTOR)
RBAC_KINDS: Final = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
CERTS: Final = "envoy-injector-certs"
WEBHOOK_ROLE: Final = "envoy-injector-webhook"
ALL_ROLES: Final = [m for m in INJECTOR_OBJECTS if m.kind in {"Role", "ClusterRole"}]
ALL_BINDINGS: Final = [
    m for m in INJECTOR_OBJECTS if m.kind in {"RoleBinding", "ClusterRoleBinding"}
]
# The cert job's own: named after its ServiceAccount.
ROLES: Final = [m for m in ALL_ROLES if m.name == CERTS]
BINDINGS: Final = [m for m in ALL_BINDINGS if m.name == CERTS]
RULES: Final = [(m, rule) for m in ROLES for rule in m.obj["rules"]]
RULE_IDS: Final = [f"{m.label}#{i}" for m in ROLES for i, _ in enumerate(m.obj["rules"])]

# Verbs that may not be restricted by resourceNames: `create` (the object has no name yet).
UNNAMEABLE_VERBS: Final = {"create"}
# Verbs the cert job never needs; each would widen what a stolen token can do.
FORBIDDEN_VERBS: Final = {
    "list",
    "watch",
    "delete",
    "deletecollection",
    "escalate",
    "bind",
    "impersonate",
}


def test_the_cert_job_has_exactly_one_role_and_one_cluster_role() -> None:
    bound = [b for b in ALL_BINDINGS for s in b.obj["subjects"] if s["name"] == CERTS]
    assert sorted((b.obj["roleRef"]["kind"], b.obj["roleRef"]["name"]) for b in bound) == [
        ("ClusterRole", "envoy-injector-certs"),
        ("Role", "envoy-injector-certs"),
    ]


def test_role_grants_named_secrets_and_secret_creation_only() -> None:
    role = documents.one(INJECTOR_OBJECTS, "Role", "envoy-injector-certs")
    assert role["metadata"]["namespace"] == "envoy-injector"
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": ["envoy-injector-tls", "envoy-injector-ca"],
            "verbs": ["get", "update"],
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]


def test_unnamed_secret_creation_is_explained_in_the_manifest() -> None:
    text = (INJECTOR / "rbac.yaml").read_text()
    assert "cannot be restricted by resourceNames" in text


def test_cluster_role_grants_get_and_patch_of_the_one_webhook_configuration() -> None:
    cluster_role = documents.one(INJECTOR_OBJECTS, "ClusterRole", "envoy-injector-certs")
    assert cluster_role["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["mutatingwebhookconfigurations"],
            "resourceNames": ["envoy-injector"],
            "verbs": ["get", "patch"],
        }
    ]


@pytest.mark.parametrize(("manifest", "rule"), RULES, ids=RULE_IDS)
def test_no_rule_uses_a_wildcard(manifest: Manifest, rule: Object) -> None:
    for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
        wild = [value for value in rule.get(field, []) if "*" in value]
        assert not wild, f"{manifest.label}: wildcard in {field}: {wild}"


@pytest.mark.parametrize(("manifest", "rule"), RULES, ids=RULE_IDS)
def test_every_rule_names_its_objects_unless_it_only_creates(
    manifest: Manifest, rule: Object
) -> None:
    verbs = set(rule["verbs"])
    if verbs - UNNAMEABLE_VERBS:
        assert rule.get("resourceNames"), f"{manifest.label}: {sorted(verbs)} on any name"
    else:
        assert "resourceNames" not in rule, "resourceNames on create would never match"


@pytest.mark.parametrize(("manifest", "rule"), RULES, ids=RULE_IDS)
def test_no_rule_grants_listing_watching_deleting_or_escalation(
    manifest: Manifest, rule: Object
) -> None:
    assert not set(rule["verbs"]) & FORBIDDEN_VERBS


def test_role_bindings_tie_each_role_to_the_cert_job_account_only() -> None:
    for binding in BINDINGS:
        role_kind = {"RoleBinding": "Role", "ClusterRoleBinding": "ClusterRole"}[binding.kind]
        assert binding.obj["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": role_kind,
            "name": "envoy-injector-certs",
        }
        assert binding.obj["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": "envoy-injector-certs",
                "namespace": "envoy-injector",
            }
        ]
    assert sorted(b.kind for b in BINDINGS) == ["ClusterRoleBinding", "RoleBinding"]


def test_every_binding_refers_to_a_role_that_is_shipped() -> None:
    shipped = {(m.kind, m.name) for m in ALL_ROLES}
    for binding in ALL_BINDINGS:
        ref = binding.obj["roleRef"]
        assert (ref["kind"], ref["name"]) in shipped


def test_the_webhook_may_only_list_and_watch_limit_ranges_and_quotas() -> None:
    bound = [
        b
        for b in ALL_BINDINGS
        for s in b.obj["subjects"]
        if s == {"kind": "ServiceAccount", "name": "envoy-injector", "namespace": "envoy-injector"}
    ]
    assert [(b.kind, b.obj["roleRef"]["name"]) for b in bound] == [
        ("ClusterRoleBinding", WEBHOOK_ROLE)
    ]
    role = documents.one(INJECTOR_OBJECTS, "ClusterRole", WEBHOOK_ROLE)
    assert role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["limitranges", "resourcequotas"],
            "verbs": ["list", "watch"],
        }
    ]


def test_only_the_webhook_pod_mounts_a_token_of_its_account() -> None:
    account = documents.one(INJECTOR_OBJECTS, "ServiceAccount", "envoy-injector")
    assert account["automountServiceAccountToken"] is False
    spec = documents.one(INJECTOR_OBJECTS, "Deployment", "envoy-injector")["spec"]["template"]
    assert spec["spec"]["automountServiceAccountToken"] is True


def test_no_rbac_object_lives_outside_the_rbac_files() -> None:
    files = {m.path.name for m in INJECTOR_OBJECTS if m.kind in RBAC_KINDS}
    assert all(name.startswith("rbac") and name.endswith(".yaml") for name in files), files
