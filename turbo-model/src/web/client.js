// turbo-model client: the <turbo-model-stream-source> element.
//
// Every element on a page shares ONE WebSocket per endpoint URL. Each element subscribes
// to the signed stream tokens in its `streams` attribute and is connected to Turbo with
// Turbo.connectStreamSource, so Turbo applies the <turbo-stream> frames it receives.
//
// Nothing is silently missed. A stream's first subscription names the time the page's
// request began (the `since` attribute): the server replies with the stream's position at
// that time and replays what came after. From then on the client remembers, per stream,
// the epoch and the last sequence number it applied. After any close, whatever its code, the socket reconnects with
// capped exponential backoff and jitter and subscribes again from those positions; the
// server replays what was missed. When it cannot (history trimmed, server restarted) it
// says so, and the element dispatches a cancelable `turbo-model:gap` event; unless a
// listener cancels it, the page refreshes itself with Turbo.
//
// The server pings every `heartbeat_ms`; the client answers, and reconnects when it has
// heard nothing for two intervals (a dead connection that never closed).
//
// An element has the `connected` attribute while all of its streams are subscribed on an
// open socket.
//
// Turbo's requests from this page carry the connection's token (X-Turbo-Model-Connection)
// so that the server can leave this page out of the broadcasts it already answers with.
//
// A page refresh (a `refresh` frame, or the one after a gap) waits while this page is
// submitting a form: Turbo would start a visit that stops the submission, aborting its
// request or dropping its redirect, and the user's own change could be lost. It runs
// when the submission is over: its request ended and, when the response is HTML, Turbo
// rendered it. A refresh that arrives during a visit waits for the visit to end (Turbo
// would drop it, and the visit may show the page from before the change).

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 10000;
// Turbo Drive swaps <body> on navigation, disconnecting every element and connecting the
// new page's: keep released streams and an unused socket briefly so that the next page
// reuses them instead of unsubscribing and subscribing again.
const RELEASE_MS = 1000;
// A socket that has neither opened nor closed by then (a blocked or black-holed
// connection) is given up and replaced.
const CONNECT_TIMEOUT_MS = 10000;
const IDLE_CLOSE_MS = 2000;

const connections = new Map();

// Form submissions in flight on this page, and the refreshes waiting for them to end.
const submissions = new Set();
const heldRefreshes = [];
// A submission answered with HTML is not over when its request ends: Turbo reads the
// body, then visits the redirect (or renders the error page), and a refresh started in
// between would stop that submission and drop its redirect. Hold until Turbo renders.
let awaitingRender = false;
let awaitingRenderTimer = null;
// If Turbo never renders (the visit was cancelled), let the refreshes go after this.
const AWAIT_RENDER_MS = 10000;

// Turbo drops a refresh that arrives while a visit is under way, and that visit may
// have fetched the page before the change the refresh announces: hold it until the
// visit is done.
let visiting = false;
let visitingTimer = null;

function holdingRefreshes() {
  return submissions.size > 0 || awaitingRender || visiting;
}

function afterSubmissions(run) {
  if (holdingRefreshes()) heldRefreshes.push(run);
  else run();
}

function releaseRefreshes() {
  if (holdingRefreshes()) return;
  for (const run of heldRefreshes.splice(0)) run();
}

document.addEventListener("turbo:visit", () => {
  visiting = true;
  clearTimeout(visitingTimer);
  // A visit that fails never loads: do not hold refreshes for ever.
  visitingTimer = setTimeout(() => {
    visiting = false;
    releaseRefreshes();
  }, AWAIT_RENDER_MS);
});

function renderDone() {
  awaitingRender = false;
  clearTimeout(awaitingRenderTimer);
  releaseRefreshes();
}

// A broadcast refresh morphs the page into the server's HTML, which has empty fields:
// without care, what the user is typing would vanish because somebody else saved
// something. While a refresh this element started renders, text fields whose value the
// user changed keep it.
let broadcastRefresh = false;
const NOT_TEXT = new Set(["checkbox", "radio", "file", "hidden", "submit", "button", "reset", "image"]);

function editedByUser(element) {
  if (element instanceof HTMLTextAreaElement) return element.value !== element.defaultValue;
  if (element instanceof HTMLInputElement && !NOT_TEXT.has(element.type)) {
    return element.value !== element.defaultValue;
  }
  return false;
}

document.addEventListener("turbo:before-morph-element", (event) => {
  // Only morphs (a removed element has no new one), only during a broadcast refresh.
  if (broadcastRefresh && event.detail.newElement && editedByUser(event.target)) {
    event.preventDefault();
  }
});

function isRefresh(html) {
  return /^\s*<turbo-stream action="refresh"[\s>]/.test(html);
}

document.addEventListener("turbo:submit-start", (event) => {
  submissions.add(event.detail.formSubmission);
  // The user's own submission: its response decides what the fields hold.
  broadcastRefresh = false;
});
document.addEventListener("turbo:submit-end", (event) => {
  submissions.delete(event.detail.formSubmission);
  const response = event.detail.fetchResponse;
  if (response && response.isHTML) {
    awaitingRender = true;
    clearTimeout(awaitingRenderTimer);
    awaitingRenderTimer = setTimeout(renderDone, AWAIT_RENDER_MS);
  }
  // After Turbo's own handling of the end of the submission.
  setTimeout(releaseRefreshes, 0);
});
// The response's page (or the redirect's) is on screen: no submission is pending.
for (const name of ["turbo:render", "turbo:load"]) {
  document.addEventListener(name, () => {
    if (name === "turbo:load") {
      submissions.clear();
      broadcastRefresh = false;
      visiting = false;
      clearTimeout(visitingTimer);
    }
    // A visit may still be finishing; Turbo skips refreshes during a visit, and the
    // page it renders was fetched after the held refresh arrived.
    setTimeout(renderDone, 0);
  });
}

class Connection {
  constructor(url) {
    this.url = url;
    this.elements = new Set();
    this.tokens = new Map(); // token -> Set of elements holding it
    this.confirmed = new Set(); // tokens subscribed on the current socket
    this.tokenOf = new Map(); // stream name -> token
    this.positions = new Map(); // token -> { epoch, seq } last applied
    this.startTimes = new Map(); // token -> when its page's request began (µs), until subscribed
    this.socket = null;
    this.attempt = 0;
    this.heartbeatMs = 0;
    this.lastHeard = 0;
    this.retryTimer = null;
    this.idleTimer = null;
    this.releaseTimer = null;
    this.watchdog = null;
    this.id = null;
    this.refusedOnce = new Set(); // tokens refused once: retried on a fresh connection
  }

  attach(element) {
    clearTimeout(this.idleTimer);
    this.elements.add(element);
    element.tokens.forEach((token, i) => {
      if (!this.positions.has(token) && !this.startTimes.has(token) && element.since !== null) {
        this.startTimes.set(token, element.since);
      }
      if (!this.tokens.has(token)) {
        this.tokens.set(token, new Set());
        this.subscribe(token);
      }
      // A stream kept through a page swap is already subscribed: no request needed.
      this.tokens.get(token).add(element);
    });
    this.refreshConnected();
    this.open();
  }

  detach(element) {
    this.elements.delete(element);
    for (const token of element.tokens) {
      const holders = this.tokens.get(token);
      if (holders) holders.delete(element);
    }
    element.removeAttribute("connected");
    clearTimeout(this.releaseTimer);
    this.releaseTimer = setTimeout(() => this.release(), RELEASE_MS);
    if (this.elements.size === 0) {
      clearTimeout(this.idleTimer);
      this.idleTimer = setTimeout(() => this.close(), IDLE_CLOSE_MS);
    }
  }

  // Unsubscribes from streams that no element has held for RELEASE_MS.
  release() {
    for (const [token, holders] of this.tokens) {
      if (holders.size > 0) continue;
      this.tokens.delete(token);
      this.confirmed.delete(token);
      this.positions.delete(token);
      this.startTimes.delete(token);
      this.send({ type: "unsubscribe", stream: token });
    }
  }

  // Drops everything known about a token (it is no longer subscribed).
  forget(token) {
    this.tokens.delete(token);
    this.confirmed.delete(token);
    this.positions.delete(token);
    this.startTimes.delete(token);
    this.refreshConnected();
  }

  subscribe(token) {
    const position = this.positions.get(token);
    const request = { type: "subscribe", stream: token };
    if (position) {
      request.since = { epoch: position.epoch, seq: position.seq };
    } else if (this.startTimes.has(token)) {
      request.since = { time: this.startTimes.get(token) };
    }
    this.send(request);
  }

  open() {
    if (this.socket || this.retryTimer) return;
    let socket;
    try {
      socket = new WebSocket(this.url);
    } catch (error) {
      // Refused before any connection (a Content-Security-Policy, a bad URL): retry on
      // the same schedule as a closed socket rather than stop for good.
      console.error("turbo-model: cannot open the stream connection", error);
      this.refreshConnected();
      if (this.elements.size > 0) this.scheduleReconnect(1006);
      return;
    }
    this.socket = socket;
    const connecting = setTimeout(() => {
      if (this.socket === socket && socket.readyState !== WebSocket.OPEN) {
        socket.close();
        this.closed(socket, 1006);
      }
    }, CONNECT_TIMEOUT_MS);
    socket.onopen = () => {
      clearTimeout(connecting);
      this.attempt = 0;
      this.lastHeard = Date.now();
      for (const token of this.tokens.keys()) this.subscribe(token);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.lastHeard = Date.now();
      this.receive(event.data);
    };
    socket.onclose = (event) => {
      clearTimeout(connecting);
      this.closed(socket, event.code);
    };
    // An error is always followed by a close event, which reconnects.
    socket.onerror = () => {};
  }

  // The socket is gone (closed by either side, or declared dead): reconnect.
  closed(socket, code) {
    if (this.socket !== socket) return;
    this.socket = null;
    clearInterval(this.watchdog);
    this.watchdog = null;
    this.confirmed.clear();
    this.refreshConnected();
    if (this.elements.size > 0) this.scheduleReconnect(code);
  }

  reconnectNow() {
    const socket = this.socket;
    if (!socket) return;
    socket.close(1000, "reconnecting with the page's current cookies");
    this.closed(socket, 1000);
  }

  scheduleReconnect(code) {
    const ceiling = Math.min(MAX_DELAY_MS, MIN_DELAY_MS * 2 ** this.attempt);
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.attempt += 1;
    console.debug(`turbo-model: socket closed (${code}); reconnecting in ${Math.round(delay)} ms`);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.elements.size > 0) this.open();
    }, delay);
  }

  startWatchdog() {
    clearInterval(this.watchdog);
    if (!this.heartbeatMs) return;
    const socket = this.socket;
    this.watchdog = setInterval(() => {
      if (Date.now() - this.lastHeard > 2 * this.heartbeatMs + 1000) {
        console.warn("turbo-model: no heartbeat from the server; reconnecting");
        try {
          socket.close(4000, "no heartbeat");
        } catch (_) {
          // Closing a dead socket may throw; it is abandoned either way.
        }
        this.closed(socket, 4000);
      }
    }, Math.max(250, this.heartbeatMs / 2));
  }

  close() {
    if (this.elements.size > 0) return;
    const socket = this.socket;
    this.socket = null;
    clearInterval(this.watchdog);
    if (socket) socket.close(1000, "page has no subscriptions");
    connections.delete(this.url);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  // A frame is a JSON header; a broadcast's element follows the first newline as it is.
  receive(data) {
    const newline = data.indexOf("\n");
    let message;
    try {
      message = JSON.parse(newline < 0 ? data : data.slice(0, newline));
    } catch (error) {
      console.error("turbo-model: unreadable frame", error);
      return;
    }
    if (newline >= 0) message.html = data.slice(newline + 1);
    switch (message.type) {
      case "hello":
        this.id = message.connection;
        this.heartbeatMs = message.heartbeat_ms;
        this.startWatchdog();
        break;
      case "ping":
        this.send({ type: "pong" });
        break;
      case "subscribed":
        this.subscribed(message);
        break;
      case "unsubscribed":
        this.confirmed.delete(message.token);
        break;
      case "message":
      case "skip":
        this.deliver(message);
        break;
      case "error": {
        // The connection's request (its cookies) is from when it opened; after a sign-in
        // a refusal may be stale. Reconnect once, with today's cookies, and ask again.
        if (message.code === "forbidden" && message.token && !this.refusedOnce.has(message.token)) {
          this.refusedOnce.add(message.token);
          this.reconnectNow();
          break;
        }
        console.error(`turbo-model: ${message.code}: ${message.message}`);
        // A refused (or ended) subscription is not live: the element is not connected.
        if (message.token && this.confirmed.delete(message.token)) this.refreshConnected();
        let renew = message.code === "invalid_token" && this.tokens.has(message.token);
        for (const element of this.tokens.get(message.token) || []) {
          const event = new CustomEvent("turbo-model:error", {
            detail: message,
            bubbles: true,
            cancelable: true,
          });
          if (!element.dispatchEvent(event)) renew = false;
        }
        // A token the server no longer takes (its key changed, it expired): this page
        // would never update again. A fresh render of the page has fresh tokens; the
        // token is forgotten, so that an element that comes back with it asks again.
        if (renew) {
          this.forget(message.token);
          refreshForNewTokens();
        }
        break;
      }
      default:
        console.warn("turbo-model: unknown frame type", message.type);
    }
  }

  subscribed(message) {
    const token = message.token;
    tokenRefreshes.succeeded();
    this.tokenOf.set(message.stream, token);
    this.confirmed.add(token);
    const known = this.positions.get(token);
    this.startTimes.delete(token);
    if (message.gap) {
      this.positions.set(token, { epoch: message.epoch, seq: message.seq });
      this.gap(token, message.stream, message.gap);
    } else if (!known || known.epoch !== message.epoch) {
      this.positions.set(token, { epoch: message.epoch, seq: message.seq });
    }
    // Otherwise the missed frames follow, and each one moves the position on.
    this.refreshConnected();
  }

  deliver(message) {
    const token = this.tokenOf.get(message.stream);
    const holders = token && this.tokens.get(token);
    if (!holders || holders.size === 0) return;
    const position = this.positions.get(token);
    if (position) {
      if (message.seq <= position.seq) return; // already applied
      if (message.seq !== position.seq + 1) {
        position.seq = message.seq;
        this.gap(token, message.stream, "sequence");
        return;
      }
      position.seq = message.seq;
    }
    // This page made the change and has it already: only the position moves on.
    if (message.type === "skip") return;
    // Two elements may share a stream: Turbo must apply each frame once.
    const [first] = holders;
    first.receive(message.html);
  }

  // The page may be missing broadcasts of `stream`: let the page decide, else refresh.
  gap(token, stream, reason) {
    console.warn(`turbo-model: missed broadcasts of ${stream} (${reason}); refreshing`);
    let refresh = true;
    for (const element of this.tokens.get(token) || []) {
      const event = new CustomEvent("turbo-model:gap", {
        detail: { stream, reason },
        bubbles: true,
        cancelable: true,
      });
      if (!element.dispatchEvent(event)) refresh = false;
    }
    if (!refresh) return;
    afterSubmissions(() => {
      broadcastRefresh = true;
      if (window.Turbo) {
        window.Turbo.visit(window.location.href, { action: "replace" });
      } else {
        window.location.reload();
      }
    });
  }

  refreshConnected() {
    const open = this.socket && this.socket.readyState === WebSocket.OPEN;
    for (const element of this.elements) {
      const ready = open && element.tokens.every((token) => this.confirmed.has(token));
      element.toggleAttribute("connected", Boolean(ready));
    }
  }
}

// Refreshes for new tokens back off (1 s, 2 s, 4 s, … up to 5 minutes) across the
// reloads they cause, so that a server that refuses every token is not hammered; a
// subscription that succeeds resets it.
const tokenRefreshes = {
  key: "turbo-model:token-refreshes",
  read() {
    try {
      return JSON.parse(window.sessionStorage.getItem(this.key)) || { attempts: 0, at: 0 };
    } catch (_) {
      return { attempts: 0, at: 0 };
    }
  },
  write(state) {
    try {
      window.sessionStorage.setItem(this.key, JSON.stringify(state));
    } catch (_) {
      // Storage may be off: then refreshes still happen, without memory of the last.
    }
  },
  succeeded() {
    if (this.read().attempts > 0) this.write({ attempts: 0, at: 0 });
  },
  timer: null,
};

function refreshForNewTokens() {
  if (tokenRefreshes.timer) return;
  const { attempts, at } = tokenRefreshes.read();
  const delay = Math.min(1000 * 2 ** attempts, 5 * 60 * 1000);
  const wait = Math.max(0, at + delay - Date.now());
  tokenRefreshes.timer = setTimeout(() => {
    tokenRefreshes.timer = null;
    tokenRefreshes.write({ attempts: attempts + 1, at: Date.now() });
    afterSubmissions(() => {
      broadcastRefresh = true;
      if (window.Turbo) {
        window.Turbo.visit(window.location.href, { action: "replace" });
      } else {
        window.location.reload();
      }
    });
  }, wait);
}

function socketUrl(src) {
  const url = new URL(src || "/turbo-model/ws", window.location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
}

// `since` is `t` and the time the page's request began, in microseconds since the Unix
// epoch: the server replays what each stream got after it. null when absent.
function parseSince(text) {
  const match = /^t(\d+)$/.exec((text || "").trim());
  return match ? Number(match[1]) : null;
}

function withTurbo(callback) {
  if (window.Turbo) return callback(window.Turbo);
  let waited = 0;
  const timer = setInterval(() => {
    waited += 50;
    if (window.Turbo) {
      clearInterval(timer);
      callback(window.Turbo);
    } else if (waited === 5000) {
      console.warn("turbo-model: Turbo is not loaded on this page; stream frames wait for it");
    }
  }, 50);
}

class TurboModelStreamSource extends HTMLElement {
  constructor() {
    super();
    this.tokens = [];
    this.since = null;
    this.pending = [];
    this.turboConnected = false;
    this.connection = null;
  }

  connectedCallback() {
    this.tokens = (this.getAttribute("streams") || "").split(/\s+/).filter(Boolean);
    this.since = parseSince(this.getAttribute("since"));
    const url = socketUrl(this.getAttribute("src"));
    let connection = connections.get(url);
    if (!connection) {
      connection = new Connection(url);
      connections.set(url, connection);
    }
    this.connection = connection;
    withTurbo((Turbo) => {
      if (!this.isConnected) return;
      Turbo.connectStreamSource(this);
      this.turboConnected = true;
      for (const html of this.pending.splice(0)) this.dispatch(html);
    });
    connection.attach(this);
  }

  disconnectedCallback() {
    if (window.Turbo && this.turboConnected) window.Turbo.disconnectStreamSource(this);
    this.turboConnected = false;
    if (this.connection) this.connection.detach(this);
    this.connection = null;
  }

  receive(html) {
    if (isRefresh(html) && holdingRefreshes()) {
      heldRefreshes.push(() => this.receive(html));
      return;
    }
    if (this.turboConnected) this.dispatch(html);
    else this.pending.push(html);
  }

  dispatch(html) {
    if (isRefresh(html)) broadcastRefresh = true;
    this.dispatchEvent(new MessageEvent("message", { data: html }));
  }
}

document.addEventListener("turbo:before-fetch-request", (event) => {
  for (const connection of connections.values()) {
    if (connection.id && connection.socket && connection.socket.readyState === WebSocket.OPEN) {
      event.detail.fetchOptions.headers["X-Turbo-Model-Connection"] = connection.id;
      return;
    }
  }
});

if (!customElements.get("turbo-model-stream-source")) {
  customElements.define("turbo-model-stream-source", TurboModelStreamSource);
}
