// Realtime: FasterAPI's browser client, protocol version 1 (docs/realtime-protocol.md), served
// by the app at <path>/client.js: no dependency, no build step. Written to be read by authors of
// clients in other languages: each rule of the protocol is in one place, and says so.

/** Reconnect backoff (ms): retry n waits a random time in [0, min(CAP, BASE * 2^n)). */
export const BACKOFF_BASE = 500;
export const BACKOFF_CAP = 20000;
/** A connection that stayed up this long (ms) resets the backoff to its base. */
export const STABLE_AFTER = 10000;
/** How long (ms) a new socket may take to get the server's `welcome`. */
export const CONNECT_TIMEOUT = 10000;

/** @typedef {{offset: number, epoch: string}} Position  A message's place in its room. */

/** The delay (ms) before reconnect attempt `attempt` (0 first): "full jitter". */
export function backoffDelay(attempt) {
  return Math.random() * Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt);
}

/** A refusal (`denied`, `error`), or a request given up (code `disconnected`, `closed`, `left`). */
export class RealtimeError extends Error {
  constructor(code, reason) {
    super(`${code}: ${reason}`);
    this.name = "RealtimeError";
    this.code = code;
    this.reason = reason;
  }
}

/** Named events: `on(event, handler)` returns a function that removes it, as `off` does. */
class Emitter {
  constructor() {
    this._handlers = new Map();  // event -> Set of handlers
  }

  on(event, handler) {
    if (!this._handlers.has(event)) this._handlers.set(event, new Set());
    this._handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this._handlers.get(event)?.delete(handler);
  }

  _emit(event, ...args) {
    for (const handler of [...(this._handlers.get(event) || [])]) {
      try {
        handler(...args);
      } catch (error) {
        // The page's bug: report it without breaking the client's state.
        queueMicrotask(() => { throw error; });
      }
    }
  }
}

/** A `message` frame's data: bytes (sent as base64 in JSON mode) when `binary`. */
function dataOf(frame) {
  return frame.binary === true ? Uint8Array.from(atob(frame.data), (char) => char.charCodeAt(0)) : frame.data;
}

/**
 * A connection to a realtime endpoint, carrying any number of rooms. Events: `state`
 * (state, detail): "connecting" | "connected" | "disconnected" (detail: the close's
 * {code, reason}); `message` (data): sent to this connection alone (room "");
 * `error` (Error): an `error` frame answering no request, or a failed connect.
 */
export class Realtime extends Emitter {
  /**
   * @param {string} url  ws(s)://, http(s):// or a path, resolved against the page (http -> ws)
   * @param {object} [options]  `params`: the query (e.g. a token), an object or a function
   *   (maybe async) called before every connect; `WebSocket`: the class (default: the global);
   *   `connectTimeout` (ms)
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = options;
    /** "connecting" | "connected" | "disconnected" */
    this.state = "disconnected";
    /** This connection's id on the server (from `welcome`); null while not connected. */
    this.connectionId = null;
    /** How many times the connection was re-established. */
    this.reconnects = 0;
    this._rooms = new Map();  // name -> Room
    /** Requests awaiting their reply, by id: {reply(frame), fail(error), drop()}. */
    this._pending = new Map();
    this._nextId = 1;
    this._socket = null;
    this._welcomed = false;
    this._attempt = 0;       // reconnect attempts since the last stable connection
    this._connectedAt = 0;   // when the last welcome came (0: never)
    this._lastHeard = 0;     // when the last frame came
    this._timers = { retry: 0, watchdog: 0, ping: 0 };
    this._closed = false;
    // Connect once the caller has had a chance to add its `state` handlers.
    queueMicrotask(() => this._connect());
  }

  /** The room named `name` (the same object on every call). */
  room(name) {
    if (typeof name !== "string" || !name) throw new TypeError("a room name is a non-empty string");
    let room = this._rooms.get(name);
    if (!room) {
      room = new Room(this, name);
      this._rooms.set(name, room);
    }
    return room;
  }

  /** Close for good: no reconnect; waiting requests reject. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timers.retry);
    this._teardown(1000);
    const closed = new RealtimeError("closed", "the client was closed");
    for (const room of this._rooms.values()) room._abandon(closed);
    this._setState("disconnected", { code: 1000, reason: "closed by the client" });
  }

  // -- the connection's life: connect, welcome, drop, retry ---------------------------------

  async _connect() {
    if (this._closed) return;
    this._setState("connecting");
    let socket;
    try {
      const url = await this._connectUrl();
      if (this._closed) return;
      const Socket = this.options.WebSocket || globalThis.WebSocket;
      socket = new Socket(url);
    } catch (error) {
      // params() threw, or a bad URL: report it, retry like a failed connect.
      this._emit("error", error);
      this._retryLater({ code: 0, reason: String(error) });
      return;
    }
    this._socket = socket;
    this._welcomed = false;
    socket.onmessage = (event) => { if (this._socket === socket) this._receive(event.data); };
    socket.onclose = (event) => {
      if (this._socket === socket) this._drop({ code: event.code, reason: event.reason || "" });
    };
    socket.onerror = () => {};  // a `close` event always follows
    // A blackholed network can leave a socket "connecting" for minutes: time it out.
    this._watch(this.options.connectTimeout ?? CONNECT_TIMEOUT);
  }

  /** The URL of the next connect: made absolute, params re-read. */
  async _connectUrl() {
    const page = typeof location === "undefined" ? undefined : location.href;
    const url = new URL(this.url, page);
    url.protocol = url.protocol.replace(/^http/, "ws");
    let params = this.options.params;
    if (typeof params === "function") params = await params();
    for (const [key, value] of Object.entries(params || {})) {
      if (value !== undefined && value !== null) url.searchParams.set(key, String(value));
    }
    return url.href;
  }

  /** `welcome`: the connection is up. Rejoin every room before telling the page. */
  _onWelcome(frame) {
    const interval = frame.ping_interval > 0 ? frame.ping_interval : 10;
    this.connectionId = frame.connection;
    this._welcomed = true;
    if (this._connectedAt) this.reconnects += 1;
    this._connectedAt = Date.now();
    clearInterval(this._timers.ping);
    // Liveness: ping every interval; drop the link after 2 intervals of silence.
    this._timers.ping = setInterval(() => this._send({ op: "ping" }), interval * 1000);
    this._watch(2 * interval * 1000);
    for (const room of this._rooms.values()) room._onConnected();
    this._setState("connected");
  }

  /** The socket closed or went silent: settle what was in flight, then reconnect later. */
  _drop(detail) {
    this._teardown(4000);
    this._retryLater(detail);
  }

  _retryLater(detail) {
    if (this._closed) return;
    this._setState("disconnected", detail);
    this._timers.retry = setTimeout(() => this._connect(), backoffDelay(this._attempt++));
  }

  /** Close the socket (if any) and settle every request that was waiting on it. */
  _teardown(code) {
    const socket = this._socket;
    this._socket = null;
    clearTimeout(this._timers.watchdog);
    clearInterval(this._timers.ping);
    if (socket) {
      socket.onmessage = socket.onclose = socket.onerror = null;
      try { socket.close(code); } catch { /* already closed */ }
    }
    // The backoff starts over after a connection that was stable.
    if (this._welcomed && Date.now() - this._connectedAt >= STABLE_AFTER) this._attempt = 0;
    this._welcomed = false;
    this.connectionId = null;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const request of pending) request.drop();
    for (const room of this._rooms.values()) room._onDisconnected();
  }

  /** Drop the link when no frame at all arrives for `limit` ms (re-armed lazily, not per frame). */
  _watch(limit) {
    clearTimeout(this._timers.watchdog);
    this._lastHeard = Date.now();
    const check = () => {
      const silent = Date.now() - this._lastHeard;
      if (silent >= limit) {
        this._drop({ code: 4000, reason: `nothing received for ${Math.round(silent)} ms` });
      } else {
        this._timers.watchdog = setTimeout(check, limit - silent);
      }
    };
    this._timers.watchdog = setTimeout(check, limit);
  }

  _setState(state, detail) {
    if (state === this.state) return;
    this.state = state;
    this._emit("state", state, detail);
  }

  // -- frames ------------------------------------------------------------------------------

  _send(frame) {
    try {
      this._socket?.send(JSON.stringify(frame));
    } catch { /* the socket is closing: its close event follows */ }
  }

  /** Send a request; `handlers`: reply(frame), fail(error) on denied/error, drop() if no reply can come. */
  _request(frame, handlers) {
    if (!this._welcomed) {
      handlers.drop();
      return;
    }
    const id = this._nextId++;
    this._pending.set(id, handlers);
    this._send({ ...frame, id });
  }

  /** Handle one frame from the server. Unknown ops and extra fields are ignored. */
  _receive(raw) {
    this._lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(raw);
    } catch {
      return;  // not JSON (a binary frame in JSON mode): nothing we can act on
    }
    if (frame === null || typeof frame !== "object") return;
    const room = typeof frame.room === "string" ? this._rooms.get(frame.room) : undefined;
    const request = typeof frame.id === "number" ? this._pending.get(frame.id) : undefined;
    if (request) this._pending.delete(frame.id);
    switch (frame.op) {
      case "welcome":
        this._onWelcome(frame);
        break;
      case "ping":
        this._send({ op: "pong" });
        break;
      case "joined":
      case "ack":
        request?.reply(frame);
        break;
      case "left":
        if (request) request.reply(frame);
        else room?._onRemoved(frame.reason || "removed by the server");
        break;
      case "denied":
      case "error":
        if (request) request.fail(new RealtimeError(frame.code, frame.reason));
        else if (frame.op === "error") this._emit("error", new RealtimeError(frame.code, frame.reason));
        break;
      case "message":
        if (frame.room === "") this._emit("message", dataOf(frame));
        else room?._onMessage(frame);
        break;
      case "presence":
        room?._onPresence(frame.joins || {}, frame.leaves || []);
        break;
      case "reset":
        room?._onReset();
        break;
      default:
        break;  // `pong`, and ops of later protocol versions
    }
  }
}

/**
 * A room of a connection (`rt.room(name)`). Events: `message` (data, {offset, epoch});
 * `presence` ({joins: {id: metadata}, leaves: [id]}); `reset` (): history could not fill a
 * gap, what the page built is stale; `joined` ({recovered, position, rejoin}) after every
 * join, automatic rejoins too; `left` ({code, reason}): the membership ended without
 * leave(): the server removed us (code "removed") or refused a rejoin.
 */
export class Room extends Emitter {
  constructor(realtime, name) {
    super();
    this.name = name;
    /** "idle" | "joining" | "joined" */
    this.state = "idle";
    /** The last position seen (null: none, or no history). @type {Position | null} */
    this.position = null;
    /** The room's members: connection id -> the metadata its guard returned. */
    this.presence = {};
    this._rt = realtime;
    this._wanted = false;  // join() was called, and neither leave() nor the server ended it
    this._payload = undefined;
    this._waiters = [];    // join() calls waiting for a join request that is not sent yet
    this._resuming = false;  // was joined when the connection dropped
    this._retry = 0;         // a rejoin the server could not serve yet is tried again
    this._retries = 0;
  }

  /**
   * Join (the guard runs on every join), now or once connected; re-sent on reconnect until
   * answered. `payload` goes to the guard, on rejoins too. Rejects when denied.
   * @returns {Promise<{recovered: boolean, position: Position | null}>}
   */
  join(payload) {
    this._wanted = true;
    this._payload = payload;
    if (this.state === "idle") this.state = "joining";
    const joined = new Promise((resolve, reject) => this._waiters.push({ resolve, reject }));
    if (this._rt._welcomed) this._sendJoin(false);
    return joined;
  }

  /** Leave and forget the position; resolves on the reply (at once when not connected). */
  leave() {
    this._wanted = false;
    this._abandon(new RealtimeError("left", "leave() was called before the join completed"));
    this.position = null;
    this.presence = {};
    this.state = "idle";
    return new Promise((resolve, reject) => {
      this._rt._request({ op: "leave", room: this.name }, {
        reply: () => resolve(),
        fail: (error) => (error.code === "not_joined" ? resolve() : reject(error)),
        drop: () => resolve(),
      });
    });
  }

  /**
   * Publish `data` (JSON) through the room's handler: resolves on `ack`, rejects on `error`,
   * or `disconnected` when no connection carried it to its ack (it may have been published).
   * @returns {Promise<{position: Position | null}>}
   */
  publish(data) {
    return new Promise((resolve, reject) => {
      this._rt._request({ op: "publish", room: this.name, data }, {
        reply: (frame) => resolve({ position: frame.position ?? null }),
        fail: reject,
        drop: () => reject(new RealtimeError("disconnected", "no connection carried the publish to its ack")),
      });
    });
  }

  // -- driven by the connection --------------------------------------------------------------

  /** Send a join, `since` our position (resume); it answers every join() waiting so far. */
  _sendJoin(rejoin) {
    const waiters = this._waiters;
    this._waiters = [];
    const frame = { op: "join", room: this.name };
    if (this.position) frame.since = this.position;
    if (this._payload !== undefined) frame.payload = this._payload;
    this._rt._request(frame, {
      reply: (reply) => this._onJoined(reply, waiters, rejoin),
      fail: (error) => this._onJoinRefused(error, waiters, rejoin),
      // The connection went first: the waiters wait for the rejoin.
      drop: () => this._waiters.unshift(...waiters),
    });
  }

  _onConnected() {
    if (this._wanted) {
      this._sendJoin(this._resuming);
    } else {
      this._abandon(new RealtimeError("left", "the room was left before the join was sent"));
    }
  }

  _onDisconnected() {
    clearTimeout(this._retry);
    // A dropped connection is in no room; a room we still want is rejoined on reconnect.
    if (this.state === "joined") this._resuming = true;
    if (this._wanted) this.state = "joining";
  }

  _onJoined(frame, waiters, rejoin) {
    const result = { recovered: frame.recovered === true, position: frame.position ?? null };
    for (const waiter of waiters) waiter.resolve(result);
    if (!this._wanted) return;  // leave() was called meanwhile: its request follows this one
    this._resuming = false;
    this._retries = 0;
    this.state = "joined";
    // The room's top becomes our position, unless the server replays from ours (recovered)
    // or newer messages of this epoch already came.
    const top = result.position;
    const ours = this.position;
    if (top && !frame.recovered && !(ours && ours.epoch === top.epoch && ours.offset >= top.offset)) {
      this.position = { offset: top.offset, epoch: top.epoch };
    }
    this._syncPresence(frame.presence || {});
    this._emit("joined", { ...result, rejoin });
  }

  _onJoinRefused(error, waiters, rejoin) {
    if (rejoin && error.code === "unavailable") {
      // The server's relay is down: the rejoin is not refused, only delayed. Try again.
      this._waiters.unshift(...waiters);
      this._retry = setTimeout(() => this._rt._welcomed && this._sendJoin(true), backoffDelay(this._retries++));
      return;
    }
    // Denied: this connection is not in the room, and does not retry by itself.
    for (const waiter of waiters) waiter.reject(error);
    this._end(rejoin && { code: error.code, reason: error.reason });
  }

  /** `left` without an id: the server removed us (a kick, a revoked permission). No rejoin. */
  _onRemoved(reason) {
    if (this._wanted) this._end({ code: "removed", reason });
  }

  /** The membership ended, not by leave(): no rejoin; the page is told (`info`) if it was in. */
  _end(info) {
    this._wanted = this._resuming = false;
    this.state = "idle";
    this.presence = {};
    if (info) this._emit("left", info);
  }

  /** Reject the join() calls no request carries yet. */
  _abandon(error) {
    const waiters = this._waiters;
    this._waiters = [];
    for (const waiter of waiters) waiter.reject(error);
  }

  /**
   * A broadcast. With history (epoch not ""), one at or before our position in the same epoch
   * is a duplicate (a replay overlap): dropped. Any other, of a new epoch too, is our position.
   */
  _onMessage(frame) {
    if (!this._wanted) return;  // left: whatever was still in flight
    const offset = frame.offset;
    const epoch = frame.epoch || "";
    if (epoch) {
      const ours = this.position;
      if (ours && ours.epoch === epoch && offset <= ours.offset) return;
      this.position = { offset, epoch };
    }
    this._emit("message", dataOf(frame), { offset, epoch });
  }

  /** `reset`: history could not fill a gap. Forget the position; the membership goes on. */
  _onReset() {
    if (!this._wanted) return;
    this.position = null;
    this._emit("reset");
  }

  _onPresence(joins, leaves) {
    if (!this._wanted) return;
    for (const id of leaves) delete this.presence[id];
    Object.assign(this.presence, joins);
    this._emit("presence", { joins, leaves });
  }

  /** A join's full member list replaces ours; the page gets the difference as a diff. */
  _syncPresence(members) {
    const joins = {};
    for (const [id, meta] of Object.entries(members)) {
      if (!(id in this.presence) || JSON.stringify(this.presence[id]) !== JSON.stringify(meta)) joins[id] = meta;
    }
    const leaves = Object.keys(this.presence).filter((id) => !(id in members));
    this.presence = { ...members };
    if (leaves.length || Object.keys(joins).length) this._emit("presence", { joins, leaves });
  }
}
