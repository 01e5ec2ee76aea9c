"""HTTPS for the admission webhook: the serving certificate, where it comes from, how it is
renewed, and the server that presents it.

Two sources, one Secret (``tls.crt``, ``tls.key``, ``ca.crt``):

* **self-signed** (the default): the operator makes a CA and a serving certificate signed
  by it, keeps both in the Secret, and patches the CA bundle into the
  ValidatingWebhookConfiguration. The serving certificate is replaced when it nears its
  end; the CA bundle does not change then, so the API server never meets a certificate it
  does not trust. A CA nearing its end gets a successor that joins the bundle at once but
  signs serving certificates only once the bundle in the webhook configuration holds it;
  the old CA stays in the bundle until it expires.
* **cert-manager**: cert-manager writes the Secret and its CA injector the bundle; the
  operator only reads the Secret and picks up renewals.

The server reloads a renewed certificate into its TLS context in place (new connections
get it, nothing restarts), so a renewal costs no refused requests.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import logging
import shutil
import ssl
import tempfile
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import kopf
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from muster_operator.settings import WebhookSettings

log = logging.getLogger(__name__)

CERT, KEY, CA, CA_KEY = "tls.crt", "tls.key", "ca.crt", "ca.key"


class CertificateUnavailable(Exception):
    """The serving certificate cannot be had yet; the message says why and what to do."""


@dataclass(frozen=True)
class Material:
    """What the Secret holds (PEM)."""

    cert: bytes
    key: bytes
    ca_bundle: bytes
    ca_key: bytes = b""
    """The key of the newest CA (self-signed only)."""

    @classmethod
    def from_secret(cls, data: Mapping[str, str | bytes] | None) -> Material | None:
        """The Secret's data (base64), or None while it lacks a certificate."""
        data = data or {}
        if not data.get(CERT) or not data.get(KEY):
            return None

        def get(key: str) -> bytes:
            return base64.b64decode(data.get(key) or b"")

        return cls(get(CERT), get(KEY), get(CA), get(CA_KEY))

    def secret_data(self) -> dict[str, str | bytes]:
        """As the Secret's data (base64)."""
        values: dict[str, bytes] = {CERT: self.cert, KEY: self.key, CA: self.ca_bundle}
        if self.ca_key:
            values[CA_KEY] = self.ca_key
        return {k: base64.b64encode(v).decode() for k, v in values.items()}


def certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle (none for empty or garbled input)."""
    try:
        return x509.load_pem_x509_certificates(pem) if pem.strip() else []
    except ValueError:
        return []


def _key(pem: bytes) -> ec.EllipticCurvePrivateKey | None:
    try:
        key = serialization.load_pem_private_key(pem, password=None) if pem else None
    except ValueError:
        return None
    return key if isinstance(key, ec.EllipticCurvePrivateKey) else None


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _same_key(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    der = serialization.PublicFormat.SubjectPublicKeyInfo
    return cert.public_key().public_bytes(
        serialization.Encoding.DER, der
    ) == key.public_key().public_bytes(serialization.Encoding.DER, der)


def _names(names: Sequence[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    return sans


def san_of(cert: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses a certificate is for."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n) for n in ext.get_values_for_type(x509.DNSName)] + [
        str(n) for n in ext.get_values_for_type(x509.IPAddress)
    ]


def new_ca(now: dt.datetime, days: float) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A CA that signs serving certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "muster-operator-webhook-ca")])
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # clock skew between hosts
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def new_serving(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: dt.datetime,
    days: float,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serving certificate for ``names``, signed by ``ca``, ending no later than it."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, key_encipherment=True, key_cert_sign=False, crl_sign=False,
        content_commitment=False, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(min(now + dt.timedelta(days=days), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_names(names)), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def plan(
    current: Material | None,
    settings: WebhookSettings,
    now: dt.datetime,
    trusted: Sequence[x509.Certificate],
) -> Material:
    """The self-signed material to hold from ``now`` on (``current`` when nothing is due).

    ``trusted`` are the CAs the API server already trusts (the webhook configuration's
    bundle). A serving certificate that is merely due for renewal waits until the CA that
    signs it is among them (one check later, after the bundle was patched), so the API
    server never meets a certificate signed by a CA it has not been told about; only a
    missing, expired or wrong certificate is replaced at once.
    """
    days = dt.timedelta(days=1)
    cas = [
        c
        for c in certificates(current.ca_bundle if current else b"")
        if c.not_valid_after_utc > now
    ]
    ca_key = _key(current.ca_key) if current else None
    signing = next((c for c in reversed(cas) if ca_key and _same_key(c, ca_key)), None)
    if signing is None or signing.not_valid_after_utc - now < settings.ca_renew_before_days * days:
        signing, ca_key = new_ca(now, settings.ca_days)
        cas.append(signing)
    assert ca_key is not None
    leaf = certificates(current.cert if current else b"")
    serving = leaf[0] if leaf else None
    serving_key = _key(current.key) if current else None
    broken = (
        serving is None
        or serving_key is None
        or not _same_key(serving, serving_key)
        or serving.not_valid_after_utc <= now
        or sorted(san_of(serving)) != sorted(_canonical(settings.dns_names))
        or not any(_signed_by(serving, ca) for ca in cas)
    )
    ageing = serving is not None and (
        serving.not_valid_after_utc - now < settings.renew_before_days * days
    )
    trusted_prints = {c.fingerprint(hashes.SHA256()) for c in trusted}
    if broken or (ageing and signing.fingerprint(hashes.SHA256()) in trusted_prints):
        serving, serving_key = new_serving(
            signing, ca_key, settings.dns_names, now, settings.certificate_days
        )
    assert serving is not None
    assert serving_key is not None
    return Material(
        cert=_pem(serving),
        key=_key_pem(serving_key),
        ca_bundle=b"".join(_pem(c) for c in cas),
        ca_key=_key_pem(ca_key),
    )


def _canonical(names: Sequence[str]) -> list[str]:
    out = []
    for name in names:
        try:
            out.append(str(ipaddress.ip_address(name)))
        except ValueError:
            out.append(name)
    return out


class CertificateKeeper:
    """Reads (and, self-signed, makes and renews) the serving certificate, keeps the CA
    bundle in the webhook configuration, and loads the certificate into TLS contexts."""

    def __init__(self, settings: WebhookSettings, api: k8s.ApiClient) -> None:
        self.settings = settings
        self.core = k8s.CoreV1Api(api)
        self.admission = k8s.AdmissionregistrationV1Api(api)
        self.loaded: Material | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="muster-webhook-"))

    # -- the Kubernetes side (blocking calls, run in a thread) --------------------------

    def _read_secret(self) -> k8s.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(
                self.settings.tls_secret, self.settings.tls_secret_namespace
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _write_secret(self, found: k8s.V1Secret | None, material: Material) -> None:
        name, namespace = self.settings.tls_secret, self.settings.tls_secret_namespace
        if found is None:
            body = k8s.V1Secret(
                metadata=k8s.V1ObjectMeta(
                    name=name, labels={"app.kubernetes.io/managed-by": "muster-operator"}
                ),
                data=material.secret_data(),
            )
            self.core.create_namespaced_secret(namespace, body)
            return
        found.data = material.secret_data()
        # replace carries the resourceVersion read: a concurrent writer makes this a 409.
        self.core.replace_namespaced_secret(name, namespace, found)

    def _bundles(self) -> tuple[list[str], list[bytes]]:
        config = self.admission.read_validating_webhook_configuration(self.settings.configuration)
        names, bundles = [], []
        for webhook in config.webhooks or []:
            names.append(webhook.name)
            raw = webhook.client_config.ca_bundle if webhook.client_config else None
            bundles.append(base64.b64decode(raw) if raw else b"")
        return names, bundles

    def _patch_bundles(self, names: list[str], bundle: bytes) -> None:
        encoded = base64.b64encode(bundle).decode()
        patch: list[dict[str, Any]] = []
        for index, name in enumerate(names):
            patch.append({"op": "test", "path": f"/webhooks/{index}/name", "value": name})
            patch.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
            )
        self.admission.patch_validating_webhook_configuration(self.settings.configuration, patch)

    def refresh(self) -> Material:
        """One pass: the material to serve, made or renewed first when self-signed."""
        found = self._read_secret()
        current = Material.from_secret(found.data if found else None)
        if not self.settings.self_signed:
            if current is None:
                raise CertificateUnavailable(
                    f"Secret {self.settings.tls_secret_namespace}/{self.settings.tls_secret} has "
                    "no tls.crt and tls.key yet (cert-manager writes them once its Certificate "
                    "is issued)"
                )
            return current
        names, bundles = self._bundles()
        if not names:
            raise CertificateUnavailable(
                f"ValidatingWebhookConfiguration {self.settings.configuration} has no webhooks"
            )
        trusted = [c for b in bundles[:1] for c in certificates(b)]
        material = plan(current, self.settings, dt.datetime.now(dt.UTC), trusted)
        if material != current:
            self._write_secret(found, material)
            log.info(
                "webhook certificate for %s written to Secret %s/%s (valid until %s)",
                ", ".join(self.settings.dns_names),
                self.settings.tls_secret_namespace,
                self.settings.tls_secret,
                certificates(material.cert)[0].not_valid_after_utc.isoformat(),
            )
        if any(b != material.ca_bundle for b in bundles):
            self._patch_bundles(names, material.ca_bundle)
            log.info("CA bundle of %s updated", self.settings.configuration)
        return material

    # -- the TLS side -----------------------------------------------------------------

    def load(self, context: ssl.SSLContext, material: Material) -> None:
        """Put ``material``'s certificate into ``context`` (new connections present it)."""
        if material == self.loaded:
            return
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        key.touch(mode=0o600)
        cert.write_bytes(material.cert)
        key.write_bytes(material.key)
        try:
            context.load_cert_chain(cert, key)
        finally:
            key.write_bytes(b"")  # the context holds it now; nothing on disk outlives the call
        self.loaded = material

    async def keep(self, context: ssl.SSLContext, ready: asyncio.Event) -> None:
        """Forever: refresh every ``check_seconds`` (sooner, with backoff, after a failure)."""
        failures = 0
        while True:
            try:
                material = await asyncio.to_thread(self.refresh)
                self.load(context, material)
                ready.set()
                failures = 0
                delay = self.settings.check_seconds
            except Exception as exc:
                # Whatever it is, the webhook keeps serving the certificate it has (the task
                # ending would take the webhook down with it) and tries again.
                failures += 1
                delay = min(self.settings.check_seconds, 2.0 ** min(failures, 6))
                expected = (ApiException, CertificateUnavailable, OSError, ssl.SSLError)
                detail = f"{exc.status} {exc.reason}" if isinstance(exc, ApiException) else exc
                log.warning(
                    "webhook certificate not refreshed (%s); next try in %.0fs",
                    detail,
                    delay,
                    exc_info=None if isinstance(exc, expected) else exc,
                )
            await asyncio.sleep(delay)

    def close(self) -> None:
        """Remove the folder certificates pass through on their way into a TLS context."""
        shutil.rmtree(self._dir, ignore_errors=True)


class WebhookServer(kopf.WebhookServer):
    """kopf's admission endpoint on a TLS context the :class:`CertificateKeeper` keeps
    current, so renewals need no restart (kopf's own server restarts on new files)."""

    def __init__(self, settings: WebhookSettings, keeper: CertificateKeeper) -> None:
        super().__init__(addr=settings.host, port=settings.port)
        self.settings = settings
        self.keeper = keeper

    async def __call__(self, fn: kopf.WebhookFn) -> AsyncIterator[kopf.WebhookClientConfig]:
        context = ssl.create_default_context(purpose=ssl.Purpose.CLIENT_AUTH)
        ready = asyncio.Event()
        keeping = asyncio.create_task(self.keeper.keep(context, ready), name="webhook-certificate")

        async def serve(request: aiohttp.web.Request) -> aiohttp.web.Response:
            return await self._serve(fn, request)

        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.post("/{id:.*}", serve)])
        runner = aiohttp.web.AppRunner(app, handle_signals=False)
        try:
            await ready.wait()
            await runner.setup()
            site = aiohttp.web.TCPSite(
                runner, self.settings.host, self.settings.port, ssl_context=context
            )
            await site.start()
            log.info(
                "admission webhook listening on https://%s:%d",
                self.settings.host,
                self.settings.port,
            )
            host = urllib.parse.quote(
                self.settings.dns_names[0] if self.settings.dns_names else "localhost"
            )
            yield kopf.WebhookClientConfig(url=f"https://{host}:{self.settings.port}")
            await keeping  # runs until the operator stops
        finally:
            keeping.cancel()
            await runner.cleanup()
            self.keeper.close()
