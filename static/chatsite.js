// chatsite's few lines of page behaviour; everything else is htmx swaps from the socket.
(function () {
  "use strict";
  let sentText = null;

  // Enter sends, Shift+Enter adds a line (IME composition is left alone).
  document.addEventListener("keydown", function (event) {
    const box = event.target;
    if (box.id !== "message-input" || event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    if (document.querySelector("#composer-buttons button[form=composer]")) {
      box.form.requestSubmit();
    }
  });

  // Remember what was sent: it leaves the box only when the server has accepted it,
  // so a refused message (too long, no model...) is never lost.
  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target.id === "composer") sentText = event.detail.parameters.message;
  });

  // Follow a streaming answer, unless the reader has scrolled up to read.
  let following = true;
  window.addEventListener("scroll", function () {
    following = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
  }, { passive: true });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (following) window.scrollTo(0, document.body.scrollHeight);
  });

  // htmx's ws extension reconnects by itself only after abnormal closes (1006...);
  // a server restart or a proxy closes normally (1000, 1001). Reconnect after those too,
  // with a growing pause, and say when the page is offline. Sends made meanwhile wait
  // in the extension's queue; on reconnect the server brings the page up to date.
  let leaving = false;
  let retries = 0;
  window.addEventListener("pagehide", function () { leaving = true; });
  document.addEventListener("htmx:wsClose", function (event) {
    if (leaving) return;
    document.getElementById("offline")?.removeAttribute("hidden");
    const code = event.detail.event.code;
    if ([1006, 1011, 1012, 1013].includes(code)) return; // the extension retries these
    const wait = Math.min(30000, 500 * 2 ** retries++) * (0.5 + Math.random() / 2);
    setTimeout(function () { event.detail.socketWrapper.reconnect(); }, wait);
  });
  document.addEventListener("htmx:wsOpen", function () {
    retries = 0;
    document.getElementById("offline")?.setAttribute("hidden", "");
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    const signal = document.getElementById("composer-accepted");
    if (!signal || !signal.hasAttribute("data-accepted") || signal.dataset.handled) return;
    signal.dataset.handled = "1";
    const box = document.getElementById("message-input");
    if (box && sentText !== null && box.value.startsWith(sentText)) {
      box.value = box.value.slice(sentText.length).trimStart();
    }
    sentText = null;
    // The new conversation's own URL, so a reload keeps it.
    if (signal.dataset.url && location.pathname !== signal.dataset.url) {
      history.replaceState(null, "", signal.dataset.url);
    }
  });
})();
