"""The admission webhook's self-signed certificate (muster_operator.webhook.plan): made when
missing, left alone while good, renewed before it ends without ever being signed by a CA
the API server has not been given, a CA succeeded (and the old one kept until it expires),
and every certificate verifies against the CA bundle the operator publishes."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from muster_operator.settings import WebhookSettings
from muster_operator.webhook import Material, certificates, plan, san_of

NOW = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
SETTINGS = WebhookSettings(
    enabled=True,
    tls_secret="muster-operator-webhook-tls",
    tls_secret_namespace="muster-system",
    dns_names=["muster-operator-webhook.muster-system.svc", "127.0.0.1"],
    configuration="muster-operator",
)


def serving(material: Material) -> x509.Certificate:
    return certificates(material.cert)[0]


def trusted(material: Material) -> list[x509.Certificate]:
    return certificates(material.ca_bundle)


def verifies(material: Material, bundle: bytes) -> bool:
    leaf = serving(material)
    return any(ca.subject == leaf.issuer and _signed(leaf, ca) for ca in certificates(bundle))


def _signed(leaf: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
    except Exception:
        return False
    return True


def test_first_pass_makes_a_ca_and_a_serving_certificate() -> None:
    made = plan(None, SETTINGS, NOW, [])
    leaf = serving(made)
    assert sorted(san_of(leaf)) == sorted(SETTINGS.dns_names)
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(days=90)
    (ca,) = trusted(made)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.not_valid_after_utc == NOW + dt.timedelta(days=3650)
    assert verifies(made, made.ca_bundle)
    assert Material.from_secret(made.secret_data()) == made


def test_a_good_certificate_is_left_alone() -> None:
    made = plan(None, SETTINGS, NOW, [])
    assert plan(made, SETTINGS, NOW + dt.timedelta(days=59), trusted(made)) == made


def test_renewal_keeps_the_bundle_so_the_api_server_trusts_it_at_once() -> None:
    made = plan(None, SETTINGS, NOW, [])
    later = NOW + dt.timedelta(days=61)  # inside the 30-day renewal window
    renewed = plan(made, SETTINGS, later, trusted(made))
    assert serving(renewed).serial_number != serving(made).serial_number
    assert renewed.ca_bundle == made.ca_bundle
    assert verifies(renewed, made.ca_bundle)


def test_a_successor_ca_signs_only_once_the_api_server_has_it() -> None:
    made = plan(None, SETTINGS, NOW, [])
    near_end = NOW + dt.timedelta(days=3650 - 364)
    # First pass in the CA's last year: a successor joins the bundle; the serving
    # certificate (expired long ago) must be replaced now, by the new CA.
    fresh = plan(made, SETTINGS, near_end, trusted(made))
    old_ca, new_ca = trusted(fresh)
    assert old_ca == trusted(made)[0], "the old CA stays trusted until it expires"
    assert verifies(fresh, fresh.ca_bundle)
    # A certificate merely due for renewal waits while the new CA is not trusted yet...
    due = near_end + dt.timedelta(days=61)
    waiting = plan(fresh, SETTINGS, due, [old_ca])
    assert serving(waiting) == serving(fresh)
    # ...and is renewed by it once the webhook configuration holds it.
    renewed = plan(fresh, SETTINGS, due, [old_ca, new_ca])
    assert serving(renewed) != serving(fresh)
    assert serving(renewed).issuer == new_ca.subject
    # The old CA leaves the bundle when it expires.
    after = plan(renewed, SETTINGS, NOW + dt.timedelta(days=3651), [old_ca, new_ca])
    assert trusted(after) == [new_ca]


@pytest.mark.parametrize(
    "damage",
    ["names", "key", "garbage"],
)
def test_a_wrong_certificate_is_replaced_at_once(damage: str) -> None:
    made = plan(None, SETTINGS, NOW, [])
    if damage == "names":
        settings = SETTINGS.model_copy(update={"dns_names": ["elsewhere.example"]})
        replaced = plan(made, settings, NOW, trusted(made))
        assert san_of(serving(replaced)) == ["elsewhere.example"]
        return
    other = plan(None, SETTINGS, NOW, [])
    broken = (
        Material(made.cert, other.key, made.ca_bundle, made.ca_key)
        if damage == "key"
        else Material(b"not a certificate", b"", made.ca_bundle, made.ca_key)
    )
    replaced = plan(broken, SETTINGS, NOW, trusted(made))
    assert replaced.ca_bundle == made.ca_bundle
    assert verifies(replaced, made.ca_bundle)


def test_python_tls_accepts_the_material(tmp_path: Path) -> None:
    made = plan(None, SETTINGS, NOW, [])
    (tmp_path / "tls.crt").write_bytes(made.cert)
    (tmp_path / "tls.key").write_bytes(made.key)
    context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "tls.crt", tmp_path / "tls.key")
