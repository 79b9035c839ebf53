// "Benachrichtigungen aktivieren": subscribe this browser to the hub's Web Push alerts.
// The button (#push-enable) carries its messages as data-* attributes (German or English).
"use strict";

(function () {
  const button = document.getElementById("push-enable");
  if (!button) return;
  const status = document.getElementById("push-status");
  const csrf = document.body.dataset.csrf || "";
  const say = (what) => {
    if (status) status.textContent = button.dataset[what] || what;
  };
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    say("unsupported");
    button.disabled = true;
    return;
  }
  const key = (text) => {
    const b64 = (text + "=".repeat((4 - (text.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const info = await (await fetch("/api/v1/me/push", { credentials: "same-origin" })).json();
      if (!info.public_key) {
        say("unconfigured");
        return;
      }
      if (await Notification.requestPermission() !== "granted") {
        say("denied");
        return;
      }
      const reg = await navigator.serviceWorker.register("/sw.js", { scope: "/" });
      await navigator.serviceWorker.ready;
      const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key(info.public_key) });
      const r = await fetch("/api/v1/me/push", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
        body: JSON.stringify(sub.toJSON()),
      });
      say(r.ok ? "enabled" : "failed");
    } catch (e) {
      say("failed");
    } finally {
      button.disabled = false;
    }
  });
})();
