// The dashboard's service worker (served at /sw.js, scope "/"): shows the alerts the hub
// pushes (hub/alerts/webpush.py) and opens the hub's page an alert links to.
"use strict";

self.addEventListener("push", (event) => {
  let data = {};
  if (event.data) {
    try {
      data = event.data.json();
    } catch (e) {
      data = { body: event.data.text() };
    }
  }
  event.waitUntil(self.registration.showNotification(data.title || "Torwart", {
    body: data.body || "",
    tag: data.tag || undefined,
    renotify: Boolean(data.tag),
    requireInteraction: Boolean(data.urgent),
    data: { url: data.url || "/" },
  }));
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL((event.notification.data && event.notification.data.url) || "/", self.location.origin);
  if (target.origin !== self.location.origin) return; // only the hub's own pages
  event.waitUntil(self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
    for (const w of windows) {
      if (w.url === target.href && "focus" in w) return w.focus();
    }
    return self.clients.openWindow(target.href);
  }));
});
