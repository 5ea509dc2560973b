// wshub chat page: rooms, direct messages, presence and resume over one
// WebSocket, speaking the protocol in docs/PROTOCOL.md. When the WebSocket
// cannot get through (the upgrade fails or the socket closes before its
// welcome twice in a row while plain HTTP still answers) the page falls back
// to the HTTP transports of the same document: Server-Sent Events for reading
// (one stream per room) and POST /messages for writing, and, when event
// streams do not get through either, long polling. `?transport=ws|sse|poll`
// on the page URL forces one. Plain JS, no build step, no framework. Every
// piece of text that comes from a user or the server is put on the page with
// textContent, never parsed as markup.
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

  // HTTP transports (see "HTTP transports" in docs/PROTOCOL.md).
  const TRANSPORTS = { ws: "WebSocket", sse: "Server-Sent Events", poll: "long polling" };
  const FALLBACK_AFTER = 2;        // failed WebSockets (or streams) in a row before falling back
  const LONG_POLL_WAIT_S = 25;
  const SHORT_POLL_MS = 5000;      // rooms beyond MAX_LIVE are polled this often
  // A browser opens at most 6 HTTP/1.1 connections to one host, shared by
  // its tabs. Every event stream or long poll holds one, so only the first
  // MAX_LIVE rooms get one; the others are polled (wait=0) every few
  // seconds, which leaves connections for POST /messages and other tabs.
  const MAX_LIVE = 3;
  const TOKEN_RE = /^[0-9a-f]{32}$/;
  const SEEN_MAX = 200;            // remembered room-less stream events (de-duplication)
  // Server messages a room's event stream can carry (its `event:` names).
  const STREAM_TYPES = ["welcome", "message", "direct", "join", "leave", "joined", "left",
    "nick", "history", "gap", "error"];

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
    transport: $("transport"),
    membersNote: $("members-note"),
    membersHint: $("members-hint"),
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

  // Which transport: ?transport= forces one; otherwise the WebSocket, until
  // it fails FALLBACK_AFTER times in a row while HTTP answers.
  const forced = (() => {
    const t = new URLSearchParams(location.search).get("transport");
    return t && Object.prototype.hasOwnProperty.call(TRANSPORTS, t) ? t : null;
  })();
  const hasEventSource = typeof EventSource === "function";
  let mode = forced === "sse" && !hasEventSource ? "poll" : forced || "ws";
  let modeWhy = forced ? "chosen with ?transport= on the page address" : "";
  let wsFailures = 0;            // WebSockets that failed before welcome, HTTP reachable
  let sseFailures = 0;           // event streams that failed before their welcome

  // HTTP session (mode "sse" or "poll"). `ready` above means: the session
  // is established (handshake answered) for these modes too.
  let sessionToken = null;       // X-Wshub-Session of the last response
  let sessionId = null;          // our client id in it, once a welcome said so
  let httpGen = 0;               // bumped by every (re)connect; stale callbacks compare
  let handshaking = false;
  let httpUp = false;            // poll mode: the last poll got an answer
  let renickNeeded = false;      // the server replaced our session: send the nickname again
  const readers = new Map();     // room name -> its reader (event stream or poll loop)
  const seenEvents = new Set();  // room-less events already handled (they come on every stream)
  let postChain = Promise.resolve(); // POSTs go one at a time, in order

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
      if (mode === "ws" ? socket && ready : ready) send({ type: "leave", room: c.name });
      else removeConv(c); // not connected: just forget it; it is not resumed
    } else {
      removeConv(c);
    }
  }

  function removeConv(c) {
    convs.delete(c.key);
    if (c.kind === "room") stopReader(c.name, true);
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
    const known = !room || presenceKnown(room);
    if (c && c.kind === "dm") {
      el.convSub.textContent = c.online ? "direct message" : "direct message · offline";
    } else if (c && !presenceKnown(c)) {
      el.convSub.textContent = "members not shown while polling";
    } else if (c) {
      const n = c.members.size;
      el.convSub.textContent = `${n} member${n === 1 ? "" : "s"}`;
    }
    el.membersRoom.textContent = room ? `#${room.name}` : "no room";
    if (el.membersNote) el.membersNote.hidden = known;
    if (el.membersHint) el.membersHint.hidden = !known;
    // A polled room gets no presence notices: only this user is listed
    // (once known), and the count says it does not know.
    const list = !room ? [] : known ? [...room.members.entries()]
      : me.id !== null ? [[me.id, me.nick || "you"]] : [];
    list.sort(([ia, na], [ib, nb]) => {
      if (ia === me.id) return -1;
      if (ib === me.id) return 1;
      return na.localeCompare(nb, undefined, { sensitivity: "base" }) || ia.localeCompare(ib);
    });
    el.memberCount.textContent = known ? String(list.length) : "?";
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
      wsFailures = 0;
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
    if (mode !== "ws") return httpSend(obj);
    if (!socket || socket.readyState !== WebSocket.OPEN) return false;
    socket.send(JSON.stringify(obj));
    return true;
  }

  function renderStatus() {
    if (mode !== "ws") { renderHttpStatus(); return; }
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
    const up = mode === "ws" ? ready && socket && socket.readyState === WebSocket.OPEN : ready && httpOpen();
    el.send.disabled = !(up && c && (c.kind === "dm" || c.joined));
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
    if (mode !== "ws") { httpConnect(); return; }
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
      if (!hadWelcome) noteWsFailure(ws);
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
    if (mode !== "ws") { httpReconnectNow(); return; }
    if (socket && socket.readyState !== WebSocket.CLOSED) return;
    attempt = 0;
    connect();
  }

  // ---------------------------------------------------------------------
  // Which transport: the label, falling back

  function renderTransport() {
    el.transport.textContent = TRANSPORTS[mode];
    el.transport.dataset.transport = mode;
    el.transport.title = modeWhy ? `${TRANSPORTS[mode]}: ${modeWhy}` : "How this page talks to the server";
  }

  // Whether the server answers plain HTTP (any status below 500): then a
  // WebSocket that failed there was refused or broken on the way (a proxy,
  // a firewall) rather than the server being down or restarting.
  async function probeHttp() {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), CONNECT_TIMEOUT_MS);
    try {
      const res = await fetch(location.pathname || "/", {
        method: "HEAD", cache: "no-store", credentials: "same-origin", signal: ctrl.signal,
      });
      return res.status < 500;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  }

  // A WebSocket closed before its welcome. It counts only while the server
  // answers HTTP (a server that is down is waited for on the WebSocket, as
  // always); FALLBACK_AFTER of them in a row switch to the event streams.
  function noteWsFailure(ws) {
    if (forced) return;
    probeHttp().then((reachable) => {
      if (mode !== "ws" || leaving) return;
      if (!reachable) {
        wsFailures = 0;
        return;
      }
      wsFailures += 1;
      // socket !== ws: a new attempt is already under way; its own failure
      // (if any) switches.
      if (wsFailures >= FALLBACK_AFTER && socket === ws) {
        switchTransport(hasEventSource ? "sse" : "poll",
          `the WebSocket failed ${wsFailures} times in a row`);
      }
    });
  }

  function switchTransport(next, why) {
    if (mode === next) return;
    const from = TRANSPORTS[mode];
    mode = next;
    modeWhy = why;
    clearTimeout(retryTimer);
    retryTimer = 0;
    retryAt = 0;
    if (socket) {
      const old = socket;
      socket = null;
      try { old.close(); } catch { /* closed already */ }
    }
    stopAllReaders();
    ready = false;
    attempt = 0;
    renderTransport();
    const c = currentConv();
    if (c) addLine(c, "info", `${from} is not getting through (${why}); using ${TRANSPORTS[next]} instead.`);
    connect();
  }

  // ---------------------------------------------------------------------
  // HTTP transports (mode "sse" or "poll"): session, requests, sending
  //
  // The page is one session (docs/PROTOCOL.md, "Sessions"). It reads every
  // room it is in with a reader: an EventSource on /events?room=R (mode
  // "sse"; the browser reconnects it by itself and resumes with
  // Last-Event-ID), or a loop of GET /poll?room=R&after=ID&wait=25 (mode
  // "poll", and rooms beyond MAX_LIVE in mode "sse"). It writes with
  // POST /messages, one request at a time so that messages keep their order.
  //
  // What polling cannot do: a poll returns only the room's messages, so a
  // polled room has no member list or join/leave/nick notices (the page
  // lists only this user and says so), direct messages to this user never
  // arrive, and our own id and server-side nickname are learnt only from
  // our own messages. Leaving the page does not end the session at once: it
  // expires on the server (60 s by default), with the usual leave notices.

  // One request with the session token as X-Wshub-Session (the cookie goes
  // along too). Resolves to { status, body (parsed JSON or null), replaced }
  // or rejects (no answer, or none within timeoutMs). `replaced`: we sent a
  // token and got another back: the server had forgotten ours (a restart,
  // or it expired) and made a new session.
  async function httpRequest(url, { method = "GET", body, timeoutMs = CONNECT_TIMEOUT_MS, reader = null } = {}) {
    const ctrl = new AbortController();
    const timer = setTimeout(() => ctrl.abort(), timeoutMs);
    if (reader) reader.ctrl = ctrl;
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const sent = sessionToken;
    if (sent) headers["X-Wshub-Session"] = sent;
    try {
      const res = await fetch(url, {
        method, headers, body, credentials: "same-origin", cache: "no-store", signal: ctrl.signal,
      });
      let data = null;
      if (/json/i.test(res.headers.get("Content-Type") || "")) {
        try { data = await res.json(); } catch { data = null; }
      }
      const token = res.headers.get("X-Wshub-Session");
      let replaced = false;
      // An answer to a token that has been replaced meanwhile says nothing
      // about the current session.
      if (token && TOKEN_RE.test(token) && sessionToken === sent) {
        replaced = sent !== null && token !== sent;
        sessionToken = token;
      }
      return { status: res.status, body: data, replaced };
    } finally {
      clearTimeout(timer);
      if (reader && reader.ctrl === ctrl) reader.ctrl = null;
    }
  }

  function httpSend(obj) {
    if (!ready) return false;
    postChain = postChain.then(() => postMessage(obj)).catch(() => { /* reported in postMessage */ });
    return true;
  }

  async function postMessage(obj) {
    let out = null;
    try {
      out = await httpRequest("/messages", { method: "POST", body: JSON.stringify(obj) });
    } catch {
      out = null;
    }
    if (!out || out.status >= 500 || out.status === 404 || out.status === 405) {
      notSent(obj, out ? `the server answered HTTP ${out.status}` : "the server did not answer");
      return;
    }
    if (out.status === 202) {
      accepted(obj);
    } else {
      // 400 / 413 / 429: the error object a WebSocket client would get.
      const body = out.body;
      handlers.error(body && typeof body === "object" && body.type === "error" ? body : {
        type: "error",
        code: out.status === 413 ? "text_too_long" : "http_error",
        text: out.status === 413 ? "That message is too large." : `The server refused it (HTTP ${out.status}).`,
      });
    }
    if (out.replaced) sessionLost();
  }

  function notSent(obj, why) {
    const c = currentConv();
    if (c) addLine(c, "error", `⚠ Not sent: ${why}.`);
    if (obj.type === "message" && typeof obj.text === "string" && !el.field.value) {
      el.field.value = obj.text; // give the text back
      autosize();
    }
    if (obj.type === "nick") {
      pendingNick = null;
      el.nick.value = me.nick || "";
    }
    if (obj.type === "join") pendingJoins.delete(obj.room);
  }

  // What a 202 means for the page. The replies a WebSocket would get
  // (joined, left, nick, history) come on the event streams, if any.
  function accepted(obj) {
    if (obj.type === "join" && ready) {
      const c = ensureRoom(obj.room);
      if (!readers.has(c.name)) startReader(c);
    } else if (obj.type === "leave") {
      // The stream that would carry `left` is closed with the room.
      const c = convs.get(roomKey(obj.room));
      if (c) removeConv(c);
    } else if (obj.type === "nick" && mode === "poll") {
      applyOwnNick(obj.name);
    } else if (obj.type === "message" && typeof obj.to === "string" && mode === "poll") {
      // A poll never returns direct messages: show our own copy ourselves.
      const dm = convs.get(dmKey(obj.to));
      handlers.direct({
        type: "direct", own: true, text: obj.text, timestamp: Date.now(),
        from: { id: me.id || "", nick: me.nick || "you" },
        to: { id: obj.to, nick: dm ? dm.peer.nick : obj.to },
      });
    }
  }

  // Polling sees no `nick` reply: a 202 is the confirmation.
  function applyOwnNick(name) {
    const old = me.nick;
    me.nick = name;
    if (document.activeElement !== el.nick || pendingNick !== null) el.nick.value = name;
    pendingNick = null;
    storageSet(NICK_KEY, name);
    if (old !== name) addInfoEverywhere("nick", `You are now known as ${name}`);
    if (me.id !== null) renameEverywhere({ id: me.id, nick: name });
    else renderMembers();
  }

  // The server no longer knows this page's session (it restarted, or the
  // session expired while the page could not reach it): start again with
  // the rooms and message ids the page has; the nickname is sent again.
  function sessionLost() {
    const c = currentConv();
    if (ready && c) addLine(c, "info", "The server had lost this page's session; joining again.");
    renickNeeded = true;
    stopAllReaders();
    ready = false;
    sessionId = null;
    if (mode === "poll") {
      me.id = null;
      me.nick = null;
    }
    scheduleReconnect();
  }

  // ---------------------------------------------------------------------
  // HTTP transports: connecting

  // The rooms to (re)open: the one whose members are shown first, then the
  // others this page is in; the lobby at first.
  function wantedRooms() {
    const names = [];
    const cur = lastRoomKey ? convs.get(lastRoomKey) : null;
    if (cur && cur.joined) names.push(cur.name);
    for (const c of convs.values()) {
      if (c.kind === "room" && c.joined && !names.includes(c.name)) names.push(c.name);
    }
    if (!names.length) names.push("lobby");
    return names;
  }

  // The handshake is a plain poll (wait=0) of the first room: it makes or
  // finds the session (nick= names a new one), joins the room and gives the
  // token that every later request carries, so that the event streams
  // opened next all belong to this one session.
  function httpConnect() {
    httpGen += 1;
    const gen = httpGen;
    stopAllReaders();
    ready = false;
    httpUp = false;
    handshaking = true;
    renderStatus();
    const rooms = wantedRooms();
    const q = new URLSearchParams({ room: rooms[0], wait: "0" });
    const nick = storageGet(NICK_KEY);
    if (nick) q.set("nick", nick);
    const sent = sessionToken;
    httpRequest(`/poll?${q}`).then((out) => {
      if (gen !== httpGen) return;
      handshaking = false;
      if (out.status !== 200 || !out.body || typeof out.body !== "object") {
        httpConnectFailed();
        return;
      }
      if (!sent || out.replaced) {
        // A new session, or one this page has not seen (the cookie's).
        sessionId = null;
        if (mode === "poll") {
          me.id = null;
          me.nick = nick;
        }
      }
      httpOnline(rooms, out.body);
    }, () => {
      if (gen !== httpGen) return;
      handshaking = false;
      httpConnectFailed();
    });
  }

  function httpConnectFailed() {
    stopAllReaders();
    ready = false;
    scheduleReconnect();
  }

  function httpOnline(rooms, body) {
    const c = ensureRoom(rooms[0]);
    if (mode === "sse") {
      // Ready with the first welcome (streamWelcome).
      for (const name of rooms) startReader(ensureRoom(name));
      renderStatus();
      return;
    }
    ready = true;
    httpUp = true;
    attempt = 0;
    if (hadSession) {
      addLine(c, "info", "Reconnected.");
    } else {
      addLine(c, "info", me.nick ? `Welcome, ${me.nick}! You are in #${c.name}.` : `Welcome! You are in #${c.name}.`);
      addLine(c, "info", "This page polls for messages: it cannot see who is online, " +
        "and direct messages to you do not reach it.");
    }
    applyPoll(c, body, true);
    if (!currentKey || !convs.has(currentKey)) select(c.key);
    startReader(c, { first: false });
    for (const name of rooms.slice(1)) startReader(ensureRoom(name));
    hadSession = true;
    afterReady();
    renderCurrent();
    renderStatus();
  }

  function afterReady() {
    if (!renickNeeded) return;
    renickNeeded = false;
    const nick = storageGet(NICK_KEY);
    if (nick && nick !== me.nick) {
      pendingNick = nick;
      httpSend({ type: "nick", name: nick });
    }
  }

  function httpOpen() {
    if (mode === "poll") return httpUp;
    for (const r of readers.values()) {
      if (r.kind === "sse" && r.welcomes > 0 && r.es.readyState === EventSource.OPEN) return true;
    }
    return false;
  }

  function nextReaderRetry() {
    let at = 0;
    for (const r of readers.values()) if (r.retryAt && (!at || r.retryAt < at)) at = r.retryAt;
    return at;
  }

  function renderHttpStatus() {
    let state = "connecting";
    let text = "connecting";
    let rs = 0;
    const at = retryAt || nextReaderRetry();
    if (ready && httpOpen()) {
      state = "open";
      text = "open";
      rs = 1;
    } else if (waitingOnline) {
      state = "closed";
      text = "closed · offline, waiting for the network";
      rs = 3;
    } else if (at) {
      const s = Math.max(1, Math.ceil((at - Date.now()) / 1000));
      state = "reconnecting";
      text = `closed · reconnecting in ${s}s`;
      rs = 3;
    } else if (ready) {
      // Event streams the browser is reconnecting by itself.
      state = "reconnecting";
      text = "closed · reconnecting";
    }
    if (el.status.textContent !== text) el.status.textContent = text;
    el.status.dataset.state = state;
    el.status.dataset.readyState = String(rs);
    el.retry.hidden = !(rs === 3 || state === "reconnecting") || leaving;
    updateSendable();
  }

  function httpReconnectNow() {
    waitingOnline = false;
    if (handshaking || leaving) return;
    if (!ready || retryTimer || !readers.size) {
      attempt = 0;
      connect();
      return;
    }
    for (const r of [...readers.values()]) {
      const c = convs.get(roomKey(r.room));
      if (!c) continue;
      if (r.kind === "wait" || (r.kind === "sse" && r.es.readyState !== EventSource.OPEN)) {
        startReader(c);
      } else if (r.kind === "poll" && r.failures > 0 && !r.ctrl) {
        clearTimeout(r.timer);
        pollStep(r);
      }
    }
    renderStatus();
  }

  // ---------------------------------------------------------------------
  // HTTP transports: readers

  function presenceKnown(c) {
    if (mode === "ws") return true;
    const r = readers.get(c.name);
    return mode === "sse" && !(r && r.kind === "poll");
  }

  function liveCount() {
    let n = 0;
    for (const r of readers.values()) if (r.live) n += 1;
    return n;
  }

  // Starts reading room c: an event stream while a live slot is free in
  // mode "sse", else a poll loop (long polls while a slot is free).
  // `after`: where a stream resumes (null: the last 50 messages); `first`:
  // the first poll asks without after=, to learn the room's newest id.
  function startReader(c, { after = c.lastId > 0 ? c.lastId : null, first = true } = {}) {
    stopReader(c.name);
    const live = liveCount() < MAX_LIVE;
    if (mode === "sse" && live) openStream(c, after);
    else startPoll(c, live && mode === "poll", first);
  }

  function stopReader(name, promote = false) {
    const r = readers.get(name);
    if (!r) return;
    readers.delete(name);
    clearTimeout(r.timer);
    if (r.es) r.es.close();
    if (r.ctrl) r.ctrl.abort();
    if (promote) promoteReaders();
  }

  function stopAllReaders() {
    for (const name of [...readers.keys()]) stopReader(name);
  }

  // A live slot came free: give it to a room that was only polled.
  function promoteReaders() {
    if (mode === "ws") return;
    for (const r of [...readers.values()]) {
      if (liveCount() >= MAX_LIVE) return;
      if (r.live || r.kind !== "poll") continue;
      const c = convs.get(roomKey(r.room));
      if (!c) continue;
      if (mode === "sse") {
        startReader(c);
      } else {
        r.live = true;
        if (!r.ctrl && !r.failures) {
          clearTimeout(r.timer);
          pollStep(r);
        }
      }
    }
  }

  function backoffDelay(failures) {
    const step = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.max(0, failures - 1));
    return Math.round(step / 2 + Math.random() * (step / 2));
  }

  function openStream(c, after) {
    const q = new URLSearchParams({ room: c.name });
    if (typeof after === "number") q.set("after", String(after));
    // An EventSource cannot send headers: the token goes in the query (the
    // cookie goes along too).
    if (sessionToken) q.set("session", sessionToken);
    const r = { kind: "sse", live: true, room: c.name, es: new EventSource(`/events?${q}`),
                welcomes: 0, timer: 0, retryAt: 0, held: null };
    readers.set(c.name, r);
    for (const type of STREAM_TYPES) r.es.addEventListener(type, (e) => onStreamEvent(r, type, e));
    r.es.addEventListener("open", () => {
      if (readers.get(r.room) !== r) return;
      armWelcomeTimer(r);
      renderStatus();
    });
    armWelcomeTimer(r);
    renderMembers();
  }

  // A stream that does not bring its welcome (a proxy that buffers it, a
  // server that does not answer) is as good as a failed one.
  function armWelcomeTimer(r) {
    clearTimeout(r.timer);
    r.timer = setTimeout(() => {
      if (readers.get(r.room) === r) streamFailed(r);
    }, CONNECT_TIMEOUT_MS);
  }

  function onStreamEvent(r, type, e) {
    if (readers.get(r.room) !== r) return;
    // The server's `event: error` is a MessageEvent with data; a plain
    // Event named "error" is the connection failing.
    if (type === "error" && typeof e.data !== "string") {
      onStreamError(r);
      return;
    }
    if (type === "welcome") clearTimeout(r.timer);
    if (type === "welcome" && r.welcomes > 0) {
      // The browser reconnected this stream by itself: hold what it brings
      // until we know it is still our session (checkStreamSession).
      r.held = [];
      checkStreamSession(r);
    }
    if (r.held) r.held.push([type, e.data]);
    else streamEvent(r, type, e.data);
  }

  function streamEvent(r, type, data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    if (type === "welcome") {
      streamWelcome(r, msg);
      return;
    }
    // What concerns no room (direct messages, our own nick, errors) comes
    // on every stream of the session: handle it once.
    if (typeof msg.room !== "string") {
      if (seenEvents.has(data)) return;
      seenEvents.add(data);
      if (seenEvents.size > SEEN_MAX) seenEvents.delete(seenEvents.values().next().value);
    }
    onServerMessage(data);
  }

  // The browser reconnected a stream by itself, with the session token of
  // its URL. If the server had lost that session (a restart, where client
  // ids start again so the welcome's id may even be the old one), the
  // stream now belongs to a new session, whose token the browser got in the
  // cookie: a request with only the cookie tells. Until it answers, the
  // stream's events are held (a welcome after a restart would otherwise
  // open streams with the old token, each making one more session).
  async function checkStreamSession(r) {
    const gen = httpGen;
    const sent = sessionToken;
    const c = convs.get(roomKey(r.room));
    let token = null;
    if (sent && c) {
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), CONNECT_TIMEOUT_MS);
      try {
        const q = new URLSearchParams({ room: r.room, wait: "0", after: String(c.lastId) });
        const res = await fetch(`/poll?${q}`, { credentials: "same-origin", cache: "no-store", signal: ctrl.signal });
        token = res.headers.get("X-Wshub-Session");
      } catch {
        /* no answer: go on with the stream; its own errors say the rest */
      } finally {
        clearTimeout(timer);
      }
    }
    if (gen !== httpGen || readers.get(r.room) !== r) return;
    if (sessionToken === sent && token && TOKEN_RE.test(token) && token !== sent) {
      sessionToken = token; // the stream's session: carry on with that one
      sessionLost();
      return;
    }
    const held = r.held || [];
    r.held = null;
    for (const [type, data] of held) {
      if (readers.get(r.room) !== r) return;
      streamEvent(r, type, data);
    }
  }

  function onStreamError(r) {
    clearTimeout(r.timer);
    if (r.es.readyState === EventSource.CLOSED) {
      streamFailed(r);
      return;
    }
    // CONNECTING: the browser reconnects by itself, sending Last-Event-ID
    // (the id of the last room message it got), and the server resumes.
    renderStatus();
  }

  // The stream is closed for good (an error status, no welcome in time).
  function streamFailed(r) {
    const c = convs.get(roomKey(r.room));
    stopReader(r.room);
    if (!r.welcomes) {
      sseFailures += 1;
      if (!forced && sseFailures >= FALLBACK_AFTER) {
        switchTransport("poll", `event streams failed ${sseFailures} times in a row`);
        return;
      }
    }
    if (!ready) {
      httpConnectFailed();
      return;
    }
    if (!c) return;
    // The session is fine (other streams, POSTs): reopen this one later.
    c.readFailures = (c.readFailures || 0) + 1;
    const delay = backoffDelay(c.readFailures);
    const w = { kind: "wait", live: true, room: c.name, timer: 0, retryAt: Date.now() + delay };
    readers.set(c.name, w);
    w.timer = setTimeout(() => {
      if (readers.get(c.name) === w) startReader(c);
    }, delay);
    renderStatus();
  }

  function streamWelcome(r, msg) {
    if (typeof msg.id !== "string" || typeof msg.room !== "string") return;
    clearTimeout(r.timer);
    if (sessionId !== null && msg.id !== sessionId) {
      // This stream was given a new session: the server lost ours. The
      // new one is in the cookie now; the handshake picks it up.
      sessionToken = null;
      sessionLost();
      return;
    }
    const firstWelcome = !ready;
    r.welcomes += 1;
    sseFailures = 0;
    sessionId = msg.id;
    me.id = msg.id;
    if (typeof msg.nick === "string") {
      me.nick = msg.nick;
      if (document.activeElement !== el.nick) el.nick.value = me.nick;
    }
    const c = ensureRoom(msg.room);
    c.readFailures = 0;
    c.joined = true;
    setMembers(c, msg.members);
    const joining = pendingJoins.delete(c.name);
    if (joining) addLine(c, "info", `You joined #${c.name}.`, msg.timestamp);
    else if (r.welcomes > 1 || (firstWelcome && hadSession)) addLine(c, "info", "Reconnected.", msg.timestamp);
    else if (!hadSession) addLine(c, "info", `Welcome, ${me.nick}! You are in #${c.name}.`, msg.timestamp);
    if (checkLastId(c, msg.last_id)) {
      // A new server process, whose ids start again: read the room anew.
      startReader(c, { after: 0 });
    } else {
      addHistory(c, msg.history);
    }
    if (joining || !currentKey || !convs.has(currentKey)) select(c.key);
    if (firstWelcome) {
      ready = true;
      attempt = 0;
      // Rooms the session was already in (a reload within its lifetime)
      // are shown too, rather than kept joined unseen.
      if (!hadSession && Array.isArray(msg.rooms)) {
        for (const name of msg.rooms) {
          if (typeof name === "string" && ROOM_RE.test(name) && !readers.has(name)) startReader(ensureRoom(name));
        }
      }
      hadSession = true;
      afterReady();
    }
    for (const d of convs.values()) if (d.kind === "dm") setDmOnline(d.peer.id, isOnlineAnywhere(d.peer.id));
    renderCurrent();
    renderStatus();
  }

  function startPoll(c, live, first) {
    const r = { kind: "poll", live, room: c.name, first, ctrl: null, timer: 0, failures: 0, retryAt: 0 };
    readers.set(c.name, r);
    renderMembers();
    pollStep(r);
  }

  async function pollStep(r) {
    clearTimeout(r.timer);
    r.timer = 0;
    if (readers.get(r.room) !== r) return;
    const c = convs.get(roomKey(r.room));
    if (!c) {
      stopReader(r.room);
      return;
    }
    const wait = r.first || !r.live ? 0 : LONG_POLL_WAIT_S;
    const q = new URLSearchParams({ room: r.room });
    if (!r.first) q.set("after", String(c.lastId));
    q.set("wait", String(wait));
    let out = null;
    const started = Date.now();
    try {
      out = await httpRequest(`/poll?${q}`, { timeoutMs: wait * 1000 + CONNECT_TIMEOUT_MS, reader: r });
    } catch {
      out = null;
    }
    if (readers.get(r.room) !== r) return;
    if (out && out.replaced) {
      sessionLost();
      return;
    }
    if (out && (out.status === 200 || out.status === 204)) {
      r.failures = 0;
      r.retryAt = 0;
      if (mode === "poll") httpUp = true;
      if (out.status === 200 && out.body && typeof out.body === "object") applyPoll(c, out.body, r.first);
      r.first = false;
      // A long poll ends early with 204 only when something else ended it
      // (the server shutting down, a proxy): resynchronise with a plain poll,
      // which a restarted server answers at once with our new session.
      if (out.status === 204 && wait > 2 && Date.now() - started < (wait - 2) * 1000) r.first = true;
      r.timer = setTimeout(() => pollStep(r), r.live ? 0 : SHORT_POLL_MS);
      renderStatus();
      return;
    }
    if (out && out.status === 400 && !c.joined) {
      // The room itself was refused (bad_room, too_many_rooms…).
      if (out.body && typeof out.body === "object" && out.body.type === "error") handlers.error(out.body);
      pendingJoins.delete(c.name);
      removeConv(c);
      return;
    }
    // No answer, or not a poll's: again later, backing off. The next poll
    // is a plain one (wait=0, no after=), answered at once: after a server
    // restart a long poll with our old token would be held for its whole
    // wait before its answer told us the session is new.
    r.failures += 1;
    r.first = true;
    if (mode === "poll") httpUp = false;
    if (navigator.onLine === false) {
      r.retryAt = 0;
      waitingOnline = true;
    } else {
      const delay = backoffDelay(r.failures);
      r.retryAt = Date.now() + delay;
      r.timer = setTimeout(() => pollStep(r), delay);
    }
    renderStatus();
  }

  function applyPoll(c, body, first) {
    const list = Array.isArray(body.messages)
      ? body.messages.filter((m) => m && typeof m === "object") : [];
    if (!c.joined) {
      c.joined = true;
      if (pendingJoins.delete(c.name)) {
        addLine(c, "info", `You joined #${c.name}.`);
        select(c.key);
      }
    }
    if (mode === "poll") learnSelf(list);
    const head = list.length && typeof list[0].id === "number" ? list[0].id : null;
    let take = true;
    if (first) {
      const reset = checkLastId(c, body.last_id);
      // More was missed than this answer holds: the next poll (after=)
      // fetches it all, and shows a gap if the ring lost some.
      if (!reset && c.lastId > 0 && head !== null && head > c.lastId + 1) take = false;
    } else if (c.lastId > 0 && head !== null && head > c.lastId + 1) {
      handlers.gap({ room: c.name, after: c.lastId, oldest: head });
    }
    if (take) addHistory(c, list);
    updateSendable();
  }

  // A poll says nothing about who we are, except in our own messages.
  function learnSelf(list) {
    for (const m of list) {
      if (m.own !== true || !isMember(m.from)) continue;
      if (me.id !== m.from.id) {
        me.id = m.from.id;
        renderMembers();
      }
      if (me.nick === null) {
        me.nick = m.from.nick;
        if (document.activeElement !== el.nick) el.nick.value = me.nick;
      }
    }
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
    if (waitingOnline || retryTimer || mode !== "ws") reconnectNow();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && retryTimer) reconnectNow();
  });
  window.addEventListener("pagehide", () => {
    leaving = true;
    clearTimeout(retryTimer);
    if (mode !== "ws") stopAllReaders();
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
    get transport() { return mode; },
    get me() { return { ...me }; },
    reconnectNow,
  });

  el.nick.value = storageGet(NICK_KEY) || "";
  renderTransport();
  renderCurrent();
  connect();
})();
