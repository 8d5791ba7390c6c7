// Unit tests of FasterAPI/realtime/client.js in Node (`node --test`), against a scripted fake
// server: the client gets a fake WebSocket class whose sockets the test drives frame by frame,
// and Node's mock timers stand in for time, so backoff and liveness are checked exactly.
// tests/realtime/test_client_js.py runs this file under pytest.
import { afterEach, beforeEach, mock, test } from "node:test";
import assert from "node:assert/strict";

import {
  BACKOFF_BASE,
  BACKOFF_CAP,
  CONNECT_TIMEOUT,
  Realtime,
  RealtimeError,
  STABLE_AFTER,
  backoffDelay,
} from "../../FasterAPI/realtime/client.js";

/** The server side of the fake: every socket the client opened, driven by the test. */
class FakeServer {
  constructor() {
    this.sockets = [];
    const server = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.sent = [];
        this.closedWith = null;
        server.sockets.push(this);
      }

      send(text) {
        if (this.closedWith !== null) throw new Error("send on a closed socket");
        this.sent.push(JSON.parse(text));
      }

      close(code) {
        this.closedWith = code ?? 1005;
      }
    };
  }

  get last() {
    return this.sockets.at(-1);
  }

  deliver(frame, socket = this.last) {
    socket.onmessage?.({ data: JSON.stringify(frame) });
  }

  welcome(pingInterval = 60, socket = this.last) {
    this.deliver({ op: "welcome", connection: `c${this.sockets.length}`, ping_interval: pingInterval, version: 1 }, socket);
  }

  /** The network or the server closed the socket. */
  cut(code = 1006, socket = this.last) {
    socket.onclose?.({ code, reason: "" });
  }

  /** The frames of `op` the client sent on the last socket. */
  sent(op, socket = this.last) {
    return socket.sent.filter((frame) => frame.op === op);
  }

  /** Answer the client's last join on the last socket. */
  joined(fields = {}) {
    const join = this.sent("join").at(-1);
    this.deliver({ op: "joined", id: join.id, room: join.room, recovered: false, position: null, presence: {}, ...fields });
    return join;
  }
}

/** Let promises and the client's queued microtasks run (setImmediate is not mocked). */
const settle = () => new Promise((resolve) => setImmediate(resolve));

let server;
const clients = [];

function connect(options = {}) {
  const rt = new Realtime("ws://example.test/rt", { WebSocket: server.WebSocket, ...options });
  clients.push(rt);
  return rt;
}

/** A client connected and welcomed, with `room` joined at `position`. */
async function joinedRoom(name = "chat:1", position = { offset: 5, epoch: "e1" }, pingInterval = 60) {
  const rt = connect();
  await settle();
  server.welcome(pingInterval);
  const room = rt.room(name);
  const joining = room.join({ nick: "ann" });
  server.joined({ position });
  return { rt, room, result: await joining };
}

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 1_000_000 });
  // Each reconnect waits just under its ceiling: the backoff's bounds are checked exactly.
  mock.method(Math, "random", () => 0.999);
  server = new FakeServer();
});

afterEach(() => {
  for (const rt of clients.splice(0)) rt.close();
  mock.timers.reset();
  mock.restoreAll();
  delete globalThis.location;
});

test("backoff: full jitter between 0 and min(20 s, 0.5 s * 2^attempt)", () => {
  for (let attempt = 0; attempt < 12; attempt++) {
    const ceiling = Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt);
    for (const random of [0, 0.5]) {
      mock.method(Math, "random", () => random);
      assert.equal(backoffDelay(attempt), ceiling * random);
    }
    mock.restoreAll();
    for (let sample = 0; sample < 200; sample++) {
      const delay = backoffDelay(attempt);
      assert.ok(delay >= 0 && delay < ceiling, `attempt ${attempt}: ${delay}`);
    }
  }
  assert.equal(BACKOFF_BASE, 500);
  assert.equal(BACKOFF_CAP, 20000);
  mock.method(Math, "random", () => 0.5);
  assert.equal(backoffDelay(40), 10000);  // capped, however many attempts
});

test("reconnect delays double up to the cap, and start over after a stable connection", async () => {
  const rt = connect();
  const states = [];
  rt.on("state", (state) => states.push(state));
  await settle();
  assert.equal(server.sockets.length, 1);
  // Connects that fail at once: each wait is just under its ceiling (random() = 0.999).
  for (let attempt = 0; attempt < 8; attempt++) {
    server.cut();
    const wait = Math.ceil(Math.min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt) * 0.999);
    mock.timers.tick(wait - 1);
    await settle();
    assert.equal(server.sockets.length, attempt + 1, `attempt ${attempt} came early`);
    mock.timers.tick(1);
    await settle();
    assert.equal(server.sockets.length, attempt + 2, `attempt ${attempt} did not come`);
  }
  assert.deepEqual(states.slice(0, 4), ["connecting", "disconnected", "connecting", "disconnected"]);

  // A connection up for less than STABLE_AFTER keeps the backoff where it was...
  server.welcome();
  mock.timers.tick(STABLE_AFTER - 1000);
  server.cut();
  let count = server.sockets.length;
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  assert.equal(server.sockets.length, count, "the backoff started over after an unstable connection");
  mock.timers.tick(BACKOFF_CAP);
  await settle();
  assert.equal(server.sockets.length, count + 1);

  // ...one that stayed up STABLE_AFTER resets it to the base.
  server.welcome();
  mock.timers.tick(STABLE_AFTER);
  server.cut();
  count = server.sockets.length;
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  assert.equal(server.sockets.length, count + 1);
  assert.equal(rt.reconnects, 1);
});

test("a path resolves against the page (https -> wss); params are re-read at every connect", async () => {
  globalThis.location = { href: "https://app.example/pages/chat.html" };
  let token = "one";
  const rt = new Realtime("/rt", { WebSocket: server.WebSocket, params: async () => ({ token, skip: null }) });
  clients.push(rt);
  await settle();
  assert.equal(server.last.url, "wss://app.example/rt?token=one");
  token = "two";
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  assert.equal(server.last.url, "wss://app.example/rt?token=two");

  const plain = new Realtime("http://other.example:8000/x/rt?v=1", { WebSocket: server.WebSocket, params: { a: "b c" } });
  clients.push(plain);
  await settle();
  assert.equal(server.last.url, "ws://other.example:8000/x/rt?v=1&a=b+c");
});

test("join resolves with recovered and position; messages carry their offset", async () => {
  const { room, result } = await joinedRoom();
  assert.deepEqual(result, { recovered: false, position: { offset: 5, epoch: "e1" } });
  assert.deepEqual(server.sent("join")[0], { op: "join", room: "chat:1", payload: { nick: "ann" }, id: 1 });
  const seen = [];
  room.on("message", (data, meta) => seen.push([data, meta]));
  server.deliver({ op: "message", room: "chat:1", offset: 6, epoch: "e1", data: { text: "hi" } });
  server.deliver({ op: "message", room: "other", offset: 1, epoch: "e1", data: "not ours" });
  assert.deepEqual(seen, [[{ text: "hi" }, { offset: 6, epoch: "e1" }]]);
  assert.deepEqual(room.position, { offset: 6, epoch: "e1" });
});

test("after a reconnect every room is rejoined since its last position; duplicates are dropped", async () => {
  const { rt, room } = await joinedRoom();
  const seen = [];
  const joins = [];
  room.on("message", (data, meta) => seen.push(meta.offset));
  room.on("joined", (info) => joins.push(info));
  for (const offset of [6, 7]) server.deliver({ op: "message", room: "chat:1", offset, epoch: "e1", data: offset });
  server.cut();
  assert.equal(room.state, "joining");
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  assert.deepEqual(server.sent("join"), [], "nothing is sent before the welcome");
  server.welcome();
  const rejoin = server.sent("join")[0];
  assert.deepEqual(rejoin.since, { offset: 7, epoch: "e1" });
  assert.deepEqual(rejoin.payload, { nick: "ann" });
  server.joined({ recovered: true, position: { offset: 9, epoch: "e1" } });
  // The replay overlaps what the page had: 6 and 7 again, then 8 and 9 once each.
  for (const offset of [6, 7, 8, 8, 9]) server.deliver({ op: "message", room: "chat:1", offset, epoch: "e1", data: offset });
  assert.deepEqual(seen, [6, 7, 8, 9]);
  assert.deepEqual(joins, [{ recovered: true, position: { offset: 9, epoch: "e1" }, rejoin: true }]);
  assert.equal(room.state, "joined");
  assert.equal(rt.reconnects, 1);

  // A message of a new epoch (the history was lost) replaces the position, whatever its offset.
  server.deliver({ op: "message", room: "chat:1", offset: 1, epoch: "e2", data: "new" });
  assert.deepEqual(room.position, { offset: 1, epoch: "e2" });
  assert.deepEqual(seen, [6, 7, 8, 9, 1]);
  // A room without history (epoch ""): never a duplicate, no position.
  const { room: live } = await joinedRoom("live", null);
  const liveSeen = [];
  live.on("message", (data) => liveSeen.push(data));
  for (const data of ["a", "a"]) server.deliver({ op: "message", room: "live", offset: 0, epoch: "", data });
  assert.deepEqual(liveSeen, ["a", "a"]);
  assert.equal(live.position, null);
});

test("reset: the room forgets its position and tells the page; the membership goes on", async () => {
  const { room } = await joinedRoom();
  let resets = 0;
  room.on("reset", () => resets++);
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  assert.deepEqual(server.sent("join")[0].since, { offset: 5, epoch: "e1" });
  server.deliver({ op: "reset", room: "chat:1" });
  assert.equal(resets, 1);
  assert.equal(room.position, null);
  server.joined({ recovered: false, position: { offset: 40, epoch: "e1" } });
  assert.deepEqual(room.position, { offset: 40, epoch: "e1" });
  assert.equal(room.state, "joined");
});

test("a dead link is dropped after two ping intervals of silence, then reconnected", async () => {
  const { rt } = await joinedRoom("chat:1", { offset: 5, epoch: "e1" }, 1);
  const socket = server.last;
  mock.timers.tick(1000);
  assert.deepEqual(server.sent("ping", socket), [{ op: "ping" }], "the client pings every interval");
  server.deliver({ op: "ping" }, socket);
  assert.deepEqual(server.sent("pong", socket), [{ op: "pong" }]);
  // Heard at t=1000: the link is dead at t=3000, not a millisecond earlier.
  mock.timers.tick(1999);
  assert.equal(rt.state, "connected");
  mock.timers.tick(1);
  assert.equal(rt.state, "disconnected");
  assert.notEqual(socket.closedWith, null, "the silent socket is closed");
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  assert.equal(server.sockets.length, 2);
  assert.equal(rt.state, "connecting");
});

test("a socket that gets no welcome within the connect timeout is dropped", async () => {
  const rt = connect();
  await settle();
  mock.timers.tick(CONNECT_TIMEOUT - 1);
  assert.equal(rt.state, "connecting");
  mock.timers.tick(1);
  assert.equal(rt.state, "disconnected");
});

test("publish resolves on ack, rejects on error, and rejects when the socket drops", async () => {
  const { room } = await joinedRoom();
  const acked = room.publish({ text: "hi" });
  const publish = server.sent("publish")[0];
  assert.deepEqual(publish, { op: "publish", room: "chat:1", data: { text: "hi" }, id: publish.id });
  server.deliver({ op: "ack", id: publish.id, room: "chat:1", position: { offset: 6, epoch: "e1" } });
  assert.deepEqual(await acked, { position: { offset: 6, epoch: "e1" } });

  const refused = room.publish("too loud");
  server.deliver({ op: "error", id: server.sent("publish")[1].id, code: "publish_refused", reason: "no shouting" });
  await assert.rejects(refused, (error) => error instanceof RealtimeError && error.code === "publish_refused" && error.reason === "no shouting");

  const inFlight = room.publish("lost?");
  server.cut();
  await assert.rejects(inFlight, { code: "disconnected" });
  await assert.rejects(room.publish("offline"), { code: "disconnected" });
});

test("a join in flight when the socket drops is re-sent after the reconnect", async () => {
  const rt = connect();
  await settle();
  server.welcome();
  const joining = rt.room("chat:2").join();
  assert.equal(server.sent("join").length, 1);
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  const rejoin = server.sent("join")[0];
  assert.equal(rejoin.room, "chat:2");
  assert.equal(rejoin.since, undefined);
  server.joined({ position: { offset: 3, epoch: "e" } });
  assert.deepEqual(await joining, { recovered: false, position: { offset: 3, epoch: "e" } });
});

test("a denied join rejects with code and reason; the socket stays open", async () => {
  const rt = connect();
  await settle();
  server.welcome();
  const room = rt.room("secret");
  const joining = room.join();
  const join = server.sent("join")[0];
  server.deliver({ op: "denied", id: join.id, room: "secret", code: "forbidden", reason: "not a member" });
  await assert.rejects(joining, (error) => error.code === "forbidden" && error.reason === "not a member");
  assert.equal(room.state, "idle");
  assert.equal(rt.state, "connected");
  assert.equal(server.last.closedWith, null);
  // Not rejoined after a reconnect: the denial stands until the page joins again.
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  assert.deepEqual(server.sent("join"), []);
});

test("removed by the server (left with a reason): a left event, and no rejoin", async () => {
  const { rt, room } = await joinedRoom();
  const left = [];
  room.on("left", (info) => left.push(info));
  server.deliver({ op: "left", room: "chat:1", reason: "kicked by a moderator" });
  assert.deepEqual(left, [{ code: "removed", reason: "kicked by a moderator" }]);
  assert.equal(room.state, "idle");
  server.deliver({ op: "message", room: "chat:1", offset: 6, epoch: "e1", data: "after the kick" });
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  assert.deepEqual(server.sent("join"), []);
  assert.equal(rt.state, "connected");
});

test("a rejoin the guard now refuses ends the membership with a left event", async () => {
  const { room } = await joinedRoom();
  const left = [];
  room.on("left", (info) => left.push(info));
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  const rejoin = server.sent("join")[0];
  server.deliver({ op: "denied", id: rejoin.id, room: "chat:1", code: "forbidden", reason: "token expired" });
  assert.deepEqual(left, [{ code: "forbidden", reason: "token expired" }]);
  assert.equal(room.state, "idle");
});

test("leave is confirmed by the server and forgets the position", async () => {
  const { room } = await joinedRoom();
  const leaving = room.leave();
  const leave = server.sent("leave")[0];
  assert.deepEqual(leave, { op: "leave", room: "chat:1", id: leave.id });
  server.deliver({ op: "left", id: leave.id, room: "chat:1" });
  await leaving;
  assert.equal(room.position, null);
  assert.equal(room.state, "idle");
  const seen = [];
  room.on("message", (data) => seen.push(data));
  server.deliver({ op: "message", room: "chat:1", offset: 6, epoch: "e1", data: "late" });
  assert.deepEqual(seen, []);
});

test("presence: the join's member list and the diffs after it", async () => {
  const rt = connect();
  await settle();
  server.welcome();
  const room = rt.room("chat:3");
  const diffs = [];
  room.on("presence", (diff) => diffs.push(diff));
  const joining = room.join();
  server.joined({ presence: { a: { name: "ann" }, c2: { name: "me" } } });
  await joining;
  server.deliver({ op: "presence", room: "chat:3", joins: { b: { name: "bob" } }, leaves: ["a"] });
  assert.deepEqual(room.presence, { b: { name: "bob" }, c2: { name: "me" } });
  // After a reconnect the new list is compared with what the page had: one diff.
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  server.joined({ presence: { b: { name: "bob" }, c3: { name: "me" } } });
  assert.deepEqual(diffs, [
    { joins: { a: { name: "ann" }, c2: { name: "me" } }, leaves: [] },
    { joins: { b: { name: "bob" } }, leaves: ["a"] },
    { joins: { c3: { name: "me" } }, leaves: ["c2"] },
  ]);
});

test("binary broadcasts arrive as bytes; unknown ops and bad frames are ignored", async () => {
  const { rt, room } = await joinedRoom("bin", null);
  const seen = [];
  room.on("message", (data) => seen.push(data));
  server.last.onmessage({ data: "not json" });
  server.deliver({ op: "from-the-future", room: "bin" });
  server.deliver({ op: "message", room: "bin", offset: 0, epoch: "", data: "AAEC/w==", binary: true });
  assert.deepEqual(seen, [new Uint8Array([0, 1, 2, 255])]);
  const errors = [];
  rt.on("error", (error) => errors.push(error.code));
  server.deliver({ op: "error", id: null, code: "bad_frame", reason: "not JSON" });
  assert.deepEqual(errors, ["bad_frame"]);
  assert.equal(rt.state, "connected");
});

test("close: no reconnect, joins waiting reject", async () => {
  const rt = connect();
  await settle();
  const states = [];
  rt.on("state", (state) => states.push(state));
  const joining = rt.room("r").join();
  rt.close();
  await assert.rejects(joining, { code: "closed" });
  assert.equal(server.last.closedWith, 1000);
  mock.timers.tick(BACKOFF_CAP);
  await settle();
  assert.equal(server.sockets.length, 1);
  assert.deepEqual(states, ["disconnected"]);
});

test("a rejoin the relay cannot serve yet (unavailable) is tried again, not given up", async () => {
  const { room } = await joinedRoom();
  const left = [];
  room.on("left", (info) => left.push(info));
  server.cut();
  mock.timers.tick(BACKOFF_BASE);
  await settle();
  server.welcome();
  const first = server.sent("join")[0];
  server.deliver({ op: "denied", id: first.id, room: "chat:1", code: "unavailable", reason: "The relay is unavailable; try again" });
  assert.deepEqual(left, []);
  assert.equal(room.state, "joining");
  mock.timers.tick(BACKOFF_BASE);
  const again = server.sent("join")[1];
  assert.deepEqual(again.since, { offset: 5, epoch: "e1" });
  server.joined({ recovered: true, position: { offset: 5, epoch: "e1" } });
  assert.equal(room.state, "joined");
});

test("a message sent to this connection alone (room \"\") is the connection's event", async () => {
  const { rt } = await joinedRoom();
  const direct = [];
  rt.on("message", (data) => direct.push(data));
  server.deliver({ op: "message", room: "", offset: 0, epoch: "", data: { note: "just you" } });
  assert.deepEqual(direct, [{ note: "just you" }]);
});
