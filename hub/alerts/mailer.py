"""Sending the queued alert messages over SMTP, in a worker thread with its own store
connection (never on the hub's main loop, never holding up ingest).

A message is marked sent only after the server accepted it (``sendmail`` returned without
refusing its recipient). Anything else (no connection, a timeout, a 4xx or 5xx answer,
a refused login) leaves it pending, tried again after ``retry_first_seconds``, doubling up
to ``retry_max_seconds`` (the thread, the queue and the backoff are the shared
``hub.alerts.worker``'s). The queue is in the store, so a restart picks up where the last
process stopped; a message claimed by a process that dies is due again after its lease.
A kill between the server's acceptance and the store's "sent" can send a message twice
(SMTP has no exactly-once); each carries a Message-ID derived from its queue row, so a
mail client can tell the copies apart.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from ..config import AlertsSection, read_secret
from ..store import AlertMail, Store
from .worker import POLL_SECONDS, QueueWorker, backoff

log = logging.getLogger(__name__)

__all__ = ["POLL_SECONDS", "Mailer", "backoff", "message"]

#: Answers that refuse one message, not the connection.
_REFUSED = (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError)


def message(a: AlertsSection, mail: AlertMail) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = a.from_
    msg["To"] = mail.recipient
    msg["Subject"] = mail.mail_subject
    msg["Date"] = formatdate(mail.created_at, usegmt=True)
    msg["Message-ID"] = f"<torwart-alert-{mail.alert_id}-{mail.id}@{a.from_.rpartition('@')[2]}>"
    msg.set_content(mail.body)
    return msg


class Mailer(QueueWorker):
    """The mail channel's worker thread (``hub.alerts.worker``): ``start()``, ``wake()``
    when a message was queued, ``stop()``."""

    channel = "mail"

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
                self._done(store, mail)
        finally:
            try:
                smtp.quit()
            except (OSError, smtplib.SMTPException):
                smtp.close()
