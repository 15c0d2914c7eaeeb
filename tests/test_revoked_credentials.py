"""The service's in-memory set of revoked offline credentials (app/services/devices.py)."""

from __future__ import annotations

from suishen.app.services.devices import RevokedCredentials


def test_loaded_and_added_pairs_are_revoked_others_not() -> None:
    revoked = RevokedCredentials()
    assert revoked.credential_revoked(3600, 1) is False
    revoked.replace([(3600, 5), (3600, 1), (7200, 1), (3600, 5)])
    assert len(revoked) == 3
    assert revoked.credential_revoked(3600, 1) and revoked.credential_revoked(3600, 5)
    assert revoked.credential_revoked(7200, 1)
    for slot, index in ((3600, 0), (3600, 2), (3600, 6), (7200, 5), (10800, 1)):
        assert revoked.credential_revoked(slot, index) is False
    revoked.add([(10800, 9)])
    assert revoked.credential_revoked(10800, 9)


def test_a_reload_keeps_recent_additions_it_did_not_see_and_prune_forgets_old_slots() -> None:
    revoked = RevokedCredentials()
    revoked.add([(3600, 4), (7200, 8)])
    revoked.replace([(3600, 4)])  # the load saw one of them
    assert revoked.credential_revoked(3600, 4) and revoked.credential_revoked(7200, 8)
    assert len(revoked) == 2
    revoked.prune(7200)
    assert not revoked.credential_revoked(3600, 4)
    assert revoked.credential_revoked(7200, 8)
