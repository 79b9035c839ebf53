"""The member pages of the dashboard (issue #13: GDPR access and erasure as dashboard
actions for admins), over real HTTP against the running hub: an admin lists and searches
the members, downloads a member's export (an attachment of valid JSON with their cards'
fingerprints and bookings) and erases them through the form's confirm step; both acts are
in the audit trail once, as the admin's. Caretakers get 403 on every page and POST, a POST
without the CSRF token is refused, an unknown member is 404, and nothing changes then."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests

from hub.__main__ import main as hub_main
from hub.store import AuditRow
from testkit.credscan import CredentialScanner

from ._bookings import Bk
from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)

CARD = "em4100:0C1D2E3F4B"
NAME, EMAIL = "Gerda Auskunft", "gerda@example.org"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def _csrf(page: str) -> str:
    m = _CSRF.search(page)
    assert m is not None, "no CSRF field on the page"
    return m.group(1)


def _acts(env: Env, act: str, member: str) -> list[AuditRow]:
    store = env.hub.service.store
    rows = env.hub.service.call(lambda: store.audit_log(limit=10000))
    return [r for r in rows if r.act == act and r.member_id == member]


def _member(env: Env, member: str) -> object:
    store = env.hub.service.store
    return env.hub.service.call(lambda: store.get_member(member))


@pytest.fixture(scope="module", name="gerda")
def gerda_fixture(env: Env) -> str:
    """Member m-7 with a card, a grant at minheim and a booking there."""
    cfg = str(env.county.hub_config_path)
    assert hub_main(["cards", "add", "m-7", CARD, "--name", NAME, "--email", EMAIL, "--config", cfg]) == 0
    assert hub_main(["grants", "add", "m-7", "minheim", "--config", cfg]) == 0
    store, now = env.hub.service.store, int(time.time())
    env.hub.service.call(lambda: store.upsert_bookings(
        [Bk("b-gerda", env.county.resource("minheim"), "m-7", now + 3600, now + 7200, updated_at=now)]))
    return "m-7"


def test_an_admin_lists_searches_exports_and_erases_a_member(env: Env, gerda: str) -> None:
    boss = env.login("boss")
    home = boss.get(env.url + "/", timeout=10)
    assert 'href="/members"' in home.text
    page = boss.get(env.url + "/members", timeout=10)
    assert page.status_code == 200
    assert NAME in page.text and EMAIL in page.text and "Anna Beispiel" in page.text
    row = page.text[page.text.index("<td>m-7</td>"):]
    assert re.match(r"<td>m-7</td>\s*<td>" + NAME + r"</td>\s*<td>" + EMAIL + r"</td>\s*<td>1</td>", row), row[:300]
    # Search by name and by id, case-insensitive.
    found = boss.get(env.url + "/members", params={"q": "gerda"}, timeout=10).text
    assert NAME in found and "Anna Beispiel" not in found
    found = boss.get(env.url + "/members", params={"q": "M-1"}, timeout=10).text
    assert "Anna Beispiel" in found and NAME not in found
    assert "Keine Mitglieder" in boss.get(env.url + "/members", params={"q": "niemand"}, timeout=10).text
    assert boss.get(env.url + "/members", params={"q": "x" * 201}, timeout=10).status_code == 400

    # The access request: an attachment of valid JSON, recorded once as the admin's.
    r = boss.get(env.url + f"/members/{gerda}/export.json", timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    assert r.headers["content-disposition"] == 'attachment; filename="torwart-member-m-7.json"'
    doc = json.loads(r.content.decode("utf-8"))
    assert (doc["member"]["id"], doc["member"]["name"], doc["member"]["email"]) == (gerda, NAME, EMAIL)
    fingerprint = env.hub.service.hub.fingerprint(CARD)
    assert [(c["type"], c["fingerprint"]) for c in doc["credentials"]] == [("em4100", fingerprint)]
    assert [b["id"] for b in doc["bookings"]] == ["b-gerda"]
    assert CredentialScanner([CARD]).scan("export", r.content, "export") == 0
    assert [(a.who, a.via, a.outcome) for a in _acts(env, "members.export", gerda)] == [("boss", "dashboard", "ok")]

    # Erasure: the first POST asks, nothing erased yet; the confirmed one erases.
    ask = boss.post(env.url + f"/members/{gerda}/erase", data={"csrf": _csrf(page.text)}, timeout=10)
    assert ask.status_code == 200 and "endgültig löschen" in ask.text and NAME in ask.text
    assert 'name="confirmed" value="1"' in ask.text
    assert _member(env, gerda) is not None and not _acts(env, "members.erase", gerda)
    done = boss.post(env.url + f"/members/{gerda}/erase", data={"csrf": _csrf(ask.text), "confirmed": "1"},
                     allow_redirects=False, timeout=10)
    assert done.status_code == 303 and done.headers["location"] == f"/members?erased={gerda}"
    assert _member(env, gerda) is None and _member(env, "m-1") is not None
    after = boss.get(env.url + done.headers["location"], timeout=10).text
    assert f"„{gerda}“ wurde gelöscht" in after and NAME not in after and "<td>m-7</td>" not in after
    erased = _acts(env, "members.erase", gerda)
    assert [(a.who, a.via, a.outcome) for a in erased] == [("boss", "dashboard", "ok")]
    assert erased[0].detail == "sites=minheim"
    audit = boss.get(env.url + "/audit", timeout=10).text
    assert "members.erase" in audit and "members.export" in audit
    # Gone: its download and its erasure are 404 now.
    assert boss.get(env.url + f"/members/{gerda}/export.json", timeout=10).status_code == 404
    assert boss.post(env.url + f"/members/{gerda}/erase", data={"csrf": _csrf(after), "confirmed": "1"},
                     timeout=10).status_code == 404


def test_caretakers_get_403_on_every_member_page_and_nothing_changes(env: Env) -> None:
    anna, boss = env.login("anna"), env.login("boss")
    assert 'href="/members"' not in anna.get(env.url + "/", timeout=10).text
    token = _csrf(anna.get(env.url + "/", timeout=10).text)
    for r in (anna.get(env.url + "/members", timeout=10),
              anna.get(env.url + "/members/m-1/export.json", timeout=10),
              anna.post(env.url + "/members/m-1/erase", data={"csrf": token}, timeout=10),
              anna.post(env.url + "/members/m-1/erase", data={"csrf": token, "confirmed": "1"}, timeout=10)):
        assert r.status_code == 403, r.url
        assert "Anna Beispiel" not in r.text
    assert _member(env, "m-1") is not None
    assert not [a for a in _acts(env, "members.export", "m-1") if a.outcome == "ok"]
    refused = _acts(env, "members.erase", "m-1")
    assert refused and {(a.who, a.outcome) for a in refused} == {("anna", "refused")}
    # No login at all: the login page, nothing shown.
    r = requests.get(env.url + "/members", allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    # The admin's form without the CSRF token (or with another session's) is refused before it acts.
    del boss.headers["X-CSRF-Token"]  # login() set it for the API
    for data in ({"confirmed": "1"}, {"csrf": token, "confirmed": "1"}):
        r = boss.post(env.url + "/members/m-1/erase", data=data, allow_redirects=False, timeout=10)
        assert r.status_code == 403
    assert _member(env, "m-1") is not None
    assert not [a for a in _acts(env, "members.erase", "m-1") if a.who == "boss"]


def test_an_unknown_member_is_404_on_the_download_and_both_erase_steps(env: Env) -> None:
    boss = env.login("boss")
    token = _csrf(boss.get(env.url + "/members", timeout=10).text)
    assert boss.get(env.url + "/members/nobody/export.json", timeout=10).status_code == 404
    for data in ({"csrf": token}, {"csrf": token, "confirmed": "1"}):
        r = boss.post(env.url + "/members/nobody/erase", data=data, timeout=10)
        assert r.status_code == 404 and "no member &#39;nobody&#39;" in r.text
    assert {a.outcome for a in _acts(env, "members.erase", "nobody")} == {"refused"}
    assert {a.outcome for a in _acts(env, "members.export", "nobody")} == {"refused"}
