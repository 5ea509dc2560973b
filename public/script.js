// wshub chat page: rooms, direct messages, presence and resume over one
// WebSocket, speaking the protocol in docs/PROTOCOL.md. Plain JS, no build
// step, no framework. Every piece of text that comes from a user or the
// server is put on the page with textContent, never parsed as markup.
"use strict";

(() => {
  // ---------------------------------------------------------------------
  // Constants and elements

  const NICK_KEY = "wshub.nick";
  const MAX_ITEMS = 500;           // per conversation, keeps the DOM bounded
  const MAX_TEXT_BYTES = 4000;     // the server's default --max-text
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 10000;
  const CONNECT_TIMEOUT_MS = 10000;
  const GROUP_MS = 5 * 60 * 1000;  // consecutive messages within this share a header
  const ROOM_RE = /^[A-Za-z0-9._-]{1,64}$/;
  const STATES = ["connecting", "open", "closing", "closed"];

  const $ = (id) => document.getElementById(id);
  const el = {
    app: $("app"),
    status: $("status"),
    retry: $("retry-button"),
    nickForm: $("nick-form"),
    nick: $("nick"),
    rooms: $("rooms"),
    dms: $("dms"),
    dmBlock: $("dm-block"),
    joinForm: $("join-form"),
    roomInput: $("room-input"),
    convTitle: $("conv-title"),
    convSub: $("conv-sub"),
    membersToggle: $("members-toggle"),
    memberCount: $("member-count"),
    membersRoom: $("members-room"),
    members: $("members"),
    messages: $("messages"),
    sendForm: $("send-form"),
    field: $("text-field"),
    send: $("send-button"),
  };

  // ---------------------------------------------------------------------
  // State

  const me = { id: null, nick: null };
  const convs = new Map();       // key ("room:x" or "dm:c3") -> conversation
  let currentKey = null;         // the conversation on screen
  let lastRoomKey = null;        // the room whose members are listed
  const pendingJoins = new Set(); // rooms this user asked to join
  let pendingNick = null;

  let socket = null;
  let ready = false;             // welcome received on the current socket
  let hadSession = false;        // some earlier socket got a welcome
  let attempt = 0;               // reconnect attempts since the last welcome
  let retryAt = 0;               // when the scheduled reconnect fires (ms)
  let retryTimer = 0;
  let waitingOnline = false;     // browser offline: retry when it is back
  let leaving = false;           // page is unloading: do not reconnect

  // ---------------------------------------------------------------------
  // Small helpers

  function storageGet(key) {
    try { return localStorage.getItem(key); } catch { return null; }
  }
  function storageSet(key, value) {
    try {
      if (value === null) localStorage.removeItem(key);
      else localStorage.setItem(key, value);
    } catch { /* private mode: not persisted */ }
  }

  function toDate(ts) {
    const d = new Date(typeof ts === "number" ? ts : Date.now());
    return Number.isNaN(d.getTime()) ? new Date() : d;
  }

  function timeEl(ts) {
    const d = toDate(ts);
    const t = document.createElement("time");
    t.dateTime = d.toISOString();
    t.title = d.toLocaleString();
    t.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return t;
  }

  function make(tag, className, text) {
    const n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined) n.textContent = text;
    return n;
  }

  // A stable colour per nickname, for avatars and names.
  function hue(key) {
    let h = 0x811c9dc5;
    for (const ch of String(key)) h = Math.imul(h ^ ch.codePointAt(0), 16777619);
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    return (h >>> 0) % 360;
  }

  function avatar(member) {
    const a = make("span", "avatar", (member.nick || "?").trim().charAt(0).toUpperCase() || "?");
    a.style.setProperty("--hue", String(hue(member.nick || member.id)));
    a.setAttribute("aria-hidden", "true");
    return a;
  }

  function isMember(m) {
    return m && typeof m === "object" && typeof m.id === "string";
  }

  function utf8Length(s) {
    return new TextEncoder().encode(s).length;
  }

  // ---------------------------------------------------------------------
  // Conversations

  function roomKey(name) { return `room:${name}`; }
  function dmKey(id) { return `dm:${id}`; }

  function ensureRoom(name) {
    const key = roomKey(name);
    let c = convs.get(key);
    if (!c) {
      c = { key, kind: "room", name, items: [], unread: 0, members: new Map(),
            lastId: 0, joined: false, tab: null };
      convs.set(key, c);
      c.tab = makeTab(c);
      el.rooms.append(c.tab);
    }
    return c;
  }

  function ensureDm(peer) {
    const key = dmKey(peer.id);
    let c = convs.get(key);
    if (!c) {
      c = { key, kind: "dm", name: peer.id, peer: { ...peer }, items: [], unread: 0,
            online: true, tab: null };
      convs.set(key, c);
      c.tab = makeTab(c);
      el.dms.append(c.tab);
      el.dmBlock.hidden = false;
    } else if (peer.nick) {
      c.peer.nick = peer.nick;
      refreshTab(c);
    }
    return c;
  }

  function convLabel(c) {
    return c.kind === "room" ? `#${c.name}` : `@${c.peer.nick}`;
  }

  function makeTab(c) {
    const li = make("li", "tab");
    li.dataset.kind = c.kind;
    if (c.kind === "room") li.dataset.room = c.name;
    else li.dataset.peer = c.name;
    const pick = make("button", "tab-pick");
    pick.type = "button";
    const label = make("span", "tab-label");
    const badge = make("span", "unread");
    badge.hidden = true;
    pick.append(label, badge);
    pick.addEventListener("click", () => select(c.key));
    const close = make("button", "tab-close", "×");
    close.type = "button";
    close.addEventListener("click", () => closeConv(c));
    li.append(pick, close);
    c.tab = li;
    refreshTab(c);
    return li;
  }

  function refreshTab(c) {
    const li = c.tab;
    if (!li) return;
    const [pick, close] = li.children;
    pick.querySelector(".tab-label").textContent = convLabel(c);
    const badge = pick.querySelector(".unread");
    badge.textContent = String(c.unread);
    badge.hidden = c.unread === 0;
    li.dataset.unread = String(c.unread);
    li.classList.toggle("current", c.key === currentKey);
    li.classList.toggle("offline", c.kind === "dm" && !c.online);
    if (c.key === currentKey) pick.setAttribute("aria-current", "page");
    else pick.removeAttribute("aria-current");
    close.setAttribute("aria-label", c.kind === "room" ? `Leave #${c.name}` : `Close @${c.peer.nick}`);
    close.title = close.getAttribute("aria-label");
    const unread = c.unread ? ` (${c.unread} unread)` : "";
    pick.setAttribute("aria-label", `${convLabel(c)}${unread}`);
  }

  function closeConv(c) {
    if (c.kind === "room") {
      if (socket && ready) send({ type: "leave", room: c.name });
      else removeConv(c); // not connected: just forget it; it is not resumed
    } else {
      removeConv(c);
    }
  }

  function removeConv(c) {
    convs.delete(c.key);
    if (c.tab) c.tab.remove();
    if (c.kind === "dm" && !el.dms.children.length) el.dmBlock.hidden = true;
    if (lastRoomKey === c.key) lastRoomKey = null;
    if (currentKey === c.key) {
      currentKey = null;
      const next = [...convs.values()].find((x) => x.kind === "room") || convs.values().next().value;
      if (next) select(next.key);
      else renderCurrent();
    }
    updateTitle();
  }

  function currentConv() {
    return currentKey ? convs.get(currentKey) || null : null;
  }

  function select(key) {
    const c = convs.get(key);
    if (!c) return;
    const prev = currentConv();
    currentKey = key;
    if (c.kind === "room") lastRoomKey = key;
    c.unread = 0;
    if (prev) refreshTab(prev);
    refreshTab(c);
    renderCurrent();
    updateTitle();
    el.app.dataset.panel = "";
    el.membersToggle.setAttribute("aria-expanded", "false");
  }

  function renderCurrent() {
    const c = currentConv();
    el.messages.replaceChildren(...(c ? c.items : []));
    if (!c) {
      el.convTitle.textContent = "No room";
      el.convSub.textContent = "";
      el.messages.dataset.empty = "Join a room to start chatting.";
      el.field.placeholder = "Join a room first";
    } else if (c.kind === "room") {
      el.convTitle.textContent = `#${c.name}`;
      el.messages.dataset.empty = `No messages in #${c.name} yet. Say hi!`;
      el.field.placeholder = `Message #${c.name}`;
    } else {
      el.convTitle.textContent = `@${c.peer.nick}`;
      el.messages.dataset.empty = `Only you and ${c.peer.nick} see what is written here.`;
      el.field.placeholder = `Message @${c.peer.nick}`;
    }
    el.messages.dataset.conv = c ? c.key : "";
    el.messages.dataset.kind = c ? c.kind : "";
    el.messages.parentElement.dataset.kind = c ? c.kind : "";
    renderMembers();
    scrollToBottom(true);
    updateSendable();
  }

  function updateTitle() {
    let n = 0;
    for (const c of convs.values()) n += c.unread;
    document.title = n ? `(${n}) wshub chat` : "wshub chat";
  }

  // ---------------------------------------------------------------------
  // Members

  function renderMembers() {
    const c = currentConv();
    const room = lastRoomKey ? convs.get(lastRoomKey) : null;
    if (c && c.kind === "dm") {
      el.convSub.textContent = c.online ? "direct message" : "direct message · offline";
    } else if (c) {
      const n = c.members.size;
      el.convSub.textContent = `${n} member${n === 1 ? "" : "s"}`;
    }
    el.membersRoom.textContent = room ? `#${room.name}` : "no room";
    const list = room ? [...room.members.entries()] : [];
    list.sort(([ia, na], [ib, nb]) => {
      if (ia === me.id) return -1;
      if (ib === me.id) return 1;
      return na.localeCompare(nb, undefined, { sensitivity: "base" }) || ia.localeCompare(ib);
    });
    el.memberCount.textContent = String(list.length);
    el.members.replaceChildren(...list.map(([id, nick]) => memberItem(id, nick)));
  }

  function memberItem(id, nick) {
    const li = make("li", "member");
    li.dataset.id = id;
    li.dataset.nick = nick;
    const self = id === me.id;
    if (self) li.dataset.self = "true";
    const b = make("button", "member-pick");
    b.type = "button";
    b.append(avatar({ id, nick }), make("span", "member-nick", nick));
    if (self) {
      b.append(make("span", "member-you", "you"));
      b.disabled = true;
      b.title = "This is you";
    } else {
      b.title = `Direct message ${nick}`;
      b.addEventListener("click", () => {
        const dm = ensureDm({ id, nick });
        dm.online = true;
        select(dm.key);
        el.field.focus();
      });
    }
    li.append(b);
    return li;
  }

  // Renames a client everywhere it appears (member lists, DM tabs).
  function renameEverywhere(member) {
    for (const c of convs.values()) {
      if (c.kind === "room" && c.members.has(member.id)) c.members.set(member.id, member.nick);
      if (c.kind === "dm" && c.peer.id === member.id) {
        c.peer.nick = member.nick;
        refreshTab(c);
      }
    }
    const c = currentConv();
    if (c && c.kind === "dm" && c.peer.id === member.id) renderCurrent();
    else renderMembers();
  }

  function setDmOnline(id, online) {
    const c = convs.get(dmKey(id));
    if (c && c.online !== online) {
      c.online = online;
      refreshTab(c);
      if (c.key === currentKey) renderMembers();
    }
  }

  // Someone who reconnects gets a new client id. When a member joins with
  // the nickname of a DM peer that went offline, carry the conversation
  // over to the new id so that replies reach them.
  function rebindDm(member) {
    if (convs.has(dmKey(member.id))) return;
    for (const c of convs.values()) {
      if (c.kind !== "dm" || c.online || c.peer.nick !== member.nick) continue;
      const wasCurrent = currentKey === c.key;
      convs.delete(c.key);
      c.key = dmKey(member.id);
      c.name = member.id;
      c.peer.id = member.id;
      c.online = true;
      c.tab.dataset.peer = member.id;
      convs.set(c.key, c);
      if (wasCurrent) currentKey = c.key;
      refreshTab(c);
      addLine(c, "info", `${member.nick} is back online.`);
      if (wasCurrent) renderMembers();
      return;
    }
  }

  function isOnlineAnywhere(id) {
    for (const c of convs.values()) {
      if (c.kind === "room" && c.members.has(id)) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------------
  // Message list

  function nearBottom() {
    const m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 60;
  }

  function scrollToBottom(force) {
    if (force || nearBottom()) el.messages.scrollTop = el.messages.scrollHeight;
  }

  function pushItem(c, li) {
    const onScreen = c.key === currentKey;
    const stick = onScreen && nearBottom();
    c.items.push(li);
    if (onScreen) el.messages.append(li);
    while (c.items.length > MAX_ITEMS) {
      const old = c.items.shift();
      old.remove();
    }
    if (stick) scrollToBottom(true);
  }

  function addLine(c, type, text, ts) {
    if (!c) return;
    const li = make("li", "line");
    li.dataset.type = type;
    li.dataset.id = "";
    li.dataset.own = "false";
    li.append(make("span", "line-text", text), timeEl(ts));
    pushItem(c, li);
  }

  function addInfoEverywhere(type, text, ts) {
    for (const c of convs.values()) if (c.kind === "room") addLine(c, type, text, ts);
  }

  // A chat or direct message bubble.
  function addBubble(c, m, type) {
    const from = isMember(m.from) ? m.from : { id: "", nick: "?" };
    const own = m.own === true;
    const li = make("li", `msg ${own ? "own" : "other"}${type === "direct" ? " direct" : ""}`);
    li.dataset.type = type;
    li.dataset.id = typeof m.id === "number" || typeof m.id === "string" ? String(m.id) : "";
    li.dataset.own = own ? "true" : "false";
    li.dataset.from = from.id;
    const ts = typeof m.timestamp === "number" ? m.timestamp : Date.now();
    li.dataset.ts = String(ts);

    const prev = c.items[c.items.length - 1];
    if (prev && prev.classList.contains("msg") && prev.dataset.from === from.id &&
        prev.dataset.type === type && ts - Number(prev.dataset.ts) < GROUP_MS) {
      li.classList.add("cont");
    }

    const meta = make("div", "meta");
    const who = make("span", "from", own ? `${from.nick} (you)` : from.nick);
    who.style.setProperty("--hue", String(hue(from.nick || from.id)));
    meta.append(who);
    if (type === "direct") {
      const to = isMember(m.to) ? m.to.nick : "?";
      meta.append(make("span", "dm-badge", own ? `direct to ${to}` : "direct to you"));
    }
    meta.append(timeEl(ts));
    const body = make("div", "body", typeof m.text === "string" ? m.text : "");
    if (!own) li.append(avatar(from));
    const bubble = make("div", "bubble");
    bubble.append(meta, body);
    li.append(bubble);
    pushItem(c, li);

    if (!own && c.key !== currentKey) {
      c.unread += 1;
      refreshTab(c);
      updateTitle();
    } else if (!own && document.hidden) {
      updateTitle();
    }
  }

  // A room message, live or from history; ids already shown are skipped so
  // that resume and history overlap never duplicate anything.
  function addRoomMessage(m) {
    if (!m || typeof m.room !== "string") return;
    const c = ensureRoom(m.room);
    if (typeof m.id === "number") {
      if (m.id <= c.lastId) return;
      c.lastId = m.id;
    }
    addBubble(c, m, "message");
  }

  function addHistory(c, list) {
    if (!Array.isArray(list)) return;
    for (const m of list) addRoomMessage({ room: c.name, ...m });
  }

  // The server's newest id is below ours: it is a new server process whose
  // history starts again at 1. Forget our ids and fetch what it holds.
  function checkLastId(c, lastId) {
    if (typeof lastId !== "number" || lastId >= c.lastId) return false;
    c.lastId = 0;
    addLine(c, "info", "The server was restarted; earlier messages are gone.");
    return true;
  }

  function setMembers(c, members) {
    c.members.clear();
    if (Array.isArray(members)) {
      for (const m of members) if (isMember(m)) c.members.set(m.id, m.nick);
    }
  }

  // ---------------------------------------------------------------------
  // Server messages

  const handlers = {
    welcome(msg) {
      me.id = msg.id;
      me.nick = msg.nick;
      if (document.activeElement !== el.nick) el.nick.value = me.nick || "";
      ready = true;
      attempt = 0;
      const names = Array.isArray(msg.rooms) ? msg.rooms.filter((r) => typeof r === "string") : [];
      if (typeof msg.room === "string" && !names.includes(msg.room)) names.unshift(msg.room);
      const previous = [...convs.values()].filter((c) => c.kind === "room" && c.joined);
      for (const c of convs.values()) if (c.kind === "room") c.joined = false;
      for (const name of names) ensureRoom(name).joined = true;
      if (typeof msg.room === "string") {
        const c = ensureRoom(msg.room);
        setMembers(c, msg.members);
        if (hadSession) addLine(c, "info", "Reconnected.", msg.timestamp);
        else addLine(c, "info", `Welcome, ${me.nick}! You are in #${c.name}.`, msg.timestamp);
        const reset = checkLastId(c, msg.last_id);
        addHistory(c, msg.history);
        if (reset) send({ type: "resume", room: c.name, after: 0 });
        if (!currentKey || !convs.has(currentKey)) select(c.key);
      }
      // Rooms this page was in before the connection dropped: resume each.
      if (hadSession) {
        for (const c of previous) {
          if (!c.joined) send({ type: "resume", room: c.name, after: c.lastId });
        }
      }
      hadSession = true;
      for (const c of convs.values()) if (c.kind === "dm") setDmOnline(c.peer.id, isOnlineAnywhere(c.peer.id));
      renderCurrent();
      renderStatus();
    },

    message(msg) {
      addRoomMessage(msg);
    },

    direct(msg) {
      if (!isMember(msg.from) || !isMember(msg.to)) return;
      const peer = msg.own === true ? msg.to : msg.from;
      const c = ensureDm(peer);
      c.online = true;
      refreshTab(c);
      addBubble(c, msg, "direct");
    },

    join(msg) {
      if (typeof msg.room !== "string" || !isMember(msg.member)) return;
      const c = ensureRoom(msg.room);
      c.members.set(msg.member.id, msg.member.nick);
      addLine(c, "join", `${msg.member.nick} joined #${c.name}`, msg.timestamp);
      setDmOnline(msg.member.id, true);
      rebindDm(msg.member);
      if (lastRoomKey === c.key || currentKey === c.key) renderMembers();
    },

    leave(msg) {
      if (typeof msg.room !== "string" || !isMember(msg.member)) return;
      const c = convs.get(roomKey(msg.room));
      if (!c) return;
      c.members.delete(msg.member.id);
      addLine(c, "leave", `${msg.member.nick} left #${c.name}`, msg.timestamp);
      setDmOnline(msg.member.id, isOnlineAnywhere(msg.member.id));
      if (lastRoomKey === c.key || currentKey === c.key) renderMembers();
    },

    joined(msg) {
      if (typeof msg.room !== "string") return;
      const c = ensureRoom(msg.room);
      const wasJoined = c.joined;
      c.joined = true;
      setMembers(c, msg.members);
      if (!wasJoined && pendingJoins.has(c.name)) addLine(c, "info", `You joined #${c.name}.`, msg.timestamp);
      const reset = checkLastId(c, msg.last_id);
      addHistory(c, msg.history);
      if (reset) send({ type: "resume", room: c.name, after: 0 });
      if (pendingJoins.delete(c.name)) select(c.key);
      else if (c.key === currentKey || c.key === lastRoomKey) renderMembers();
    },

    left(msg) {
      if (typeof msg.room !== "string") return;
      const c = convs.get(roomKey(msg.room));
      if (c) removeConv(c);
    },

    nick(msg) {
      if (!isMember(msg.member)) return;
      const old = typeof msg.old === "string" ? msg.old : "?";
      const self = msg.member.id === me.id;
      if (typeof msg.room === "string") {
        const c = convs.get(roomKey(msg.room));
        if (c && !self) addLine(c, "nick", `${old} is now known as ${msg.member.nick}`, msg.timestamp);
      } else if (self) {
        me.nick = msg.member.nick;
        if (document.activeElement !== el.nick || pendingNick !== null) el.nick.value = me.nick;
        pendingNick = null;
        storageSet(NICK_KEY, me.nick);
        addInfoEverywhere("nick", `You are now known as ${me.nick}`, msg.timestamp);
      }
      renameEverywhere(msg.member);
    },

    history(msg) {
      if (typeof msg.room !== "string") return;
      const c = ensureRoom(msg.room);
      addHistory(c, msg.messages);
    },

    gap(msg) {
      if (typeof msg.room !== "string") return;
      const c = ensureRoom(msg.room);
      const oldest = typeof msg.oldest === "number" ? msg.oldest : "?";
      addLine(c, "gap",
        `Some messages were missed while you were away; the server only keeps them from #${oldest} on.`,
        msg.timestamp);
    },

    error(msg) {
      const code = typeof msg.code === "string" ? msg.code : "error";
      const text = typeof msg.text === "string" && msg.text ? msg.text : code;
      if (code === "bad_nick") {
        if (pendingNick === null) storageSet(NICK_KEY, null); // the saved one was refused
        pendingNick = null;
        el.nick.value = me.nick || "";
      }
      if (code === "bad_room" || code === "too_many_rooms") pendingJoins.clear();
      const c = currentConv();
      if (code === "unknown_client" && c && c.kind === "dm") setDmOnline(c.peer.id, false);
      const target = c || [...convs.values()][0];
      if (target) addLine(target, "error", `⚠ ${text}`, msg.timestamp);
    },
  };

  function onServerMessage(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      const c = currentConv();
      if (c) addLine(c, "info", String(data));
      return;
    }
    if (!msg || typeof msg !== "object") return;
    const handler = Object.prototype.hasOwnProperty.call(handlers, msg.type) ? handlers[msg.type] : null;
    if (handler) {
      handler(msg);
    } else if (typeof msg.text === "string") {
      const c = currentConv();
      if (c) addLine(c, "info", msg.text, msg.timestamp);
    }
  }

  // ---------------------------------------------------------------------
  // Connection: status, backoff, resume

  function send(obj) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(obj));
    return true;
  }

  function renderStatus() {
    const rs = socket ? socket.readyState : WebSocket.CLOSED;
    let state = STATES[rs] || "closed";
    let text = state;
    if (rs === WebSocket.OPEN && !ready) text = "open · joining…";
    if (rs === WebSocket.CLOSED) {
      if (waitingOnline) {
        text = "closed · offline, waiting for the network";
      } else if (retryAt) {
        const s = Math.max(1, Math.ceil((retryAt - Date.now()) / 1000));
        text = `closed · reconnecting in ${s}s`;
        state = "reconnecting";
      }
    }
    if (el.status.textContent !== text) el.status.textContent = text;
    el.status.dataset.state = state;
    el.status.dataset.readyState = String(rs);
    el.retry.hidden = rs !== WebSocket.CLOSED || leaving;
    updateSendable();
  }

  function updateSendable() {
    const c = currentConv();
    el.send.disabled = !(ready && socket && socket.readyState === WebSocket.OPEN && c &&
      (c.kind === "dm" || c.joined));
  }

  function socketUrl() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const q = new URLSearchParams();
    const nick = storageGet(NICK_KEY);
    if (nick) q.set("nick", nick);
    // After a drop, reopen straight into the room on screen, resuming it.
    const room = lastRoomKey ? convs.get(lastRoomKey) : null;
    if (hadSession && room && room.joined) {
      q.set("room", room.name);
      q.set("after", String(room.lastId));
    }
    const qs = q.toString();
    return `${scheme}://${location.host}/${qs ? `?${qs}` : ""}`;
  }

  function connect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    retryAt = 0;
    waitingOnline = false;
    if (leaving) return;
    let ws;
    try {
      ws = new WebSocket(socketUrl());
    } catch {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ready = false;
    renderStatus();
    const openTimer = setTimeout(() => {
      if (ws.readyState === WebSocket.CONNECTING) ws.close();
    }, CONNECT_TIMEOUT_MS);

    ws.addEventListener("open", () => {
      clearTimeout(openTimer);
      if (socket === ws) renderStatus();
    });
    ws.addEventListener("message", (event) => {
      if (socket !== ws) return;
      if (typeof event.data === "string") onServerMessage(event.data);
    });
    ws.addEventListener("close", (event) => {
      clearTimeout(openTimer);
      if (socket !== ws) return;
      const hadWelcome = ready;
      ready = false;
      if (hadWelcome) {
        const why = event.reason ? `: ${event.reason}` : "";
        const c = currentConv();
        if (c) addLine(c, "info", `Disconnected (code ${event.code}${why}).`);
      }
      scheduleReconnect();
    });
    // "error" is always followed by "close"; the close handler does the work.
  }

  // Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 10 s, each
  // drawn from [half, full] of the step so that many clients spread out.
  function scheduleReconnect() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    retryAt = 0;
    if (leaving) { renderStatus(); return; }
    if (navigator.onLine === false) {
      waitingOnline = true;
      renderStatus();
      return;
    }
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    const delay = Math.round(step / 2 + Math.random() * (step / 2));
    attempt += 1;
    retryAt = Date.now() + delay;
    retryTimer = setTimeout(connect, delay);
    renderStatus();
  }

  function reconnectNow() {
    if (socket && socket.readyState !== WebSocket.CLOSED) return;
    attempt = 0;
    connect();
  }

  // ---------------------------------------------------------------------
  // User actions

  function submitText() {
    const c = currentConv();
    const text = el.field.value;
    if (!c || !text.trim() || el.send.disabled) return;
    if (utf8Length(text) > MAX_TEXT_BYTES) {
      addLine(c, "error", `⚠ That message is too long (over ${MAX_TEXT_BYTES} bytes).`);
      return;
    }
    const ok = c.kind === "room"
      ? send({ type: "message", room: c.name, text })
      : send({ type: "message", to: c.peer.id, text });
    if (!ok) return;
    el.field.value = "";
    autosize();
    el.field.focus();
  }

  function submitNick() {
    const name = el.nick.value.trim();
    if (!name || name === me.nick || name === pendingNick) {
      if (!name) el.nick.value = me.nick || "";
      return;
    }
    if (!ready) {
      // Not connected: remember it; it is sent as ?nick= on the next connect.
      storageSet(NICK_KEY, name);
      return;
    }
    pendingNick = name;
    send({ type: "nick", name });
  }

  function submitJoin() {
    const name = el.roomInput.value.trim().replace(/^#/, "");
    if (!name) return;
    if (!ROOM_RE.test(name)) {
      const c = currentConv();
      if (c) addLine(c, "error", "⚠ Room names are 1–64 letters, digits, dots, dashes or underscores.");
      return;
    }
    el.roomInput.value = "";
    const existing = convs.get(roomKey(name));
    if (existing && existing.joined) {
      select(existing.key);
      return;
    }
    pendingJoins.add(name);
    send({ type: "join", room: name });
  }

  function autosize() {
    el.field.style.height = "auto";
    el.field.style.height = `${Math.min(el.field.scrollHeight, 160)}px`;
  }

  el.sendForm.addEventListener("submit", (e) => {
    e.preventDefault();
    submitText();
  });
  el.field.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submitText();
    }
  });
  el.field.addEventListener("input", autosize);

  el.nickForm.addEventListener("submit", (e) => {
    e.preventDefault();
    submitNick();
    el.nick.blur();
  });
  el.nick.addEventListener("change", submitNick);
  el.nick.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      el.nick.value = me.nick || "";
      el.nick.blur();
    }
  });

  el.joinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    submitJoin();
  });

  el.membersToggle.addEventListener("click", () => {
    const open = el.app.dataset.panel !== "members";
    el.app.dataset.panel = open ? "members" : "";
    el.membersToggle.setAttribute("aria-expanded", String(open));
  });
  const hidePanel = () => {
    if (el.app.dataset.panel) {
      el.app.dataset.panel = "";
      el.membersToggle.setAttribute("aria-expanded", "false");
    }
  };
  el.messages.addEventListener("click", hidePanel);
  $("members-close").addEventListener("click", hidePanel);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") hidePanel();
  });

  el.retry.addEventListener("click", reconnectNow);
  window.addEventListener("online", () => {
    if (waitingOnline || retryTimer) reconnectNow();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && retryTimer) reconnectNow();
  });
  window.addEventListener("pagehide", () => {
    leaving = true;
    clearTimeout(retryTimer);
  });
  window.addEventListener("pageshow", (e) => {
    if (e.persisted) {
      leaving = false;
      reconnectNow();
    }
  });

  // The countdown and readyState shown in #status.
  setInterval(renderStatus, 250);

  // For debugging from the console (and the end-to-end test).
  window.wshubChat = Object.freeze({
    get socket() { return socket; },
    get me() { return { ...me }; },
    reconnectNow,
  });

  el.nick.value = storageGet(NICK_KEY) || "";
  renderCurrent();
  connect();
})();
