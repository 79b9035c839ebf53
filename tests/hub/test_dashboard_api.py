"""The dashboard's pages, JSON API and live stream over real HTTP against a running hub,
fed by an MQTT client playing the sites: what caretakers and admins see, events with
filters, the no-show chart's numbers, live updates, languages and the API document."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid

import requests

from hub.dashboard.app import routes
from testkit.dashboard import SseReader
from testkit.util import wait_for
from wire import messages as m
from wire.topics import Kind, topic

from ._dashboard import Env, env_fixture  # noqa: F401 (the env fixture)


def event(env: Env, site: str, seq: int, ev_type: type[m.Event] = m.DoorOpened, ts: float | None = None,
          **fields: object) -> None:
    base = {"door": "eingang"} if ev_type is m.DoorOpened else {}
    ev = ev_type(id=uuid.uuid4().hex, site=site, seq=seq, boot="b", ts=time.time() if ts is None else ts,  # type: ignore[call-arg]
                 clock_synced=True, **{**base, **fields})
    env.site.publish(topic(site, Kind.EVENT), m.encode(ev))


def stored(env: Env, site: str, seq: int) -> bool:
    st = env.hub.service.call(lambda: env.hub.service.store.site_state(site))
    return st is not None and st.max_seq >= seq


def test_a_caretaker_sees_only_their_sites_in_pages_api_and_live_stream(env: Env) -> None:
    s = env.login("anna")
    url = env.url
    page = s.get(url + "/", timeout=10).text
    assert "Site minheim" in page and "Site wittlich" not in page
    assert s.get(url + "/sites/wittlich", timeout=10).status_code == 404
    assert [x["id"] for x in s.get(url + "/api/v1/sites", timeout=10).json()] == ["minheim"]
    for path in ("/api/v1/sites/wittlich", "/api/v1/sites/wittlich/rooms", "/api/v1/sites/wittlich/doors",
                 "/api/v1/sites/wittlich/noshows", "/api/v1/events?site=wittlich"):
        assert s.get(url + path, timeout=10).status_code == 404, path
    assert s.post(url + "/api/v1/sites/wittlich/commands", json={"action": "unlock", "door": "eingang"},
                  timeout=10).status_code == 404
    sse = SseReader(s, url + "/api/v1/live?site=wittlich")
    assert sse.status == 404
    sse.close()
    # Events: only minheim's, however asked.
    event(env, "wittlich", 1)
    event(env, "minheim", 1)
    wait_for(lambda: stored(env, "wittlich", 1) and stored(env, "minheim", 1), 10, what="both events stored")
    assert {e["site"] for e in s.get(url + "/api/v1/events", timeout=10).json()} == {"minheim"}
    # The live stream of every visible site carries minheim only.
    sse = SseReader(s, url + "/api/v1/live")
    try:
        first = sse.wait(lambda e: e.event == "site", 10).json()
        assert first["id"] == "minheim"
        env.occupancy("wittlich", 3)
        env.occupancy("minheim", 2)
        ev = sse.wait(lambda e: e.event == "site" and e.json()["rooms"][0]["present"] == 2, 10)
        assert all(x.json()["id"] == "minheim" for x in sse.seen if x.event == "site")
        assert ev.json()["id"] == "minheim"
    finally:
        sse.close()
    # Caretakers may unlock and check out, but not push or lock down.
    csrf = {"X-CSRF-Token": str(s.headers["X-CSRF-Token"])}
    assert s.post(url + "/api/v1/sites/minheim/push", headers=csrf, timeout=10).status_code == 403
    assert s.post(url + "/api/v1/sites/minheim/commands", json={"action": "lockdown"}, timeout=10).status_code == 403
    assert s.post(url + "/api/v1/sites/minheim/commands", json={"action": "checkout_all", "room": "coworking"},
                  timeout=10).status_code == 202
    assert s.get(url + "/api/v1/me", timeout=10).json()["actions"] == ["checkout_all", "unlock"]


def test_admins_see_names_and_caretakers_counts_unless_the_site_shows_names(env: Env) -> None:
    env.occupancy("minheim", 1, [env.who])
    env.occupancy("wittlich", 1, [env.who])
    admin, anna, ben = env.login("boss"), env.login("anna"), env.login("ben")

    def room(s: requests.Session, site: str) -> dict[str, object]:
        rooms: list[dict[str, object]] = s.get(f"{env.url}/api/v1/sites/{site}/rooms", timeout=10).json()
        return rooms[0]

    wait_for(lambda: room(admin, "minheim")["present"] == 1 and room(admin, "wittlich")["present"] == 1, 10,
             what="occupancy stored")
    assert room(admin, "minheim")["who"] == ["Anna Beispiel"]
    caretaker_view = room(anna, "minheim")
    assert caretaker_view["present"] == 1 and "who" not in caretaker_view
    assert "Anna Beispiel" not in anna.get(env.url + "/sites/minheim", timeout=10).text
    assert env.who not in anna.get(env.url + "/api/v1/sites/minheim", timeout=10).text
    assert room(ben, "wittlich")["who"] == ["Anna Beispiel"]  # wittlich has show_names = true
    assert "Anna Beispiel" in ben.get(env.url + "/sites/wittlich", timeout=10).text
    # Events carry who/ref only where names may be seen.
    event(env, "minheim", 2, m.OccupancyCheckin, room="coworking", who=env.who, ref="bk-x", reason="badge")
    wait_for(lambda: stored(env, "minheim", 2), 10, what="check-in stored")
    mine = anna.get(env.url + "/api/v1/events?type=occupancy.checkin", timeout=10).json()
    assert mine and all("who" not in e and "ref" not in e and "name" not in e for e in mine)
    full = admin.get(env.url + "/api/v1/events?site=minheim&type=occupancy.checkin", timeout=10).json()
    assert full[0]["name"] == "Anna Beispiel" and full[0]["ref"] == "bk-x"


def test_events_can_be_filtered_by_site_type_time_and_limit(env: Env) -> None:
    base = int(time.time()) - 100
    for seq in (10, 11, 12):  # a gap from the earlier tests' seqs does not matter here
        event(env, "wittlich", seq, m.DoorClosed, ts=base + seq, door="eingang")
    wait_for(lambda: stored(env, "wittlich", 12), 10, what="events stored")
    s = env.login("boss")

    def get(query: str, **params: object) -> requests.Response:
        return s.get(env.url + "/api/v1/events?" + query, params=params, timeout=10)

    closed = get("site=wittlich&type=door.closed").json()
    assert len(closed) == 3 and [e["seq"] for e in closed] == [12, 11, 10]
    assert len(get("site=wittlich&type=door.closed&limit=2").json()) == 2
    since = dt.datetime.fromtimestamp(base + 11).astimezone().isoformat()  # inclusive
    assert [e["seq"] for e in get("site=wittlich&type=door.closed", since=since).json()] == [12, 11]
    assert [e["seq"] for e in get(f"site=wittlich&type=door.closed&until={base + 11}").json()] == [10]  # exclusive
    assert get("since=yesterday").status_code == 400
    assert get("limit=0").status_code == 400


def test_the_no_show_chart_counts_bookings_and_check_ins_per_day(env: Env) -> None:
    now = dt.datetime.now(dt.UTC)
    res = env.county.resource("minheim")
    start = max(now - dt.timedelta(minutes=30), dt.datetime.now().astimezone().replace(hour=0, minute=1))
    env.platform.add("bk-came", res, "m-1", start, now + dt.timedelta(hours=2))
    env.platform.add("bk-noshow", res, "m-1", start, now + dt.timedelta(hours=2))
    env.platform.add("bk-later", res, "m-1", now + dt.timedelta(minutes=30), now + dt.timedelta(hours=2))
    env.platform.add("bk-gone", res, "m-1", start, now + dt.timedelta(hours=2), status="cancelled")
    svc = env.hub.service
    assert svc.call(svc.sync_now).ok
    event(env, "minheim", 20, m.OccupancyCheckin, room="coworking", who=env.who, ref="bk-came", reason="badge")
    wait_for(lambda: stored(env, "minheim", 20), 10, what="check-in stored")
    s = env.login("anna")
    chart = s.get(env.url + "/api/v1/sites/minheim/noshows", timeout=10).json()
    days = chart[0]["days"]
    assert chart[0]["room"] == "coworking" and len(days) == 7
    assert days[-1] == {"day": dt.date.today().isoformat(), "booked": 2, "present": 1}
    assert all(d["booked"] == 0 for d in days[:-1])
    page = s.get(env.url + "/sites/minheim", timeout=10).text
    assert "<svg" in page and "2 gebucht, 1 erschienen" in page


def test_a_site_change_reaches_the_live_stream_within_a_second(env: Env) -> None:
    s = env.login("anna")
    sse = SseReader(s, env.url + "/api/v1/live?site=minheim&view=detail")
    try:
        sse.wait(lambda e: e.event == "site", 10)
        t0 = time.monotonic()
        env.occupancy("minheim", 5)
        ev = sse.wait(lambda e: e.event == "site" and '<strong class="present">5</strong>' in e.json()["html"], 5)
        took = ev.at - t0
        print(f"occupancy published → live HTML fragment: {took * 1000:.0f} ms")
        assert took < 1.0
        env.site.publish(topic("minheim", Kind.DOOR, "eingang"), m.encode(m.DoorState(
            door="eingang", locked=True, open=True, alarm="forced_open", mode="normal", ts=time.time())), retain=True)
        ev = sse.wait(lambda e: e.event == "site" and "Tür aufgebrochen" in e.json()["html"], 5)
        assert 'class="banner alarm"' in ev.json()["html"]
    finally:
        sse.close()
    cards = SseReader(s, env.url + "/api/v1/live?view=card&lang=en")
    try:
        html = cards.wait(lambda e: e.event == "site", 5).json()["html"]
        assert html.startswith('<section class="card site-card') and "Door forced open" in html
    finally:
        cards.close()


def test_pages_are_german_first_and_english_on_request(env: Env) -> None:
    s = env.login("anna")
    assert "Räume" in s.get(env.url + "/sites/minheim", timeout=10).text
    r = s.get(env.url + "/sites/minheim?lang=en", timeout=10)
    assert "Rooms" in r.text and "Räume" not in r.text and 'lang="en"' in r.text
    assert "Rooms" in s.get(env.url + "/sites/minheim", timeout=10).text  # the cookie keeps it
    assert "Räume" in s.get(env.url + "/sites/minheim?lang=de", timeout=10).text


def test_every_template_string_has_both_languages() -> None:
    import re
    from pathlib import Path

    from hub.dashboard import i18n

    root = Path(i18n.__file__).parent / "templates"
    keys = {k for f in root.glob("*.html") for k in re.findall(r"""\bt\(["']([a-z_.]+)["']""", f.read_text())}
    fixed = {k for k in keys if not k.endswith(("_", "."))}  # "ev." ~ type etc. are checked below
    assert fixed and fixed <= set(i18n.STRINGS), fixed - set(i18n.STRINGS)
    assert all(de and en for de, en in i18n.STRINGS.values())
    import typing

    tags = {cls.__struct_config__.tag for cls in typing.get_args(m.AnyEvent)}
    assert {f"ev.{t}" for t in tags} <= set(i18n.STRINGS), {f"ev.{t}" for t in tags} - set(i18n.STRINGS)
    for prefix, values in (("alarm_", ("held_open", "forced_open")), ("role_", ("admin", "caretaker")),
                           ("mode_", ("normal", "office_hours", "lockdown"))):
        assert all(prefix + v in i18n.STRINGS for v in values)


def test_the_openapi_document_lists_exactly_the_api_routes(env: Env) -> None:
    s = env.login("anna")
    doc = s.get(env.url + "/api/v1/openapi.json", timeout=10).json()
    assert doc["openapi"].startswith("3.")
    _, served = routes(env.hub.service.hub, None)
    api = {getattr(r, "path", "") for r in served if getattr(r, "path", "").startswith("/api/v1")}
    assert set(doc["paths"]) == api
    assert json.dumps(doc)  # plain JSON


def test_a_command_or_enrollment_body_that_is_not_a_json_object_is_refused(env: Env) -> None:
    s = env.login("boss")
    for path in ("/api/v1/sites/minheim/commands", "/api/v1/sites/minheim/enroll"):
        for body in (b"not json", b'["unlock"]', b""):
            r = s.post(env.url + path, data=body, headers={"Content-Type": "application/json"}, timeout=10)
            assert r.status_code == 400 and "JSON object" in r.json()["error"], (path, body, r.text)
