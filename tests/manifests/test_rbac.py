"""Least privilege: the cert job gets exactly what it needs, by name; the controller exactly
what its watches and writes need (fenced further by its admission policy); the webhook may only
list and watch LimitRanges and ResourceQuotas (to fit sidecars into them)."""

from __future__ import annotations

from typing import Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, Manifest, Object
from webhook import reconcile

INJECTOR_OBJECTS: Final = documents.objects(INJECTOR)
RBAC_KINDS: Final = {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
CERTS: Final = "envoy-injector-certs"
WEBHOOK_ROLE: Final = "envoy-injector-webhook"
ALL_ROLES: Final = [m for m in INJECTOR_OBJECTS if m.kind in {"Role", "ClusterRole"}]
ALL_BINDINGS: Final = [
    m for m in INJECTOR_OBJECTS if m.kind in {"RoleBinding", "ClusterRoleBinding"}
]
# The cert job's objects; the controller's are pinned rule by rule at the end of this file.
ROLES: Final = [m for m in ALL_ROLES if m.name == CERTS]
BINDINGS: Final = [m for m in ALL_BINDINGS if m.name == CERTS]
CONTROLLER: Final = "envoy-injector-controller"
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


ALL_RULES: Final = [(m, rule) for m in ALL_ROLES for rule in m.obj["rules"]]
ALL_RULE_IDS: Final = [f"{m.label}#{i}" for m in ALL_ROLES for i, _ in enumerate(m.obj["rules"])]


def test_only_the_cert_job_the_controller_and_the_webhook_have_roles() -> None:
    assert {m.name for m in ALL_ROLES} == {"envoy-injector-certs", CONTROLLER, WEBHOOK_ROLE}
    assert {m.name for m in ALL_BINDINGS} == {"envoy-injector-certs", CONTROLLER, WEBHOOK_ROLE}


@pytest.mark.parametrize(("manifest", "rule"), ALL_RULES, ids=ALL_RULE_IDS)
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


def test_the_controller_reads_namespaces_and_writes_configmaps_and_events_only() -> None:
    cluster_role = documents.one(INJECTOR_OBJECTS, "ClusterRole", CONTROLLER)
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            "verbs": ["get", "list", "watch", "create", "update", "delete"],
        },
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    ]


def test_the_controller_holds_only_its_own_lease_in_its_own_namespace() -> None:
    role = documents.one(INJECTOR_OBJECTS, "Role", CONTROLLER)
    assert role["metadata"]["namespace"] == "envoy-injector"
    assert role["rules"] == [
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [CONTROLLER],
            "verbs": ["get", "update"],
        },
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]


@pytest.mark.parametrize("kind", ["RoleBinding", "ClusterRoleBinding"])
def test_the_controller_bindings_name_its_account_only(kind: str) -> None:
    binding = documents.one(INJECTOR_OBJECTS, kind, CONTROLLER)
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": kind.removesuffix("Binding"),
        "name": CONTROLLER,
    }
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": CONTROLLER, "namespace": "envoy-injector"}
    ]


def test_the_controller_policy_fences_the_account_rbac_lets_write_configmaps() -> None:
    policy = documents.one(
        INJECTOR_OBJECTS, "ValidatingAdmissionPolicy", f"{CONTROLLER}-configmaps"
    )
    (condition,) = policy["spec"]["matchConditions"]
    assert f"'system:serviceaccount:envoy-injector:{CONTROLLER}'" in condition["expression"]
    (rule,) = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["configmaps"]
    assert set(rule["operations"]) == {"CREATE", "UPDATE", "DELETE"}
    assert policy["spec"]["failurePolicy"] == "Fail"
    binding = documents.one(
        INJECTOR_OBJECTS, "ValidatingAdmissionPolicyBinding", f"{CONTROLLER}-configmaps"
    )
    assert binding["spec"] == {
        "policyName": f"{CONTROLLER}-configmaps",
        "validationActions": ["Deny"],
    }


def test_the_controller_policy_allows_the_configmap_name_and_label_the_code_writes() -> None:
    policy = documents.one(
        INJECTOR_OBJECTS, "ValidatingAdmissionPolicy", f"{CONTROLLER}-configmaps"
    )
    variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
    config_map = documents.one(INJECTOR_OBJECTS, "ConfigMap", "envoy-injector-config")
    name = yaml.safe_load(config_map["data"]["config.yaml"])["sidecar"]["configMap"]
    assert variables["names"] == f"['{name}']"
    text = yaml.safe_dump(policy["spec"]["validations"])
    assert f"'{reconcile.MANAGED_BY_LABEL}'" in text
    assert f"'{reconcile.MANAGER}'" in text
