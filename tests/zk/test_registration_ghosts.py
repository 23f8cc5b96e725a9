"""Ghost deletion on a server's first registration, when the create is retried, in a real ZooKeeper.

A ghost is the node a previous incarnation of this server left behind: it
existed before we started. A node that appears with our endpoint after we first
looked at the path (a twin started later, a test simulating a ghost) is not
one, even if the first registration is still being retried when it appears.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss
from kazoo.retry import ForceRetryError

from logserver.registry import Registration
from logwire.serverset import Member

from .conftest import SESSION, make_member, nodes

KazooFactory = Callable[..., KazooClient]


class RetriedCreateRegistration(Registration):
    """A registration whose first create succeeds in ZooKeeper but fails as far as the caller
    knows, so the whole find-or-create step is retried; ``between`` runs before the retry."""

    def __init__(
        self, *args: object, between: Callable[[], None], error: Exception, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.between = between
        self.error = error
        self.creates = 0

    def _create_node(self) -> str:
        path = super()._create_node()
        self.creates += 1
        if self.creates == 1:
            self.between()
            raise self.error
        return path


@pytest.mark.parametrize(
    "error",
    [ConnectionLoss("reply lost (injected)"), ForceRetryError("owner check failed (injected)")],
    ids=["connection-loss", "force-retry"],
)
def test_a_retried_first_registration_deletes_only_nodes_older_than_its_first_look(
    zk_hosts: str,
    zk_path: str,
    observer: KazooClient,
    kazoo_factory: KazooFactory,
    error: Exception,
) -> None:
    """The ghost that existed before we started is deleted; a node with our endpoint created by
    another session while our first create is being retried is left alone; ours is adopted."""
    member = make_member()
    old_process = kazoo_factory(zk_hosts)  # kept alive: ZooKeeper would keep its nodes
    old_process.ensure_path(zk_path)
    ghost = old_process.create(
        f"{zk_path}/member_",
        Member(member.endpoint, process_id="previous-incarnation").to_json(),
        ephemeral=True,
        sequence=True,
    )
    later_process = kazoo_factory(zk_hosts)
    created_later: list[str] = []

    def twin_registers() -> None:
        created_later.append(
            later_process.create(
                f"{zk_path}/member_",
                Member(member.endpoint, process_id="started-later").to_json(),
                ephemeral=True,
                sequence=True,
            )
        )

    registration = RetriedCreateRegistration(
        zk_hosts, zk_path, member, session_timeout_s=SESSION, between=twin_registers, error=error
    )
    try:
        registration.start()
        assert registration.wait_registered(10)

        assert registration.creates == 1  # our node was adopted, not created again
        names = {f"{zk_path}/{n.name}": n for n in nodes(observer, zk_path)}
        assert ghost not in names
        assert set(names) == {registration.node_path, *created_later}
        assert names[created_later[0]].owner == later_process.client_id[0]
        assert registration.registrations == 1
    finally:
        registration.deregister()
