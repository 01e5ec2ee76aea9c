"""RBAC on the real API server: a ServiceAccount with no grants is forbidden, both by
``kubectl auth can-i --as`` and for a real request with a token from the TokenRequest API;
a Role and RoleBinding allow exactly what they grant."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from muster_dev.kube import KubeAccess
from muster_runtime.polling import wait_until
from tests.kube.support import Run, status_message

pytestmark = pytest.mark.kube

SA = "robot"


def can_i(kubectl: Run, namespace: str, verb: str, resource: str) -> bool:
    """``kubectl auth can-i`` as the test ServiceAccount (exit 0: yes, 1: no)."""
    result = kubectl(
        "auth", "can-i", verb, resource,
        "--namespace", namespace,
        f"--as=system:serviceaccount:{namespace}:{SA}",
        check=False,
    )  # fmt: skip
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


@pytest.fixture
def sa_api(
    kube: KubeAccess, core_api: client.CoreV1Api, namespace: str
) -> Iterator[client.CoreV1Api]:
    """A client authenticated only by a bound token of the ServiceAccount ``robot``."""
    core_api.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=SA))
    )
    request = core_api.create_namespaced_service_account_token(
        SA,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600)
        ),
    )
    assert request.status is not None
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=kube.kubeconfig, context=kube.context, client_configuration=configuration
    )
    # Same server and CA, but no client certificate: the token is the only identity.
    configuration.cert_file = None
    configuration.key_file = None
    configuration.api_key = {"authorization": f"Bearer {request.status.token}"}
    with client.ApiClient(configuration) as api:
        yield client.CoreV1Api(api)


def test_serviceaccount_without_rbac_is_forbidden(
    kubectl: Run, sa_api: client.CoreV1Api, namespace: str
) -> None:
    assert not can_i(kubectl, namespace, "list", "configmaps")

    with pytest.raises(ApiException) as caught:
        sa_api.list_namespaced_config_map(namespace)
    assert caught.value.status == 403
    assert (
        f'User "system:serviceaccount:{namespace}:{SA}" cannot list resource "configmaps"'
        in status_message(caught.value)
    )


def test_role_binding_grants_exactly_its_rules(
    kubectl: Run, sa_api: client.CoreV1Api, core_api: client.CoreV1Api, namespace: str
) -> None:
    rbac = client.RbacAuthorizationV1Api(core_api.api_client)
    rbac.create_namespaced_role(
        namespace,
        client.V1Role(
            metadata=client.V1ObjectMeta(name="configmap-reader"),
            rules=[
                client.V1PolicyRule(
                    api_groups=[""], resources=["configmaps"], verbs=["get", "list"]
                )
            ],
        ),
    )
    rbac.create_namespaced_role_binding(
        namespace,
        client.V1RoleBinding(
            metadata=client.V1ObjectMeta(name="robot-reads-configmaps"),
            role_ref=client.V1RoleRef(
                api_group="rbac.authorization.k8s.io", kind="Role", name="configmap-reader"
            ),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=SA, namespace=namespace)],
        ),
    )

    # The authorizer reads roles from an informer cache: eventually consistent.
    wait_until(
        lambda: can_i(kubectl, namespace, "list", "configmaps"),
        what="the RoleBinding to take effect",
        timeout=30,
    )
    listed = sa_api.list_namespaced_config_map(namespace)
    assert listed.items is not None

    assert not can_i(kubectl, namespace, "delete", "configmaps")
    assert not can_i(kubectl, namespace, "list", "secrets")
    with pytest.raises(ApiException) as caught:
        sa_api.list_namespaced_secret(namespace)
    assert caught.value.status == 403
