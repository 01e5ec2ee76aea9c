"""Loading approval policies and the people they name, as the approval worker and the
gateway read them (a folder of published policies, a directory file).

The ``ApprovalPolicy`` kind itself is :mod:`muster_api.v1alpha1`; the snapshot a request
pins is :class:`muster_api.approval.PolicySnapshot`. The :class:`Directory` maps user ids
to e-mail addresses and groups; policies name users and groups, and a request's approvers
are the policy's users plus the members of its groups.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Self, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from muster_api.approval import PolicySnapshot
from muster_api.v1alpha1 import ApprovalPolicy, ApproverSet

T = TypeVar("T")


class PolicyError(ValueError):
    """A policy document is invalid; the message names the file and the field."""


def _describe_validation(source: str, exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return f"{source}: " + "; ".join(problems)


def parse_policies(text: str, source: str = "<policy>") -> list[ApprovalPolicy]:
    """Every ApprovalPolicy in a (multi-document) YAML text; other kinds are skipped."""
    try:
        documents = [d for d in yaml.safe_load_all(text) if d]
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML: {exc}") from None
    policies = []
    for document in documents:
        if not isinstance(document, dict) or document.get("kind") != "ApprovalPolicy":
            continue
        try:
            policies.append(ApprovalPolicy.model_validate(document))
        except ValidationError as exc:
            raise PolicyError(_describe_validation(source, exc)) from None
    return policies


def load_policy_dir(directory: Path) -> dict[str, PolicySnapshot]:
    """All policies in ``*.yaml``/``*.yml`` files of a folder, by name (and namespace/name)."""
    if not directory.is_dir():
        raise PolicyError(f"policy folder {directory} does not exist")
    found: dict[str, PolicySnapshot] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        for policy in parse_policies(path.read_text(), str(path)):
            snapshot = PolicySnapshot.of(policy)
            qualified = f"{snapshot.namespace}/{snapshot.name}"
            if qualified in found:
                raise PolicyError(f"{path}: policy {qualified} is defined twice")
            found[qualified] = snapshot
            found.setdefault(snapshot.name, snapshot)
    return found


class Person(BaseModel):
    """Someone who may request or approve."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    name: str = ""
    groups: list[str] = Field(default_factory=list)


class Directory(BaseModel):
    """People by user id (a ConfigMap in Kubernetes, a file locally)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    users: dict[str, Person] = Field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Self:
        """Read a directory file (YAML or JSON)."""
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"directory {path}: {exc}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise PolicyError(_describe_validation(str(path), exc)) from None

    def members(self, approvers: ApproverSet) -> list[str]:
        """The user ids a set names: its users and every member of its groups, sorted."""
        people = set(approvers.users)
        wanted = set(approvers.groups)
        people |= {uid for uid, person in self.users.items() if wanted & set(person.groups)}
        return sorted(people)

    def email(self, user: str) -> str | None:
        """A user's address, if known."""
        person = self.users.get(user)
        return person.email if person else None


def cached_by_mtime(paths: Callable[[], list[Path]], load: Callable[[], T]) -> Callable[[], T]:
    """``load()`` again only when one of the files changed (policies are edited live)."""
    state: dict[str, object] = {}

    def get() -> T:
        stamp = tuple((str(p), p.stat().st_mtime_ns) for p in paths() if p.exists())
        if state.get("stamp") != stamp:
            state["value"] = load()
            state["stamp"] = stamp
        return state["value"]  # type: ignore[return-value]

    return get
