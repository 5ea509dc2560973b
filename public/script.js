// wshub placeholder chat page: one WebSocket to this host, a list of
// messages, a text field. No framework, no build step.
"use strict";

(() => {
  const messages = document.getElementById("messages");
  const statusLine = document.getElementById("status");
  const form = document.getElementById("send-form");
  const textField = document.getElementById("text-field");
  const sendButton = document.getElementById("send-button");

  const MAX_SHOWN = 500;        // keep the DOM bounded
  const BACKOFF_START_MS = 500;
  const BACKOFF_MAX_MS = 15000;

  let socket = null;
  let backoff = BACKOFF_START_MS;
  let retryTimer = 0;

  function setStatus(state, text) {
    statusLine.dataset.state = state;
    statusLine.textContent = text;
    sendButton.disabled = state !== "open";
  }

  // A timestamp (ms since epoch, as number or digit string) as a Date, or null.
  function toDate(timestamp) {
    if (typeof timestamp === "string" && /^\d+$/.test(timestamp)) {
      timestamp = Number(timestamp);
    }
    if (typeof timestamp !== "number" && typeof timestamp !== "string") return null;
    const d = new Date(timestamp);
    return Number.isNaN(d.getTime()) ? null : d;
  }

  function addLine(text, opts = {}) {
    const nearBottom =
      messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    const li = document.createElement("li");
    if (opts.system) li.className = "system";
    li.append(document.createTextNode(text));
    if (opts.date) {
      const t = document.createElement("time");
      t.dateTime = opts.date.toISOString();
      t.textContent = `(${opts.date.toLocaleTimeString()})`;
      li.append(" ", t);
    }
    messages.append(li);
    while (messages.children.length > MAX_SHOWN) messages.firstElementChild.remove();
    if (nearBottom) messages.scrollTop = messages.scrollHeight;
  }

  // JSON with a `text` field shows as "text (local time)"; anything else as is.
  function render(data) {
    let msg = null;
    try {
      msg = JSON.parse(data);
    } catch {
      msg = null;
    }
    if (msg && typeof msg === "object" && typeof msg.text === "string") {
      addLine(msg.text, { date: toDate(msg.timestamp) });
    } else {
      addLine(String(data));
    }
  }

  function scheduleReconnect() {
    if (retryTimer) return;
    const wait = backoff + Math.floor(Math.random() * backoff * 0.25);
    setStatus("closed", `Disconnected — retrying in ${Math.ceil(wait / 1000)} s`);
    retryTimer = setTimeout(() => {
      retryTimer = 0;
      connect();
    }, wait);
    backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    setStatus("connecting", "Connecting…");
    let ws;
    try {
      ws = new WebSocket(`${scheme}://${location.host}/`);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    socket = ws;

    ws.addEventListener("open", () => {
      backoff = BACKOFF_START_MS;
      setStatus("open", `Connected to ${location.host}`);
    });

    ws.addEventListener("message", (event) => {
      if (typeof event.data === "string") {
        render(event.data);
      } else {
        addLine("[binary message]", { system: true });
      }
    });

    ws.addEventListener("close", (event) => {
      if (socket !== ws) return;
      socket = null;
      if (event.code !== 1000 && event.code !== 1005 && event.code !== 1006) {
        addLine(`Connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`,
          { system: true });
      }
      scheduleReconnect();
    });
    // An "error" event is always followed by "close"; nothing to do here.
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = textField.value;
    if (!text.trim() || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(text);
    textField.value = "";
    textField.focus();
  });

  // Reconnect at once when the tab comes back online.
  window.addEventListener("online", () => {
    if (socket) return;
    clearTimeout(retryTimer);
    retryTimer = 0;
    backoff = BACKOFF_START_MS;
    connect();
  });

  connect();
})();
