"""Sending the queued alert messages over SMTP, in a worker thread with its own store
connection (never on the hub's main loop, never holding up ingest).

A message is marked sent only after the server accepted it (``sendmail`` returned without
refusing its recipient). Anything else (no connection, a timeout, a 4xx or 5xx answer,
a refused login) leaves it pending, tried again after ``retry_first_seconds``, doubling up
to ``retry_max_seconds``. The queue is in the store, so a restart picks up where the last
process stopped; a message claimed by a process that dies is due again after its lease.
A kill between the server's acceptance and the store's "sent" can send a message twice
(SMTP has no exactly-once); each carries a Message-ID derived from its queue row, so a
mail client can tell the copies apart.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import threading
import time
from email.message import EmailMessage
from email.utils import formatdate

from ..config import AlertsSection, HubConfig, read_secret
from ..store import AlertMail, Store

log = logging.getLogger(__name__)

#: Longest wait between looks at the queue (another hub process may have queued rows).
POLL_SECONDS = 5.0


#: Answers that refuse one message, not the connection.
_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def backoff(a: AlertsSection, attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th try failed (1, 2, ...)."""
    return float(min(a.retry_max_seconds, a.retry_first_seconds * 2 ** min(max(attempts - 1, 0), 30)))


def message(a: AlertsSection, mail: AlertMail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = a.from_
    msg["To"] = mail.recipient
    msg["Subject"] = mail.mail_subject
    msg["Date"] = formatdate(mail.created_at, usegmt=True)
    msg["Message-ID"] = f"<torwart-alert-{mail.alert_id}-{mail.id}@{a.from_.rpartition('@')[2]}>"
    msg.set_content(mail.body)
    return msg


class Mailer:
    """The worker thread: ``start()``, ``wake()`` when a message was queued, ``stop()``."""

    def __init__(self, cfg: HubConfig) -> None:
        if cfg.alerts is None:
            raise ValueError("alerts are not configured")
        self.cfg = cfg
        self.alerts: AlertsSection = cfg.alerts
        self.sent = 0
        self.retried = 0
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.lease = 2 * self.alerts.timeout_seconds + 10.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alert-mailer", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        from ..store import open_store

        store = open_store(self.cfg.hub.store_url)
        try:
            while not self._stopping.is_set():
                try:
                    wait = self.round(store)
                except Exception:  # a store error, a bug: the messages stay queued
                    log.exception("alert mail: delivery round failed; trying again in %.0f s", POLL_SECONDS)
                    wait = POLL_SECONDS
                self._wake.wait(wait)
        finally:
            store.close()

    def round(self, store: Store) -> float:
        """Send what is due (one SMTP connection for the lot); how long to wait next."""
        self._wake.clear()
        mails = store.claim_alert_mails(time.time(), lease=self.lease)
        if mails:
            self._send(store, mails)
            return 0.0
        due = store.next_alert_mail_due()
        return POLL_SECONDS if due is None else min(POLL_SECONDS, max(0.0, due - time.time()))

    def _connect(self) -> smtplib.SMTP:
        a = self.alerts
        smtp = smtplib.SMTP(a.smtp_host, a.port, timeout=a.timeout_seconds)
        try:
            if a.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if a.smtp_username is not None and a.smtp_password_file is not None:
                smtp.login(a.smtp_username, read_secret(a.smtp_password_file))
        except BaseException:
            smtp.close()
            raise
        return smtp

    def _failed(self, store: Store, mail: AlertMail, exc: BaseException) -> None:
        wait = backoff(self.alerts, mail.attempts + 1)
        store.alert_mail_retry(mail.id, f"{type(exc).__name__}: {exc}", next_try=time.time() + wait)
        self.retried += 1
        log.warning("alert mail %d to %s not sent (try %d), again in %.1f s: %s", mail.id, mail.recipient,
                    mail.attempts + 1, wait, exc)

    def _send(self, store: Store, mails: list[AlertMail]) -> None:
        try:
            smtp = self._connect()
        except Exception as exc:  # OSError, smtplib.SMTPException, a bad secret file
            for mail in mails:
                self._failed(store, mail, exc)
            return
        try:
            for mail in mails:
                if self._stopping.is_set():
                    return  # claimed, not tried: due again when the lease ends
                try:
                    smtp.send_message(message(self.alerts, mail))
                except _REFUSED as exc:  # this message refused; the connection goes on
                    self._failed(store, mail, exc)
                    continue
                except OSError as exc:  # the connection is gone (smtplib's errors are OSErrors)
                    for rest in mails[mails.index(mail):]:
                        self._failed(store, rest, exc)
                    return
                store.alert_mail_sent(mail.id, now=time.time())
                self.sent += 1
                log.info("alert mail %d sent to %s", mail.id, mail.recipient)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
