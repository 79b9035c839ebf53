"""The store contract for Web Push subscriptions (run against every implementation,
tests/hub/store_contract.py): one row per browser endpoint, owned by a user, replaced when
the browser subscribes again, removed only by its owner, gone with the user."""

from __future__ import annotations

import pytest

from hub.store import Store, StoreError
from tests.hub._bookings import NOW
from tests.hub.store_contract import store_fixture, store_url_fixture  # noqa: F401

EP1, EP2 = "https://push.example/send/aaa", "https://push.example/send/bbb"


def _users(store: Store) -> None:
    store.add_user("anna", "caretaker", ["minheim"], "scrypt$x")
    store.add_user("boss", "admin", None, "scrypt$y")


def test_a_browser_is_kept_once_and_replaced_when_it_subscribes_again(store: Store) -> None:
    _users(store)
    first = store.add_push_subscription("anna", EP1, "key-1", "auth-1", now=NOW)
    store.add_push_subscription("anna", EP2, "key-2", "auth-2", now=NOW + 1)
    again = store.add_push_subscription("boss", EP1, "key-3", "auth-3", now=NOW + 2)  # boss logs in there
    assert again.id == first.id and (again.user_name, again.p256dh, again.auth) == ("boss", "key-3", "auth-3")
    assert [(s.user_name, s.endpoint) for s in store.push_subscriptions()] == [("boss", EP1), ("anna", EP2)]
    assert [s.endpoint for s in store.push_subscriptions("anna")] == [EP2]


def test_only_its_owner_removes_a_subscription_and_answers_are_recorded(store: Store) -> None:
    _users(store)
    store.add_push_subscription("anna", EP1, "k", "a", now=NOW)
    assert not store.remove_push_subscription(EP1, "boss")
    store.push_delivered(EP1, now=NOW + 5, error="push service answered 503")
    [sub] = store.push_subscriptions("anna")
    assert (sub.last_ok, sub.last_error) == (None, "push service answered 503")
    store.push_delivered(EP1, now=NOW + 6)
    [sub] = store.push_subscriptions("anna")
    assert (sub.last_ok, sub.last_error) == (NOW + 6, None)
    assert store.remove_push_subscription(EP1, "anna")
    assert not store.remove_push_subscription(EP1)
    assert store.push_subscriptions() == []


def test_a_users_subscriptions_go_with_the_user_and_need_one(store: Store) -> None:
    _users(store)
    store.add_push_subscription("anna", EP1, "k", "a", now=NOW)
    store.add_push_subscription("boss", EP2, "k", "a", now=NOW)
    assert store.remove_user("anna")
    assert [s.endpoint for s in store.push_subscriptions()] == [EP2]
    with pytest.raises(StoreError, match="no dashboard user"):
        store.add_push_subscription("nobody", EP1, "k", "a", now=NOW)
    assert [s.endpoint for s in store.push_subscriptions()] == [EP2]
