"""Alerts by e-mail and signed webhooks: what opens and clears an alert (``rules``, pure),
the messages in German and English (``texts``), deciding and queueing them in the store
(``alerter``, on the hub's main loop), and sending the queue, each channel by a worker
thread (``worker``): over SMTP (``mailer``) and as signed JSON POSTs (``webhooks``)."""
