// chatsite's few lines of page behaviour; everything else is htmx swaps from the socket.
// No inline script anywhere (the Content-Security-Policy forbids it): every handler is
// delegated from the document here.
(function () {
  "use strict";
  let sentText = null;

  function stopButton() {
    return document.querySelector("#composer-buttons button[form=stop-form]");
  }

  document.addEventListener("keydown", function (event) {
    const box = event.target;
    // Enter sends, Shift+Enter adds a line (IME composition is left alone); the same
    // in a question being edited.
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      if (box.id === "message-input") {
        event.preventDefault();
        if (document.querySelector("#composer-buttons button[form=composer]:not([disabled])")) box.form.requestSubmit();
        return;
      }
      if (box.matches && box.matches(".edit-form textarea")) {
        event.preventDefault();
        box.form.requestSubmit();
        return;
      }
    }
    if (event.key === "Escape") {
      // Escape cancels an edit, a rename or a delete, else closes the sidebar on a phone,
      // else stops a running answer.
      const editing = box.closest && box.closest(".edit-form");
      if (editing) {
        editing.querySelector("button[type=button]")?.click();
        return;
      }
      const heading = box.closest && box.closest(".heading.rename, .heading.confirm");
      if (heading) {
        event.preventDefault();
        heading.querySelector("[hx-get]")?.click(); // its Cancel
        return;
      }
      if (document.body.classList.contains("sidebar-open")) {
        toggleSidebar(false);
        return;
      }
      const stop = stopButton();
      if (stop) {
        event.preventDefault();
        stop.click();
      }
      return;
    }
    // Ctrl+Shift+O (⌘+Shift+O on a Mac): a new chat, as in ChatGPT.
    if ((event.ctrlKey || event.metaKey) && event.shiftKey && (event.key === "O" || event.key === "o")) {
      event.preventDefault();
      location.assign(document.querySelector("a.new-chat")?.href || "/");
    }
  });

  // Remember what was sent: it leaves the box only when the server has accepted it,
  // so a refused message (too long, no model...) is never lost. And which version
  // switcher was used: the switch redraws the messages, and the focus goes back to it.
  let refocus = null;
  document.addEventListener("htmx:wsConfigSend", function (event) {
    if (event.target.id === "composer") sentText = event.detail.parameters.message;
    if (ASKING.includes(event.detail.parameters.action)) following = true;
    const versions = event.target.closest && event.target.closest(".versions");
    if (versions) {
      refocus = { group: versions.dataset.group, next: event.target.classList.contains("version-next") };
    }
  });

  // What the socket swapped in. For each out-of-band swap of a message htmx fires
  // htmx:oobAfterSwap once on the socket's element (#chat), with detail.target the
  // element swapped: the one filled, or the one replaced (out of the page now: its
  // successor has its id). It also fires on the elements swapped in earlier by the same
  // message, which bubble here too: skipped, so each swap counts once.
  function afterSwap(id, handler) {
    document.addEventListener("htmx:oobAfterSwap", function (event) {
      if (event.target.id === "chat" && event.detail.target.id === id) handler(document.getElementById(id));
    });
  }

  // The server accepted a message: stream.html#accepted replaces the composer's
  // conversation field. The sent text leaves the box, and the address bar shows the
  // conversation's own URL (the field's data-url), so a reload keeps it.
  afterSwap("conversation-field", function (field) {
    const box = document.getElementById("message-input");
    if (box && sentText !== null && box.value.startsWith(sentText)) {
      box.value = box.value.slice(sentText.length).trimStart();
    }
    sentText = null;
    if (field.dataset.url && location.pathname !== field.dataset.url) {
      history.replaceState(null, "", field.dataset.url);
    }
  });

  // Follow the conversation as it grows (a question, a streaming answer), unless the
  // reader has scrolled up to read: then "Jump to latest" (chat.html) offers the way
  // back. Asking anything (these actions) goes back to the bottom, as in every chat.
  const ASKING = ["send", "edit", "regenerate", "retry"];
  function atBottom() {
    return window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - 80;
  }
  function toBottom() {
    window.scrollTo(0, document.documentElement.scrollHeight);
  }
  function offerJump() {
    document.getElementById("jump-to-latest")?.toggleAttribute("hidden", following || atBottom());
  }
  let following = true;
  window.addEventListener("scroll", function () { following = atBottom(); offerJump(); }, { passive: true });
  document.addEventListener("htmx:wsAfterMessage", function () {
    if (following) toBottom();
    offerJump();
  });

  // The messages were redrawn (stream.html#thread): after a version switch, the focus
  // goes back to its switcher, and the page stays where that put it.
  afterSwap("messages", function () {
    if (!refocus) return;
    const group = document.querySelector('.versions[data-group="' + refocus.group + '"]');
    if (group) {
      const buttons = group.querySelectorAll("button");
      const wanted = refocus.next ? buttons[buttons.length - 1] : buttons[0];
      const button = wanted && !wanted.disabled ? wanted : Array.from(buttons).find(function (b) { return !b.disabled; });
      button?.focus();
    }
    following = atBottom();
    refocus = null;
  });

  // Reconnecting, after any close: htmx's ws extension would retry abnormal closes
  // (1006, 1011...) itself, at once again after each open, so a server that accepts the
  // socket and then fails it kept the page reconnecting every second; it would leave
  // normal ones (a restart, a proxy: 1000, 1001) alone. Here every close waits a growing
  // pause, counted until a connection lasts a minute; after MAX_TRIES the page stops and
  // offers a reload. Sends made meanwhile wait in the extension's queue; on reconnect
  // the server brings the page up to date. Codes 4000-4999 are the server's own: it closed
  // for good (4001: signed out) and said why, so nothing reconnects.
  const MAX_TRIES = 10;
  const LASTING_MS = 60000;
  const NEVER = 2147483647; // the longest pause a browser timer takes (24.8 days)
  if (window.htmx) htmx.config.wsReconnectDelay = function () { return NEVER; };
  let leaving = false;
  let tries = 0;
  let openedAt = null;
  window.addEventListener("pagehide", function () { leaving = true; });
  document.addEventListener("htmx:wsClose", function (event) {
    const code = event.detail.event.code;
    if (leaving || (code >= 4000 && code < 5000)) return;
    if (openedAt !== null && Date.now() - openedAt >= LASTING_MS) tries = 0;
    openedAt = null;
    const givenUp = tries >= MAX_TRIES;
    document.getElementById("offline")?.toggleAttribute("hidden", givenUp);
    document.getElementById("gave-up")?.toggleAttribute("hidden", !givenUp);
    if (givenUp) return;
    const wait = Math.min(30000, 500 * 2 ** tries++) * (0.5 + Math.random() / 2);
    setTimeout(function () { event.detail.socketWrapper.reconnect(); }, wait);
  });
  document.addEventListener("htmx:wsOpen", function (event) {
    openedAt = Date.now();
    document.getElementById("offline")?.setAttribute("hidden", "");
    // Conversations the sidebar marks as generating may have ended before this socket
    // listened (a page just loaded, or back online): ask how they are now.
    const marked = Array.from(document.querySelectorAll("#conversation-list .generating-marker"), function (marker) {
      return Number(marker.closest("li").id.replace("conversation-", ""));
    });
    if (marked.length) {
      event.detail.socketWrapper.send(JSON.stringify({ action: "sidebar", conversations: marked }));
    }
  });

  // --- copy buttons ---------------------------------------------------------------

  // A "Copy" button on every code block of a rendered answer. Answers arrive in swaps
  // (page load, the socket's "done", a version switch): htmx.onLoad sees each.
  function addCodeButtons(root) {
    if (!root.querySelectorAll) return;
    root.querySelectorAll(".markdown pre").forEach(function (pre) {
      if (pre.parentElement.classList.contains("code-block")) return;
      const wrapper = document.createElement("div");
      wrapper.className = "code-block";
      pre.replaceWith(wrapper);
      wrapper.appendChild(pre);
      const button = document.createElement("button");
      button.type = "button";
      button.className = "icon copy-code";
      button.textContent = "Copy code";
      wrapper.appendChild(button);
    });
  }
  if (window.htmx) htmx.onLoad(addCodeButtons);
  // A code block that closes while its answer streams gets its button at once, so the
  // final render changes nothing on the page (its blocks arrive in .live-done).
  document.addEventListener("htmx:oobAfterSwap", function (event) {
    const target = event.detail.target;
    if (target && target.classList && target.classList.contains("live-done")) addCodeButtons(target);
  });
  document.addEventListener("DOMContentLoaded", function () { addCodeButtons(document.body); });

  // Says "Copied" to screen readers (chat.html's live region, which takes no room: one
  // appended to <body> made the page 17 px taller and moved the sidebar).
  function announce(text) {
    const status = document.getElementById("copy-status");
    if (status) status.textContent = text;
  }

  // An answer's markdown, fetched when its Copy is clicked (views.message_source), so
  // pages do not carry every answer twice.
  function markdownOf(url) {
    return fetch(url, { credentials: "same-origin" }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.text();
    });
  }

  // Text, or text still coming (a Promise). Safari lets a click write the clipboard only
  // if the write starts in the click: a ClipboardItem can wait for its text.
  async function write(text) {
    if (typeof text === "string") return navigator.clipboard.writeText(text);
    if (window.ClipboardItem) {
      const blob = text.then(function (t) { return new Blob([t], { type: "text/plain" }); });
      try {
        return await navigator.clipboard.write([new ClipboardItem({ "text/plain": blob })]);
      } catch (error) {
        await text; // the fetch failed: so does the copy
      }
    }
    return navigator.clipboard.writeText(await text);
  }

  // An icon button (chat.html) keeps its icons: its name says what happened, and the
  // class "done" shows its tick. A text button ("Copy code") says it in its text.
  async function copy(button, text) {
    const named = button.hasAttribute("aria-label");
    const label = named ? button.getAttribute("aria-label") : button.textContent;
    function say(words) {
      if (named) button.setAttribute("aria-label", words);
      else button.textContent = words;
    }
    try {
      await write(text);
      say("Copied");
      button.classList.add("done");
      announce("Copied to the clipboard.");
    } catch (error) {
      say("Copy failed");
      announce("Could not copy: the browser refused the clipboard.");
    }
    setTimeout(function () { say(label); button.classList.remove("done"); announce(""); }, 1500);
  }

  document.addEventListener("click", function (event) {
    // On a phone, a tap beside the open sidebar closes it.
    if (document.body.classList.contains("sidebar-open") && !event.target.closest("#sidebar, #sidebar-toggle")) {
      toggleSidebar(false, false);
    }
    const button = event.target.closest && event.target.closest("button");
    if (!button) return;
    if (button.dataset.copy) {
      const source = document.querySelector(button.dataset.copy);
      if (!source) return;
      if (source.dataset.source) {
        copy(button, markdownOf(source.dataset.source));
        return;
      }
      const clone = source.cloneNode(true);
      // Not the buttons, nor a note about the text ("Too long to format…").
      clone.querySelectorAll("button, .status-note").forEach(function (b) { b.remove(); });
      copy(button, clone.textContent.trim());
    } else if (button.classList.contains("copy-code")) {
      const code = button.parentElement.querySelector("pre");
      if (code) copy(button, code.innerText.replace(/\n$/, ""));
    } else if (button.id === "jump-to-latest") {
      following = true;
      toBottom();
      offerJump();
      document.getElementById("message-input")?.focus({ preventScroll: true });
    } else if (button.classList.contains("show-more")) {
      const text = document.getElementById(button.getAttribute("aria-controls"));
      const open = button.getAttribute("aria-expanded") !== "true";
      text?.classList.toggle("collapsed", !open);
      button.setAttribute("aria-expanded", open ? "true" : "false");
      button.textContent = open ? "Show less" : "Show more";
    } else if (button.id === "reload-page") {
      location.reload();
    } else if (button.id === "sidebar-toggle") {
      toggleSidebar(!document.body.classList.contains("sidebar-open"));
    }
  });

  // --- what swaps leave to fix -------------------------------------------------------

  // The open conversation's sidebar item is highlighted (aria-current). Items the socket
  // swaps in (a new conversation, a title, a generating marker) and the sidebar's next
  // pages are rendered without knowing which one is open: each marks itself here.
  function markIfOpen(item) {
    const link = item.querySelector(":scope > a");
    if (!link) return;
    const open = document.getElementById("conversation-field")?.value;
    if (open && item.id === "conversation-" + open) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }

  // The tab's title follows the heading: a new conversation's, and after a rename.
  const SITE_NAME = document.title.split(" · ").pop();
  function nameTab() {
    const title = document.getElementById("conversation-title");
    if (title) document.title = title.textContent.trim() + " · " + SITE_NAME;
  }

  // After a rename or a delete is cancelled (or saved), the focus goes back to its button.
  let headingFocus = null;
  document.addEventListener("click", function (event) {
    const heading = event.target.closest && event.target.closest(".heading.rename, .heading.confirm");
    if (heading) headingFocus = heading.classList.contains("rename") ? "rename" : "delete";
  }, true);

  // A long question folds to a few lines, with "Show more" (the button's aria-controls
  // names the text; the click handler above unfolds it).
  function foldLongQuestions(root) {
    const texts = root.matches && root.matches(".message.user .user-text") ? [root] : root.querySelectorAll(".message.user .user-text");
    texts.forEach(function (text) {
      if (text.nextElementSibling?.classList.contains("show-more")) return;
      text.classList.add("collapsed");
      if (text.scrollHeight <= text.clientHeight + 1) {
        text.classList.remove("collapsed");
        return;
      }
      text.id = text.id || text.closest("article").id + "-question";
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link show-more";
      button.textContent = "Show more";
      button.setAttribute("aria-expanded", "false");
      button.setAttribute("aria-controls", text.id);
      text.after(button);
    });
  }

  if (window.htmx) {
    htmx.onLoad(function (element) {
      if (!element.querySelectorAll) return;
      if (element.parentElement?.id === "conversation-list") markIfOpen(element);
      if (element.id === "conversation-heading") {
        nameTab();
        if (headingFocus) element.querySelector('[hx-get$="/' + headingFocus + '/"]')?.focus();
        headingFocus = null;
      }
      foldLongQuestions(element);
    });
  }

  // A paused budget (chat.html's #budget-notice[data-paused]) turns off everything that
  // asks for an answer, and says why beside Send, once: the socket would only refuse. The
  // notice comes with the page and with each answer's end; the buttons also come back
  // with a redrawn thread or an edit form, so this runs after every swap.
  function holdWhilePaused() {
    const paused = document.getElementById("budget-notice")?.hasAttribute("data-paused") || false;
    const asking = "#composer-buttons button[form=composer], form.regenerate button, form.retry button, .edit-form button[type=submit]";
    document.querySelectorAll(asking).forEach(function (button) {
      button.disabled = paused;
      if (paused) button.setAttribute("aria-describedby", "budget-notice");
      else button.removeAttribute("aria-describedby");
    });
  }
  document.addEventListener("DOMContentLoaded", holdWhilePaused);
  document.addEventListener("htmx:wsAfterMessage", holdWhilePaused);
  document.addEventListener("htmx:afterSettle", holdWhilePaused);

  // --- the sidebar on narrow screens ------------------------------------------------

  function toggleSidebar(open, moveFocus = true) {
    document.body.classList.toggle("sidebar-open", open);
    const toggle = document.getElementById("sidebar-toggle");
    toggle?.setAttribute("aria-expanded", open ? "true" : "false");
    if (!moveFocus) return;
    if (open) setTimeout(function () { document.getElementById("search-input")?.focus(); }, 0);
    else toggle?.focus();
  }
})();
