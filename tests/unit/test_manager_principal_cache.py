"""The manager's short-lived cache of verified tokens."""

from __future__ import annotations

from datetime import timedelta

from damselfly.manager.auth import Principal, PrincipalCache
from damselfly.manager.db.models import utcnow

WHO = Principal(user_id=1, name="daemon", role="member", token_id=7)


def test_a_cached_token_is_answered_until_its_ttl() -> None:
    cache = PrincipalCache(ttl=60)
    assert cache.get("d1") is None
    cache.put("d1", WHO, None)
    assert cache.get("d1") == WHO
    cache.clear()
    assert cache.get("d1") is None


def test_a_stale_entry_is_looked_up_again() -> None:
    cache = PrincipalCache(ttl=0)
    cache.put("d1", WHO, None)
    assert cache.get("d1") is None


def test_an_expired_token_is_refused_even_within_the_ttl() -> None:
    cache = PrincipalCache(ttl=60)
    cache.put("d1", WHO, utcnow() - timedelta(seconds=1))
    assert cache.get("d1") is None
    cache.put("d2", WHO, utcnow() + timedelta(hours=1))
    assert cache.get("d2") == WHO
