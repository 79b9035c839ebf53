// Torwart dashboard: live updates (Server-Sent Events), relative times, and the confirm
// step of actions. No framework; the pages work without this file (no live updates, and
// actions get a server-side confirm page instead of the dialog).
(() => {
  "use strict";
  const body = document.body;
  const lang = body.dataset.lang || "de";
  const csrf = body.dataset.csrf || "";
  const rtf = window.Intl && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, { numeric: "auto", style: "short" }) : null;

  function refreshTimes(root) {
    if (!rtf) return;
    const now = Date.now() / 1000;
    (root || document).querySelectorAll("time[data-ts]").forEach((el) => {
      const d = Number(el.dataset.ts) - now;
      const a = Math.abs(d);
      let value = d, unit = "second";
      if (a >= 86400) { value = d / 86400; unit = "day"; }
      else if (a >= 3600) { value = d / 3600; unit = "hour"; }
      else if (a >= 60) { value = d / 60; unit = "minute"; }
      el.textContent = rtf.format(Math.round(value), unit);
    });
  }
  refreshTimes(document);
  setInterval(() => refreshTimes(document), 15000);

  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname);
  }

  // --- live updates ----------------------------------------------------------------------------
  const liveUrl = body.dataset.live;
  const banner = document.getElementById("livestatus");
  function showLost(lost) {
    body.dataset.liveState = lost ? "lost" : "open";
    if (!banner) return;
    banner.hidden = !lost;
    banner.textContent = lost ? body.dataset.tLost : "";
  }
  if (liveUrl && window.EventSource) {
    let source = null;
    const connect = () => {
      source = new EventSource(liveUrl + (liveUrl.includes("?") ? "&" : "?") + "lang=" + encodeURIComponent(lang));
      source.addEventListener("open", () => showLost(false));
      source.addEventListener("site", (ev) => {
        const doc = JSON.parse(ev.data);
        const old = document.getElementById("site-" + doc.site);
        if (!old || typeof doc.html !== "string") return;
        old.outerHTML = doc.html;
        const fresh = document.getElementById("site-" + doc.site);
        if (fresh) {
          refreshTimes(fresh);
          fresh.dataset.updated = String(Date.now());
        }
      });
      source.addEventListener("logout", () => { source.close(); toLogin(); });
      source.addEventListener("error", () => {
        showLost(true);
        if (source.readyState === EventSource.CLOSED) {
          // The server refused the stream (e.g. 401): find out why before retrying.
          setTimeout(() => {
            fetch("/api/v1/me", { credentials: "same-origin" })
              .then((r) => (r.status === 401 ? toLogin() : connect()))
              .catch(() => connect());
          }, 3000);
        }
      });
    };
    connect();
    window.addEventListener("pagehide", () => source && source.close());
  }

  // --- actions with a confirm step ----------------------------------------------------------------
  const dialog = document.getElementById("confirm");
  document.querySelectorAll("form.action").forEach((form) => {
    form.addEventListener("submit", (ev) => {
      if (!dialog || typeof dialog.showModal !== "function" || !window.fetch) return; // server-side confirm
      ev.preventDefault();
      const data = new FormData(form);
      let text = form.dataset.confirm || "";
      form.querySelectorAll("select, input[name]").forEach((el) => {
        const shown = el.tagName === "SELECT" ? el.options[el.selectedIndex].text : el.value;
        text = text.split("{" + el.name + "}").join(shown);
      });
      dialog.querySelector(".confirm-text").textContent = text;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => {
        if (dialog.returnValue === "ok") send(form, data);
      }, { once: true });
      dialog.showModal();
    });
  });

  function send(form, data) {
    const doc = {};
    for (const [k, v] of data.entries()) {
      if (k === "csrf" || v === "") continue;
      doc[k] = k === "seconds" ? Number(v) : v;
    }
    const out = form.querySelector(".result");
    fetch(form.dataset.api, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(doc),
    }).then(async (r) => {
      if (r.status === 401) return toLogin();
      const answer = await r.json().catch(() => ({}));
      if (!out) return;
      out.className = "result " + (r.ok ? "ok" : "failed");
      out.textContent = r.ok ? body.dataset.tSent : body.dataset.tFailed.replace("{error}", answer.error || r.status);
      if (r.ok && form.dataset.follow && answer.id) follow(form, out, answer.id);
    }).catch((e) => {
      if (out) { out.className = "result failed"; out.textContent = body.dataset.tFailed.replace("{error}", String(e)); }
    });
  }

  // --- following an enrollment (GET /api/v1/enrollments/{id} once a second) ----------------------
  function fill(text, values) {
    return Object.keys(values).reduce((t, k) => t.split("{" + k + "}").join(String(values[k] ?? "")), text || "");
  }

  function enrollText(out, doc) {
    let key = doc.state;
    if (key === "enrolled" && doc.final) key = "enrolledFinal";
    else if (key === "refused") key = doc.code === "conflict" ? "conflict" : doc.code ? "refusedCode" : "refused";
    else if (key === "expired" && doc.window_ends_at === null) key = "noack";
    const left = doc.window_ends_at ? Math.max(0, Math.round(doc.window_ends_at - Date.now() / 1000)) : "";
    return fill(out.dataset["s" + key.charAt(0).toUpperCase() + key.slice(1)], {
      member: doc.member, reader: doc.reader, left, version: doc.cache_version, code: doc.code, detail: doc.detail,
    });
  }

  function follow(form, out, id) {
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    let failures = 0;
    let timer = null;
    const done = () => { clearInterval(timer); if (button) button.disabled = false; };
    const poll = () => {
      fetch(form.dataset.follow + encodeURIComponent(id), { credentials: "same-origin" })
        .then(async (r) => {
          if (r.status === 401) { done(); return toLogin(); }
          const doc = await r.json();
          if (!r.ok) throw new Error(doc.error || String(r.status));
          failures = 0;
          const good = doc.state === "held" || doc.state === "enrolled";
          out.className = "result " + (doc.final ? (good ? "ok" : "failed") : "pending");
          out.dataset.state = doc.state;
          out.textContent = enrollText(out, doc);
          if (doc.final) done();
        })
        .catch((e) => {
          failures += 1;
          if (failures >= 10) {  // ten seconds without an answer: stop, say why
            out.className = "result failed";
            out.textContent = fill(out.dataset.sLost, { error: String(e.message || e) });
            done();
          }
        });
    };
    timer = setInterval(poll, 1000);
    poll();
  }
})();
