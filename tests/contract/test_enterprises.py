"""Enterprise contract (issue 11): enterprises and agencies on SQLite and PostgreSQL —
upsert and read back, agencies kept for agents who stay, created for new ones, deleted
for removed ones, all in one transaction."""

from __future__ import annotations

import os
import secrets

import pytest

from suishen.app.storage.base import Database
from suishen.app.storage.enterprises import Agency
from suishen.errors import StorageError

USCC = "91350100M000100Y43"


def agency(sub: str) -> Agency:
    return Agency(os.urandom(10), sub, os.urandom(10))


async def test_upsert_read_back_and_agencies(db: Database) -> None:
    eid = f"e-{secrets.token_hex(4)}"
    assert await db.enterprises.get(eid) is None
    a, b = agency("alice"), agency("bob")
    stored = await db.enterprises.put(
        eid, name="Acme 有限公司", uscc=USCC, status="active",
        attributes={"legal_representative": "张三", "licences": ["L-1", "L-2"]},
        agents=[a, b], now=100)
    assert stored == await db.enterprises.get(eid)
    assert stored.name == "Acme 有限公司" and stored.uscc == USCC and not stored.suspended
    assert stored.attributes == {"legal_representative": "张三", "licences": ["L-1", "L-2"]}
    assert sorted(stored.agencies, key=lambda x: x.agent_sub) == [a, b]
    assert (stored.created_at, stored.updated_at) == (100, 100)

    # bob stays (keeps his agency whatever handle is offered), alice goes, carol comes
    c = agency("carol")
    again = await db.enterprises.put(
        eid, name="Acme", uscc=USCC, status="suspended", attributes={},
        agents=[agency("bob"), c], now=200)
    assert again.suspended and again.attributes == {} and again.name == "Acme"
    assert {x.agent_sub: x for x in again.agencies} == {"bob": b, "carol": c}
    assert (again.created_at, again.updated_at) == (100, 200)

    none = await db.enterprises.put(eid, name="Acme", uscc=USCC, status="active",
                                    attributes={}, agents=[], now=300)
    assert none.agencies == ()
    assert eid in {e.enterprise_id for e in await db.enterprises.all()}


async def test_all_lists_every_enterprise_with_its_agencies(db: Database) -> None:
    ids = [f"e-{secrets.token_hex(4)}" for _ in range(3)]
    for i, eid in enumerate(ids):
        await db.enterprises.put(eid, name=f"E{i}", uscc=USCC, status="active",
                                 attributes={}, agents=[agency(f"s{j}") for j in range(i)],
                                 now=1)
    found = {e.enterprise_id: e for e in await db.enterprises.all()}
    assert [len(found[eid].agencies) for eid in ids] == [0, 1, 2]


async def test_a_taken_agency_handle_changes_nothing(db: Database) -> None:
    first, second = f"e-{secrets.token_hex(4)}", f"e-{secrets.token_hex(4)}"
    taken = agency("alice")
    await db.enterprises.put(first, name="One", uscc=USCC, status="active", attributes={},
                             agents=[taken], now=1)
    await db.enterprises.put(second, name="Two", uscc=USCC, status="active", attributes={},
                             agents=[agency("x")], now=1)
    clash = Agency(taken.handle, "bob", os.urandom(10))
    with pytest.raises(StorageError):
        await db.enterprises.put(second, name="Changed", uscc=USCC, status="suspended",
                                 attributes={}, agents=[clash], now=2)
    kept = await db.enterprises.get(second)
    assert kept is not None and kept.name == "Two" and kept.agents == ["x"]


async def test_partner_enterprise_attributes_round_trip(db: Database) -> None:
    from suishen.app.storage.base import Partner

    window = Partner(client_id=f"gov-{secrets.token_hex(4)}", name="Window 1",
                     scenes=("government",), attributes=("name",), rate_limit_per_second=None,
                     secret_hash="$scrypt$x", created_at=1,
                     enterprise_attributes=("name", "uscc", "licences"))
    plain = Partner(client_id=f"lib-{secrets.token_hex(4)}", name="Library",
                    scenes=("library",), attributes=(), rate_limit_per_second=None,
                    secret_hash="$scrypt$x", created_at=1)
    await db.partners.create(window)
    await db.partners.create(plain)
    assert await db.partners.get(window.client_id) == window
    got = await db.partners.get(plain.client_id)
    assert got == plain and got.enterprise_attributes == ()
