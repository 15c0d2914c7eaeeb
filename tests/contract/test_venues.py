"""Venue contract (issue 11 part B): venues, revocation and check-ins on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import secrets

from suishen.app.storage.base import Database
from suishen.app.storage.venues import CheckinRecord, Venue

HOUR_MS = 3_600_000
BASE_MS = 1_800_000_000_000


def venue(**changes: object) -> Venue:
    values: dict[str, object] = dict(
        venue_id=secrets.token_hex(5), name="静安寺 Jing'an Temple",
        address="上海市静安区南京西路1686号",
        kind="venue", enterprise_id=None, info={"opening_hours": "07:30-17:00", "电话": "021"},
        code="SC1:XYZ", created_at=1_800_000_000)
    values.update(changes)
    return Venue(**values)  # type: ignore[arg-type]


async def test_venue_round_trip_and_unique_id(db: Database) -> None:
    v = venue(enterprise_id="ent-1")
    assert await db.venues.insert_venue(v) is True
    assert await db.venues.get_venue(v.venue_id) == v
    assert await db.venues.insert_venue(venue(venue_id=v.venue_id, name="other")) is False
    assert (await db.venues.get_venue(v.venue_id)) == v  # nothing overwritten
    assert await db.venues.get_venue(secrets.token_hex(5)) is None


async def test_revocation_is_final_and_listed(db: Database) -> None:
    v = venue()
    await db.venues.insert_venue(v)
    assert v.venue_id not in await db.venues.revoked_venues()
    revoked = await db.venues.revoke_venue(v.venue_id, now=1_800_000_100)
    assert revoked is not None and revoked.revoked_at == 1_800_000_100 and revoked.revoked
    again = await db.venues.revoke_venue(v.venue_id, now=1_800_000_999)
    assert again is not None and again.revoked_at == 1_800_000_100  # the first one stays
    assert v.venue_id in await db.venues.revoked_venues()
    assert await db.venues.revoke_venue(secrets.token_hex(5), now=1) is None


async def test_checkins_newest_first_paged_and_counted_per_hour(db: Database) -> None:
    handle, other = os.urandom(10), os.urandom(10)
    place, elsewhere = secrets.token_hex(5), secrets.token_hex(5)
    at = BASE_MS + secrets.randbelow(10**6) * 24 * HOUR_MS
    mine = [CheckinRecord(at + i * HOUR_MS // 2, handle, place) for i in range(5)]
    await db.venues.append_checkins(mine)
    await db.venues.append_checkins([CheckinRecord(at + 1, other, place),
                                     CheckinRecord(at + 2, other, elsewhere)])
    await db.venues.append_checkins([])
    page = await db.venues.checkins_for_subject(handle, limit=3)
    assert [e.record for e in page] == [mine[4], mine[3], mine[2]]
    rest = await db.venues.checkins_for_subject(handle, limit=10, before_id=page[-1].id)
    assert [e.record for e in rest] == [mine[1], mine[0]]
    counts = await db.venues.visits_per_hour(place, at, at + 2 * HOUR_MS)  # end exclusive
    assert counts == {at: 3, at + HOUR_MS: 2}
    assert await db.venues.visits_per_hour(elsewhere, at, at + HOUR_MS) == {at: 1}


async def test_text_columns_keep_unicode(db: Database) -> None:
    v = venue(info={"说明": "中文 ok"})
    await db.venues.insert_venue(v)
    stored = await db.venues.get_venue(v.venue_id)
    assert stored is not None and stored.info == {"说明": "中文 ok"}
