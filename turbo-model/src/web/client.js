// turbo-model client: the <turbo-model-stream-source> element.
//
// Every element on a page shares ONE WebSocket per endpoint URL. Each element subscribes
// to the signed stream tokens in its `streams` attribute and is connected to Turbo with
// Turbo.connectStreamSource, so Turbo applies the <turbo-stream> frames it receives.
// After any close, whatever its code, the socket reconnects with capped exponential
// backoff and jitter, and subscribes again. An element has the `connected` attribute
// while all of its streams are subscribed on an open socket.

const MIN_DELAY_MS = 250;
const MAX_DELAY_MS = 10000;
// Turbo Drive swaps <body> on navigation, disconnecting every element and connecting the
// new page's: keep released streams and an unused socket briefly so that the next page
// reuses them instead of unsubscribing and subscribing again.
const RELEASE_MS = 1000;
const IDLE_CLOSE_MS = 2000;

const connections = new Map();

class Connection {
  constructor(url) {
    this.url = url;
    this.elements = new Set();
    this.tokens = new Map(); // token -> Set of elements
    this.confirmed = new Set(); // tokens subscribed on the current socket
    this.streamTokens = new Map(); // stream name -> token
    this.lastSeq = new Map(); // stream name -> last applied sequence number
    this.socket = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.idleTimer = null;
    this.releaseTimer = null;
    this.id = null;
  }

  attach(element) {
    clearTimeout(this.idleTimer);
    this.elements.add(element);
    for (const token of element.tokens) {
      if (!this.tokens.has(token)) {
        this.tokens.set(token, new Set());
        this.send({ type: "subscribe", stream: token });
      }
      // A stream kept through a page swap is already subscribed: no request needed.
      this.tokens.get(token).add(element);
    }
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
      this.send({ type: "unsubscribe", stream: token });
    }
  }

  open() {
    if (this.socket || this.retryTimer) return;
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      for (const token of this.tokens.keys()) {
        this.send({ type: "subscribe", stream: token });
      }
    };
    socket.onmessage = (event) => this.receive(event.data);
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.confirmed.clear();
      this.refreshConnected();
      if (this.elements.size > 0) this.scheduleReconnect(event.code);
    };
    // An error is always followed by a close event, which reconnects.
    socket.onerror = () => {};
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

  close() {
    if (this.elements.size > 0) return;
    const socket = this.socket;
    this.socket = null;
    if (socket) socket.close(1000, "page has no subscriptions");
    connections.delete(this.url);
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch (error) {
      console.error("turbo-model: unreadable frame", error);
      return;
    }
    switch (message.type) {
      case "hello":
        this.id = message.connection;
        break;
      case "subscribed":
        this.streamTokens.set(message.stream, message.token);
        this.confirmed.add(message.token);
        this.refreshConnected();
        break;
      case "unsubscribed":
        this.confirmed.delete(message.token);
        break;
      case "message":
        this.deliver(message);
        break;
      case "error":
        console.error(`turbo-model: ${message.code}: ${message.message}`);
        for (const element of this.tokens.get(message.token) || []) {
          element.dispatchEvent(new CustomEvent("turbo-model:error", { detail: message, bubbles: true }));
        }
        break;
      default:
        console.warn("turbo-model: unknown frame type", message.type);
    }
  }

  deliver(message) {
    const token = this.streamTokens.get(message.stream);
    const holders = token && this.tokens.get(token);
    if (!holders || holders.size === 0) return;
    this.lastSeq.set(message.stream, message.seq);
    // Two elements may share a stream: Turbo must apply each frame once.
    const [first] = holders;
    first.receive(message.html);
  }

  refreshConnected() {
    const open = this.socket && this.socket.readyState === WebSocket.OPEN;
    for (const element of this.elements) {
      const ready = open && element.tokens.every((token) => this.confirmed.has(token));
      element.toggleAttribute("connected", Boolean(ready));
    }
  }
}

function socketUrl(src) {
  const url = new URL(src || "/turbo-model/ws", window.location.href);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  return url.toString();
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
    this.pending = [];
    this.turboConnected = false;
    this.connection = null;
  }

  connectedCallback() {
    this.tokens = (this.getAttribute("streams") || "").split(/\s+/).filter(Boolean);
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
    if (this.turboConnected) this.dispatch(html);
    else this.pending.push(html);
  }

  dispatch(html) {
    this.dispatchEvent(new MessageEvent("message", { data: html }));
  }
}

if (!customElements.get("turbo-model-stream-source")) {
  customElements.define("turbo-model-stream-source", TurboModelStreamSource);
}
