"""The "tls" flag in a server's ZooKeeper data: written by new servers, optional for readers."""

from __future__ import annotations

import json

from logwire.serverset import Endpoint, Member


def test_tls_flag_round_trips_and_defaults_to_false() -> None:
    """New data carries "tls"; data without it (older servers) or with a non-boolean reads False."""
    member = Member(Endpoint("log1.example.com", 9090), process_id="p", tls=True)
    doc = json.loads(member.to_json())
    assert doc["tls"] is True
    assert doc["serviceEndpoint"] == {"host": "log1.example.com", "port": 9090}
    assert Member.from_json(member.to_json()) == member

    del doc["tls"]
    assert Member.from_json(json.dumps(doc).encode()).tls is False
    doc["tls"] = "false"
    assert Member.from_json(json.dumps(doc).encode()).tls is False
