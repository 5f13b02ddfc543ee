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

  // Esc closes an open drop-down and returns focus to its toggle.
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    document.querySelectorAll("details.adv-search[open]").forEach((d) => {
      d.open = false;
      d.querySelector("summary").focus();
    });
  });
})();
