"""certs.rotation and certs.store: when to renew, and a CA rotation that never drops a request.

Time is injected everywhere. "Published" stands for what the API server trusts: the CA
fingerprints found in every webhook's caBundle when a run starts, which a real run takes from
the bundle the previous run wrote. An independent RFC 5280 verifier (cryptography's) checks
every leaf against the bundle the API server would hold.
"""

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from certs import issue, rotation, store
from certs.rotation import RenewReason
from tests.support.x509_checks import verifies

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SERVICE_NAME = "envoy-injector.envoy-injector.svc"
NAMES = tuple(issue.service_dns_names("envoy-injector", "envoy-injector"))
POLICY = rotation.Policy(dns_names=NAMES)
DAY = timedelta(days=1)


def first_run(policy: rotation.Policy = POLICY, now: datetime = NOW) -> rotation.Plan:
    return rotation.plan(None, None, published=frozenset(), now=now, policy=policy)


def fingerprints(pem: bytes) -> frozenset[str]:
    return frozenset(store.fingerprint(c) for c in store.parse_bundle(pem))


def rerun(
    previous: rotation.Plan,
    now: datetime,
    policy: rotation.Policy = POLICY,
    *,
    published: frozenset[str] | None = None,
) -> rotation.Plan:
    """The next run, reading back exactly what `previous` stored and published."""
    seen = fingerprints(previous.serving.ca_pem) if published is None else published
    return rotation.plan(
        previous.authority, previous.serving, published=seen, now=now, policy=policy
    )


def signer_of(plan: rotation.Plan) -> x509.Certificate:
    assert plan.authority.active is not None
    return x509.load_pem_x509_certificate(plan.authority.active.cert_pem)


def issuer_of(plan: rotation.Plan) -> x509.Name:
    return x509.load_pem_x509_certificate(plan.serving.cert_pem).issuer


def ca_count(plan: rotation.Plan) -> int:
    return len(store.parse_bundle(plan.serving.ca_pem))


def daily(
    plan: rotation.Plan, start: datetime, days: int, policy: rotation.Policy
) -> rotation.Plan:
    """`days` daily runs after `start`, each reading back what the one before wrote."""
    for day in range(1, days + 1):
        plan = rerun(plan, start + day * DAY, policy)
    return plan


# ---- fresh issue and unchanged re-run -------------------------------------------------------


def test_first_run_creates_a_ca_and_a_leaf_it_signs() -> None:
    plan = first_run()
    assert plan.events == ("CA created",)
    assert plan.renewal is RenewReason.MISSING
    assert plan.authority.next is None
    assert fingerprints(plan.serving.ca_pem) == {store.fingerprint(signer_of(plan))}
    assert plan.authority.trust_pem == plan.serving.ca_pem
    assert verifies(plan.serving.cert_pem, plan.serving.ca_pem, NOW)


@pytest.mark.parametrize(
    ("later", "renew_before"),
    [(timedelta(minutes=1), None), (100 * DAY, None), (200 * DAY, timedelta(days=30))],
    ids=["a_minute_later", "a_hundred_days_later", "two_hundred_days_with_renew_before_30d"],
)
def test_rerun_with_a_valid_certificate_changes_nothing(
    later: timedelta, renew_before: timedelta | None
) -> None:
    policy = dataclasses.replace(POLICY, renew_before=renew_before)
    first = first_run(policy)
    second = rerun(first, NOW + later, policy)
    assert second.renewal is None
    assert second.events == ()
    assert second.authority == first.authority
    assert second.serving == first.serving


# ---- leaf renewal ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("days", "renew_before", "expected"),
    [
        (240, None, None),
        (245, None, RenewReason.EXPIRING),
        (245, timedelta(days=30), None),
        (336, timedelta(days=30), RenewReason.EXPIRING),
        (400, None, RenewReason.EXPIRING),
    ],
    ids=[
        "two_thirds_in_kept",
        "last_third_renewed",
        "renew_before_30d_keeps_it",
        "inside_renew_before_renewed",
        "expired_renewed",
    ],
)
def test_leaf_is_renewed_in_its_last_third_or_within_renew_before(
    days: int, renew_before: timedelta | None, expected: RenewReason | None
) -> None:
    policy = dataclasses.replace(POLICY, renew_before=renew_before)
    first = first_run(policy)
    now = NOW + days * DAY
    plan = rerun(first, now, policy)
    assert plan.renewal is expected
    assert plan.authority.active == first.authority.active  # same CA signs the new leaf
    assert (plan.serving.cert_pem != first.serving.cert_pem) is (expected is not None)
    assert verifies(plan.serving.cert_pem, plan.serving.ca_pem, now)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"dns_names": (*NAMES, "injector.example.com")}, RenewReason.SAN_MISMATCH),
        ({"dns_names": NAMES[:3]}, RenewReason.SAN_MISMATCH),
        ({"ip_addresses": ("10.0.0.7",)}, RenewReason.SAN_MISMATCH),
        ({"dns_names": tuple(n.upper() for n in NAMES)}, None),
        ({"key_type": "rsa"}, RenewReason.KEY_TYPE),
    ],
    ids=["name_added", "name_removed", "ip_added", "case_only_differs", "key_type_changed"],
)
def test_changed_names_or_key_type_renew_the_leaf(
    change: dict[str, object], expected: RenewReason | None
) -> None:
    first = first_run()
    policy = dataclasses.replace(POLICY, **change)  # type: ignore[arg-type]  # table of fields
    plan = rerun(first, NOW + DAY, policy)
    assert plan.renewal is expected
    if expected is not None:
        leaf = x509.load_pem_x509_certificate(plan.serving.cert_pem)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(san.get_values_for_type(x509.DNSName)) == set(policy.dns_names)


# ---- corrupt Secrets ------------------------------------------------------------------------

_OTHER = first_run()  # a second, unrelated installation to borrow mismatching parts from


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        (lambda b: dataclasses.replace(b, cert_pem=b"not a pem"), RenewReason.CORRUPT),
        (
            lambda b: dataclasses.replace(b, cert_pem=b.cert_pem[:60] + b"!!" + b.cert_pem[62:]),
            RenewReason.CORRUPT,
        ),
        (
            lambda b: dataclasses.replace(b, key_pem=b"-----BEGIN PRIVATE KEY-----\nAA=="),
            RenewReason.CORRUPT,
        ),
        (
            lambda b: dataclasses.replace(b, key_pem=_OTHER.serving.key_pem),
            RenewReason.KEY_MISMATCH,
        ),
        (
            lambda b: dataclasses.replace(
                b, cert_pem=_OTHER.serving.cert_pem, key_pem=_OTHER.serving.key_pem
            ),
            RenewReason.CA_MISMATCH,
        ),
    ],
    ids=[
        "cert_not_pem",
        "cert_bytes_damaged",
        "key_not_a_key",
        "key_of_another_cert",
        "foreign_ca",
    ],
)
def test_corrupt_tls_secret_gets_a_fresh_leaf_from_the_same_ca(
    corrupt: Callable[[issue.Bundle], issue.Bundle], expected: RenewReason
) -> None:
    first = first_run()
    damaged = corrupt(first.serving)
    plan = rotation.plan(
        first.authority,
        damaged,
        published=fingerprints(first.serving.ca_pem),
        now=NOW + DAY,
        policy=POLICY,
    )
    assert plan.renewal is expected
    assert plan.authority == first.authority
    assert verifies(plan.serving.cert_pem, first.serving.ca_pem, NOW + DAY)


def test_tls_ca_crt_drift_is_repaired_without_reissuing_the_leaf() -> None:
    first = first_run()
    drifted = dataclasses.replace(first.serving, ca_pem=b"")
    plan = rotation.plan(
        first.authority, drifted, published=frozenset(), now=NOW + DAY, policy=POLICY
    )
    assert plan.renewal is None
    assert plan.serving == first.serving


@pytest.mark.parametrize(
    "authority",
    [
        None,
        store.Authority(active=issue.CA(cert_pem=b"garbage", key_pem=b"garbage")),
        store.Authority(active=issue.CA(cert_pem=_OTHER.serving.cert_pem, key_pem=b"")),
    ],
    ids=["ca_secret_deleted", "ca_secret_garbage", "ca_secret_without_key"],
)
def test_lost_ca_with_a_good_leaf_is_replaced_without_an_outage(
    authority: store.Authority | None,
) -> None:
    first = first_run()
    old_bundle = first.serving.ca_pem
    published = fingerprints(old_bundle)
    staged = rotation.plan(
        authority, first.serving, published=published, now=NOW + DAY, policy=POLICY
    )
    assert staged.renewal is None
    assert staged.serving.cert_pem == first.serving.cert_pem  # the good leaf keeps serving
    assert staged.authority.active is None
    assert staged.authority.next is not None
    assert fingerprints(old_bundle) < fingerprints(staged.serving.ca_pem)
    assert ca_count(staged) == 2
    final = _walk_rotation(staged, NOW + DAY)
    assert ca_count(final) == 1
    assert store.fingerprint(signer_of(final)) in fingerprints(staged.serving.ca_pem)


def test_leaf_that_must_change_with_no_usable_ca_creates_one_in_a_single_step() -> None:
    first = first_run()
    plan = rotation.plan(
        None,
        dataclasses.replace(first.serving, key_pem=b"garbage"),
        published=fingerprints(first.serving.ca_pem),
        now=NOW + DAY,
        policy=POLICY,
    )
    assert plan.events == ("CA created",)
    assert plan.renewal is RenewReason.CORRUPT
    assert verifies(plan.serving.cert_pem, plan.serving.ca_pem, NOW + DAY)


def test_staged_ca_is_promoted_early_when_the_leaf_must_change_and_the_old_ca_is_gone() -> None:
    first = first_run()
    staged = rotation.plan(None, first.serving, published=frozenset(), now=NOW + DAY, policy=POLICY)
    assert staged.authority.next is not None
    plan = rotation.plan(
        staged.authority,
        dataclasses.replace(staged.serving, cert_pem=b"garbage"),
        published=frozenset(),
        now=NOW + 2 * DAY,
        policy=POLICY,
    )
    assert plan.authority.active == staged.authority.next
    assert plan.authority.next is None
    assert any(e.startswith("CA promoted early") for e in plan.events)


# ---- CA rotation ----------------------------------------------------------------------------

SHORT = rotation.Policy(dns_names=NAMES, ca_ttl=timedelta(days=300), cert_ttl=timedelta(days=30))


def _walk_rotation(
    staged: rotation.Plan, start: datetime, policy: rotation.Policy = POLICY
) -> rotation.Plan:
    """Run daily from a freshly staged CA until it signs and the old CAs are retired,
    checking at each step that both the leaf being replaced and its successor verify."""
    plan, now = staged, start
    for _ in range(5):
        now += DAY
        nxt = rerun(plan, now, policy)
        assert verifies(plan.serving.cert_pem, nxt.serving.ca_pem, now), "old leaf dropped"
        assert verifies(nxt.serving.cert_pem, nxt.serving.ca_pem, now)
        if nxt.serving.cert_pem != plan.serving.cert_pem:
            # The new leaf's CA was already in the caBundle the API server had before the run.
            assert verifies(nxt.serving.cert_pem, plan.serving.ca_pem, now)
        plan = nxt
        if plan.authority.next is None and ca_count(plan) == 1:
            return plan
    raise AssertionError("rotation did not finish in five daily runs")


def test_ca_rotation_goes_through_stage_observe_switch_retire_keeping_both_cas() -> None:
    first = first_run(SHORT)
    old_ca = signer_of(first)
    before = daily(first, NOW, 199, SHORT)  # 101 days of 300 left: not yet the last third
    assert before.authority.next is None
    assert signer_of(before) == old_ca

    day = NOW + 200 * DAY
    staged = rerun(before, day, SHORT)
    assert staged.events == (f"CA rotation started: {rotation.describe(old_ca)} nears expiry",)
    assert staged.authority.next is not None
    assert issuer_of(staged) == old_ca.subject  # renewed or not, the old CA still signs
    assert ca_count(staged) == 2
    assert signer_of(staged) == old_ca

    observed = rerun(staged, day + DAY, SHORT)
    assert observed.events == ("CA rotation: the new CA is in every webhook's caBundle",)
    assert observed.authority.next_published_at == day + DAY
    assert observed.serving == staged.serving

    switched = rerun(observed, day + 2 * DAY, SHORT)
    assert switched.events == ("CA rotation: the new CA signs the serving certificate",)
    assert switched.renewal is RenewReason.CA_ROTATION
    assert switched.authority.next is None
    assert switched.authority.next_published_at is None
    assert signer_of(switched) != old_ca
    assert ca_count(switched) == 2  # both CAs while replicas pick up the new leaf
    assert verifies(staged.serving.cert_pem, switched.serving.ca_pem, day + 2 * DAY)

    retired = rerun(switched, day + 3 * DAY, SHORT)
    assert retired.events == (f"CA retired from the bundle: {rotation.describe(old_ca)}",)
    assert fingerprints(retired.serving.ca_pem) == {store.fingerprint(signer_of(switched))}
    assert retired.serving.cert_pem == switched.serving.cert_pem


@pytest.mark.parametrize(
    ("published", "runs", "every"),
    [("nothing", 30, DAY), ("old_only", 30, DAY), ("both", 5, timedelta(minutes=10))],
    ids=["caBundle_never_patched", "caBundle_reverted_by_gitops", "seen_but_within_grace"],
)
def test_staged_ca_never_signs_before_it_has_been_seen_published_for_the_grace(
    published: str, runs: int, every: timedelta
) -> None:
    first = first_run(SHORT)
    start = NOW + 200 * DAY
    staged = rerun(daily(first, NOW, 199, SHORT), start, SHORT)
    old_ca = signer_of(staged)
    seen = {
        "nothing": frozenset(),
        "old_only": fingerprints(first.serving.ca_pem),
        "both": fingerprints(staged.serving.ca_pem),
    }[published]
    plan = staged
    for run in range(1, runs + 1):
        now = start + run * every
        plan = rerun(plan, now, SHORT, published=seen)
        assert signer_of(plan) == old_ca, now
        assert plan.authority.next == staged.authority.next
        assert issuer_of(plan) == old_ca.subject
        assert ca_count(plan) == 2


def test_expired_ca_is_pruned_from_the_bundle() -> None:
    old = issue.new_ca(now=NOW - 40 * DAY, ttl=30 * DAY)
    first = first_run()
    authority = dataclasses.replace(
        first.authority, trust_pem=old.cert_pem + first.authority.trust_pem
    )
    plan = rotation.plan(
        authority,
        first.serving,
        published=fingerprints(first.serving.ca_pem),
        now=NOW + DAY,
        policy=POLICY,
    )
    old_cert = x509.load_pem_x509_certificate(old.cert_pem)
    assert plan.events == (f"CA pruned from the bundle: {rotation.describe(old_cert)} expired",)
    assert fingerprints(plan.serving.ca_pem) == fingerprints(first.serving.ca_pem)


def test_daily_runs_across_several_ca_lifetimes_never_leave_a_leaf_untrusted() -> None:
    # ~2.7 CA lifetimes of daily CronJob runs; replicas may serve the previous leaf until the
    # next run, and the API server holds whatever the last run published.
    policy = rotation.Policy(
        dns_names=NAMES, ca_ttl=timedelta(days=90), cert_ttl=timedelta(days=20)
    )
    plan, now = first_run(policy), NOW
    signers = {store.fingerprint(signer_of(plan))}
    for _ in range(240):
        now += DAY
        nxt = rerun(plan, now, policy)
        assert verifies(plan.serving.cert_pem, nxt.serving.ca_pem, now), now
        assert verifies(nxt.serving.cert_pem, nxt.serving.ca_pem, now), now
        assert verifies(nxt.serving.cert_pem, plan.serving.ca_pem, now), now
        assert 1 <= ca_count(nxt) <= 2
        signers.add(store.fingerprint(signer_of(nxt)))
        plan = nxt
    assert len(signers) >= 3  # at least two complete rotations happened


# ---- needs_renewal on its own and the stored formats ---------------------------------------


@pytest.mark.parametrize(
    ("bundle", "expected"),
    [
        (None, RenewReason.MISSING),
        (issue.Bundle(cert_pem=b"", key_pem=b"", ca_pem=b""), RenewReason.CORRUPT),
        (_OTHER.serving, None),
        (
            dataclasses.replace(_OTHER.serving, ca_pem=first_run().serving.ca_pem),
            RenewReason.CA_MISMATCH,
        ),
    ],
    ids=["missing", "empty", "fit", "ca_pem_does_not_sign_it"],
)
def test_needs_renewal_names_the_first_problem(
    bundle: issue.Bundle | None, expected: RenewReason | None
) -> None:
    reason = rotation.needs_renewal(bundle, now=NOW, dns_names=NAMES, renew_before=None)
    assert reason is expected


def test_leaf_not_yet_valid_is_renewed() -> None:
    later = first_run(now=NOW + 10 * DAY)
    assert (
        rotation.needs_renewal(later.serving, now=NOW, dns_names=NAMES, renew_before=None)
        is RenewReason.NOT_YET_VALID
    )


def test_authority_round_trips_through_secret_data_and_annotations() -> None:
    staged = rerun(first_run(SHORT), NOW + 201 * DAY, SHORT)
    observed = rerun(staged, NOW + 202 * DAY, SHORT)
    data = store.authority_data(observed.authority)
    annotations = store.authority_annotations(observed.authority)
    assert annotations == {store.PUBLISHED_AT: "2030-07-22T00:00:00Z"}
    assert set(data) == {"ca.crt", "ca.key", "next-ca.crt", "next-ca.key", "trust.crt"}
    assert store.read_authority(data, annotations) == observed.authority


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2030-01-01T00:00:00Z", NOW),
        ("2030-01-01T00:00:00", NOW),
        ("yesterday", None),
        ("", None),
    ],
    ids=["rfc3339_utc", "no_offset_read_as_utc", "garbage", "empty"],
)
def test_published_at_annotation_is_read_leniently(value: str, expected: datetime | None) -> None:
    authority = store.read_authority({}, {store.PUBLISHED_AT: value})
    assert authority.next_published_at == expected


def test_bundles_are_deduplicated_by_fingerprint_and_garbage_is_skipped() -> None:
    a, b = first_run().serving.ca_pem, _OTHER.serving.ca_pem
    parsed = store.parse_bundle(
        b"junk\n" + a + b + a + b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
    )
    assert [store.fingerprint(c) for c in parsed] == [
        store.fingerprint(store.parse_bundle(a)[0]),
        store.fingerprint(store.parse_bundle(b)[0]),
    ]
    assert store.common_fingerprints([a + b, b]) == fingerprints(b)
    assert store.common_fingerprints([]) == frozenset()


def test_tls_secret_without_a_key_reads_as_missing() -> None:
    assert store.read_serving({"tls.crt": b"x"}) is None
    assert store.read_serving({"tls.crt": b"x", "tls.key": b"y"}) == issue.Bundle(
        cert_pem=b"x", key_pem=b"y", ca_pem=b""
    )


# ---- asked for on one run: --renew-now and --rotate-ca ----------------------------------------

RENEW_NOW = dataclasses.replace(POLICY, renew_now=True)
ROTATE_CA = dataclasses.replace(SHORT, rotate_ca=True)


def serial_of(plan: rotation.Plan) -> int:
    return x509.load_pem_x509_certificate(plan.serving.cert_pem).serial_number


def test_renew_now_replaces_a_fit_leaf_on_that_run_and_the_next_run_leaves_it_alone() -> None:
    first = first_run()
    renewed = rerun(first, NOW + DAY, RENEW_NOW)
    assert renewed.renewal is RenewReason.REQUESTED
    assert serial_of(renewed) != serial_of(first)
    assert signer_of(renewed) == signer_of(first)  # same CA: trusted at once, no caBundle change
    assert renewed.serving.ca_pem == first.serving.ca_pem
    assert verifies(renewed.serving.cert_pem, first.serving.ca_pem, NOW + DAY)
    after = rerun(renewed, NOW + 2 * DAY)
    assert after.renewal is None
    assert after.serving == renewed.serving


def test_renew_now_never_forces_a_one_step_ca_change() -> None:
    first = first_run()
    lost = dataclasses.replace(first, authority=store.Authority(active=None))  # CA Secret lost
    plan = rerun(lost, NOW + DAY, RENEW_NOW)
    assert plan.renewal is None
    assert plan.serving.cert_pem == first.serving.cert_pem
    assert "renewal requested: deferred, no CA can sign until the staged one is" in plan.events


def test_rotate_ca_stages_a_new_ca_on_that_run_and_the_usual_runs_finish_it() -> None:
    first = first_run(SHORT)
    old_ca = signer_of(first)
    staged = rerun(first, NOW + DAY, ROTATE_CA)  # a young CA: only the request rotates it
    assert staged.events == (
        f"CA rotation started: requested, replacing {rotation.describe(old_ca)}",
    )
    assert staged.authority.next is not None
    assert ca_count(staged) == 2
    assert staged.serving.cert_pem == first.serving.cert_pem  # the old CA still signs
    done = _walk_rotation(staged, NOW + DAY, SHORT)
    assert signer_of(done) != old_ca
    assert fingerprints(done.serving.ca_pem) == {store.fingerprint(signer_of(done))}
    assert rerun(done, NOW + 7 * DAY, SHORT).serving == done.serving  # and stays done


def test_rotate_ca_during_a_rotation_lets_that_one_continue() -> None:
    staged = rerun(first_run(SHORT), NOW + DAY, ROTATE_CA)
    again = rerun(staged, NOW + 2 * DAY, ROTATE_CA)
    assert again.authority.next == staged.authority.next
    assert "CA rotation requested: one is already under way, it continues" in again.events
