"""``helm upgrade`` to changed images (each Muster image rebuilt under a new tag, with a new
image id) rolls every Muster Deployment, while orders keep arriving at the gateway's
NodePort and are read back: not one request fails. The gateway's pods keep serving through
their shutdown delay (not ready, closing keep-alive connections) while kube-proxy stops
sending them new connections. The dev server keeps its pod (and with it Temporal's state)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field

import httpx
import pytest

from tests.cluster.release import (
    DEPLOYMENTS,
    Release,
    rebuild_with_label,
    reference,
    remove_images,
)
from tests.cluster.support import ClusterHandle, import_images
from tests.helpers import REPO, async_wait_until
from tests.platform_support import TOKENS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

ORDER = (REPO / "examples" / "orders" / "basic.json").read_text()
SHOP = {"Authorization": f"Bearer {TOKENS['shop']}"}


@dataclass
class Load:
    """Requests sent through the rollout: what answered, and every failure with its reason."""

    ok: int = 0
    failures: list[str] = field(default_factory=list)


async def drive(api: httpx.AsyncClient, load: Load, stop: asyncio.Event) -> None:
    """Place an order and read it back, again and again (one client, keep-alive)."""
    while not stop.is_set():
        order_id = f"upgrade-{uuid.uuid4().hex[:10]}"
        body = ORDER.replace('"demo-1001"', f'"{order_id}"')
        try:
            placed = await api.post(
                "/v1/orders", content=body,
                headers={**SHOP, "Idempotency-Key": order_id, "content-type": "application/json"},
            )  # fmt: skip
            if placed.status_code != 201:
                load.failures.append(f"POST {order_id}: {placed.status_code} {placed.text[:200]}")
                continue
            read = await api.get(f"/v1/orders/{order_id}", headers=SHOP)
            if read.status_code != 200:
                load.failures.append(f"GET {order_id}: {read.status_code} {read.text[:200]}")
                continue
            load.ok += 2
        except httpx.HTTPError as exc:
            load.failures.append(f"{order_id}: {type(exc).__name__}: {exc}")
        await asyncio.sleep(0.3)  # the pace of the traffic, not a wait


async def test_upgrade_rolls_every_deployment_without_a_failed_request(
    release: Release, cluster: ClusterHandle
) -> None:
    new_tag = f"{release.tag}-up{uuid.uuid4().hex[:4]}"
    refs = await asyncio.to_thread(rebuild_with_label, release.tag, new_tag, new_tag)
    await asyncio.to_thread(import_images, cluster, *refs)
    before = {c: {p["metadata"]["name"]: p["status"]["containerStatuses"][0]["imageID"]
                  for p in release.pods(c)} for c in (*DEPLOYMENTS, "temporal")}  # fmt: skip

    load, stop = Load(), asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=release.gateway_url, timeout=30) as api:
            drivers = [asyncio.create_task(drive(api, load, stop)) for _ in range(2)]

            async def warmed_up() -> bool:
                return load.ok >= 10

            await async_wait_until(warmed_up, what="traffic before the upgrade", timeout=60)
            started = time.monotonic()
            await asyncio.to_thread(release.helm, "upgrade", *release.install_args(new_tag),
                                    timeout=120)  # fmt: skip

            def rolled() -> bool:
                return not release.unavailable() and all(
                    p["spec"]["containers"][0]["image"] == reference(c, new_tag)
                    for c in DEPLOYMENTS for p in release.pods(c)
                )  # fmt: skip

            await async_wait_until(
                lambda: asyncio.to_thread(rolled), what="every Deployment rolled",
                timeout=600, interval=2,
            )  # fmt: skip
            rollout = time.monotonic() - started
            during = load.ok
            await async_wait_until(lambda: _more(load, during + 10), what="traffic after it",
                                   timeout=60)  # fmt: skip
            stop.set()
            await asyncio.gather(*drivers)
    finally:
        stop.set()
        release.current_tag = new_tag
    assert load.failures == [], (
        f"{len(load.failures)} of {load.ok + len(load.failures)} failed:\n"
        + "\n".join(load.failures)
    )
    assert load.ok >= 40, load.ok

    for component in DEPLOYMENTS:
        for pod in release.pods(component):
            name = pod["metadata"]["name"]
            assert name not in before[component], f"{name} was not replaced"
            (status,) = pod["status"]["containerStatuses"]
            assert status["imageID"] not in before[component].values(), status
    assert {p["metadata"]["name"] for p in release.pods("temporal")} == set(before["temporal"])
    print(f"rolled {len(DEPLOYMENTS)} Deployments in {rollout:.0f}s, {load.ok} requests answered")
    remove_images(new_tag)


async def _more(load: Load, count: int) -> bool:
    return load.ok >= count
