from concurrent.futures import ThreadPoolExecutor

import pytest

from model_runner.tweets import alerts


def test_an_incident_is_claimed_once_until_confirmed(db):
    first = alerts.claim(db, "regression:sentiment:v3", "regression", "macro recall fell")
    second = alerts.claim(db, "regression:sentiment:v3", "regression")
    assert first.granted and first.token and first.state == "pending"
    assert not second.granted and second.token is None and second.occurrences == 2

    assert alerts.confirm(db, first.key, first.token)
    after = alerts.claim(db, first.key, "regression")
    assert not after.granted and after.state == "sent" and after.sent_at is not None


def test_a_released_claim_can_be_taken_again_and_the_old_token_is_void(db):
    first = alerts.claim(db, "train-failed:job-1", "training")
    assert alerts.release(db, first.key, first.token)
    retry = alerts.claim(db, first.key, "training")
    assert retry.granted and retry.token != first.token
    assert not alerts.confirm(db, first.key, first.token)
    assert alerts.confirm(db, retry.key, retry.token)


def test_a_stale_pending_claim_is_reclaimable_after_its_lease(db):
    alerts.claim(db, "k1", "x")
    assert not alerts.claim(db, "k1", "x", lease_s=3600).granted
    assert alerts.claim(db, "k1", "x", lease_s=0).granted


def test_resolved_incidents_alert_again(db):
    c = alerts.claim(db, "drift:sentiment:3", "drift")
    alerts.confirm(db, c.key, c.token)
    assert alerts.resolve(db, ["drift:sentiment:3", "never-seen"]) == 1
    assert alerts.claim(db, "drift:sentiment:3", "drift").granted
    assert [r["state"] for r in alerts.recent(db, kind="drift")] == ["pending"]


def test_concurrent_claims_grant_exactly_one(db):
    with ThreadPoolExecutor(6) as pool:
        claims = list(pool.map(lambda _: alerts.claim(db, "race", "x"), range(6)))
    assert sum(c.granted for c in claims) == 1


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "semi;colon"])
def test_bad_keys_are_refused(db, key):
    with pytest.raises(alerts.InvalidAlertKey):
        alerts.claim(db, key, "x")


def test_confirm_with_a_malformed_token_is_refused(db):
    alerts.claim(db, "k", "x")
    assert not alerts.confirm(db, "k", "not-a-uuid")
