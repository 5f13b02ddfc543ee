// provisiond — small enhancements; every page works without this file.
(function () {
  "use strict";
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  // Delete and other dangerous links: confirm, then POST with the CSRF token.
  document.addEventListener("click", (ev) => {
    const link = ev.target.closest("a[data-confirm][data-post]");
    if (!link) return;
    ev.preventDefault();
    if (!window.confirm(link.dataset.confirm)) return;
    const form = document.createElement("form");
    form.method = "post";
    form.action = link.dataset.post;
    const token = document.createElement("input");
    token.type = "hidden"; token.name = "csrf_token"; token.value = csrf();
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  });
  // A form that asks first (in a page or the pop-up alike): once the user
  // agrees, it carries confirm=yes, which the server asks for itself otherwise.
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (!form.dataset.confirm) return;
    if (!window.confirm(form.dataset.confirm)) { ev.preventDefault(); return; }
    if (!form.querySelector('input[name="confirm"]')) {
      const yes = document.createElement("input");
      yes.type = "hidden"; yes.name = "confirm"; yes.value = "yes";
      form.appendChild(yes);
    }
  });

  // The New/Edit Handler form in a pop-up: loaded from the page it has
  // without JavaScript, submitted in place so errors show beside the fields.
  let opener = null;
  function showForm(dialog, html) {
    const doc = new DOMParser().parseFromString(html, "text/html");
    const wrap = doc.getElementById("handler-form-wrap");
    if (!wrap) return false;
    dialog.replaceChildren(document.importNode(wrap, true));
    const form = dialog.querySelector("#handler-form");
    form.addEventListener("submit", (ev) => submitInDialog(ev, dialog));
    dialog.querySelectorAll("[data-close]").forEach((el) =>
      el.addEventListener("click", (e) => { e.preventDefault(); dialog.close(); }));
    const first = dialog.querySelector('[aria-invalid="true"]') || dialog.querySelector("#name");
    if (first) first.focus();
    return true;
  }
  async function submitInDialog(ev, dialog) {
    ev.preventDefault();
    const form = ev.target;
    // Not following the redirect here keeps the flash message for the page we go to.
    const res = await fetch(form.action, {
      method: "POST", body: new URLSearchParams(new FormData(form)), credentials: "same-origin", redirect: "manual",
    });
    if (res.type === "opaqueredirect") { window.location.href = form.dataset.next || "/provisioning"; return; }
    if (res.status !== 422 || !showForm(dialog, await res.text())) form.submit();
  }
  document.addEventListener("click", async (ev) => {
    const link = ev.target.closest("a[data-dialog]");
    if (!link || ev.ctrlKey || ev.metaKey || ev.shiftKey) return;
    const dialog = document.getElementById(link.dataset.dialog);
    if (!dialog || typeof dialog.showModal !== "function") return;
    ev.preventDefault();
    opener = link;
    const res = await fetch(link.href, { credentials: "same-origin" });
    if (!res.ok || !showForm(dialog, await res.text())) { window.location.href = link.href; return; }
    dialog.showModal();
    const first = dialog.querySelector('[aria-invalid="true"]') || dialog.querySelector("#name");
    if (first) first.focus();
  });
  document.addEventListener("close", (ev) => {
    if (ev.target.tagName === "DIALOG" && opener) { opener.focus(); opener = null; }
  }, true);

  // Times: UTC by default, always labelled; a user may choose to read them in
  // the browser's time zone instead (kept in this browser). Every <time
  // class="utc"> holds its UTC text; the choice rewrites the text and keeps
  // the UTC time in its title.
  const TIMES = "provisiond.times";
  const pad = (n) => String(n).padStart(2, "0");
  const zone = () => {
    const part = new Intl.DateTimeFormat("en", { timeZoneName: "short" }).formatToParts(new Date())
      .find((p) => p.type === "timeZoneName");
    return part ? part.value : "local";
  };
  function parseUtc(text) {
    const m = text.match(/^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?: UTC)?$/);
    return m ? new Date(m[1] + "T" + m[2] + "Z") : null;
  }
  function showTimes(local) {
    document.querySelectorAll("time.utc").forEach((el) => {
      if (!el.dataset.utc) el.dataset.utc = el.textContent.trim();
      const utc = el.dataset.utc;
      const d = parseUtc(utc);
      if (!d || isNaN(d.getTime())) return;
      const labelled = utc.endsWith(" UTC") ? utc : utc + " UTC";
      if (local) {
        const ms = utc.includes(".") ? "." + String(d.getMilliseconds()).padStart(3, "0") : "";
        el.textContent = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
          `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${ms} ${zone()}`;
        el.title = labelled;
      } else {
        el.textContent = utc;
        el.removeAttribute("title");
      }
    });
    document.querySelectorAll(".tz-label").forEach((el) => { el.textContent = local ? zone() : "UTC"; });
    const toggle = document.getElementById("tz-toggle");
    if (toggle) {
      toggle.textContent = local ? `your time zone (${zone()})` : "UTC";
      toggle.setAttribute("aria-pressed", String(local));
      toggle.title = local ? "Show times in UTC" : "Show times in your browser's time zone";
    }
  }
  function storedLocal() { try { return localStorage.getItem(TIMES) === "local"; } catch (e) { return false; } }
  const tzSwitch = document.getElementById("tz-switch");
  if (tzSwitch) {
    tzSwitch.hidden = false;
    document.getElementById("tz-toggle").addEventListener("click", () => {
      const local = !storedLocal();
      try { localStorage.setItem(TIMES, local ? "local" : "utc"); } catch (e) { /* private mode: this page only */ }
      showTimes(local);
    });
  }
  showTimes(storedLocal());

  // Esc closes an open drop-down and returns focus to its toggle.
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    document.querySelectorAll("details.adv-search[open]").forEach((d) => {
      d.open = false;
      d.querySelector("summary").focus();
    });
  });
})();
