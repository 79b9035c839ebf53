"""Alerts by e-mail: what opens and clears an alert (``rules``, pure), the messages in
German and English (``texts``), deciding and queueing them in the store (``alerter``, on
the hub's main loop) and sending the queue over SMTP (``mailer``, a worker thread)."""
