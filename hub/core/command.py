"""Signed commands to a site (PROTOCOL.md §3 ``command``): unlock, lockdown, lockdown_end,
checkout_all and enroll, built by ``hub.commands`` and signed here, in one way, with the
hub's key.

The running hub sends them over its persistent link (``send_command``: the dashboard and
its API); the command line sends them over a short conversation and waits for the site's
``command/ack`` (``command_and_wait``). An unlock is refused before anything is sent at a
site the hub knows to be in lockdown (its last retained Status says so), whoever asks:
ending the lockdown is a separate act. The site refuses it as well.
"""

from __future__ import annotations

import time

from wire import messages as m
from wire.topics import Kind

from .. import commands
from ..conversation import Conversation
from ..link import HubLink
from .audit import Auditing
from .errors import BadCommand, InLockdown, NotSent
from .push import ACKS, Result, no_ack


def _detail(seconds: int | None, room: str | None, reader: str | None) -> str | None:
    """A command's parameters for its audit row."""
    parts = [f"{k}={v}" for k, v in (("seconds", seconds), ("room", room), ("reader", reader)) if v is not None]
    return " ".join(parts) or None


class Commanding(Auditing):
    """The command acts (see the module's docstring)."""

    def in_lockdown(self, site: str) -> bool:
        """Whether ``site``'s last Status reported a lockdown."""
        st = self._store.site_state(site)
        return st is not None and st.lockdown

    def _command(self, site: str, action: str, *, door: str | None = None, seconds: int | None = None,
                 room: str | None = None, reader: str | None = None) -> m.Command:
        """A new command for a configured site; InLockdown for an unlock at a site in
        lockdown, BadCommand when the message type refuses the parameters."""
        self.site(site)
        self._refuse_revoked(site)
        if action == "unlock" and self.in_lockdown(site):
            raise InLockdown(site)
        try:
            return commands.build(site, action, door=door, seconds=seconds, room=room, reader=reader)
        except (ValueError, TypeError) as exc:
            raise BadCommand(str(exc)) from None

    def _send(self, link: HubLink, site: str, cmd: m.Command) -> bool:
        """Sign ``cmd`` with the hub's key and publish it on ``site``'s command topic;
        False when the link is down or the command has expired."""
        return link.publish_command(site, cmd, self.caches.signed(cmd))

    def send_command(self, site: str, action: str, *, door: str | None = None, seconds: int | None = None,
                     room: str | None = None, reader: str | None = None) -> m.Command:
        """Build, sign and publish a command over the running hub's link; the command sent.
        UnknownSite, InLockdown, BadCommand, or NotSent (the broker connection is down).
        Recorded in the audit trail (``hub.core.audit``)."""
        with self.audited(action, site=site, door=door, detail=_detail(seconds, room, reader)) as note:
            cmd = self._command(site, action, door=door, seconds=seconds, room=room, reader=reader)
            if not self._send(self._running_link(), site, cmd):
                raise NotSent("not connected to the broker")
            note.add(f"command={cmd.id}")
            return cmd

    def command_and_wait(self, site: str, action: str, *, door: str | None = None, seconds: int | None = None,
                         room: str | None = None, timeout: float = 30.0) -> Result:
        """Send a command over a conversation of its own and wait for the site's ack (the
        command line). Refusals before sending as ``send_command``; HubError when the
        broker cannot be reached or the command did not go out. Recorded in the audit trail,
        with the site's answer."""
        with self.audited(action, site=site, door=door, detail=_detail(seconds, room, None)) as note:
            res = self._command_and_wait(site, action, door=door, seconds=seconds, room=room, timeout=timeout)
            if not res.ok:
                note.failed(res.error)
            return res

    def _command_and_wait(self, site: str, action: str, *, door: str | None, seconds: int | None,
                          room: str | None, timeout: float) -> Result:
        cmd = self._command(site, action, door=door, seconds=seconds, room=room)
        with Conversation(self.cfg, "cli") as talk:
            talk.connect(min(timeout, 15))
            talk.listen(site, ACKS)
            t0 = time.monotonic()
            if not self._send(talk.link, site, cmd):
                raise NotSent("publishing failed: the broker connection dropped")
            ack = talk.wait(Kind.COMMAND_ACK, m.CommandAck, lambda a: a.id == cmd.id, t0 + timeout)
            if ack is not None:
                return Result(ack.ok, None, ack.error, time.monotonic() - t0)
            return Result(False, None, no_ack(timeout), timeout)
