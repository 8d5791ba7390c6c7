"""A realtime endpoint with history and a page that records what its client receives.

For tests/realtime/test_browser_resume.py: the page at ``/?room=feed:NAME`` imports the
browser client the app serves (``/rt/client.js``), joins the room and keeps every message
with its position in ``window.feed``; each change of connection state also goes to
``window.report`` when the test defined it. ``FEED_PING_INTERVAL`` sets the ping interval
(seconds, default 1: a dead link is noticed in two).
"""

from __future__ import annotations

import os

from FasterAPI import Faster, HTMLResponse
from FasterAPI.pubsub import History

#: What a Publisher feeding these rooms must be given too.
HISTORY = History(size=5000, ttl=600)

app = Faster(history=HISTORY)
rt = app.realtime("/rt", ping_interval=float(os.environ.get("FEED_PING_INTERVAL", "1")))


@rt.room("feed:{name}")
async def join_feed(name: str) -> dict[str, str]:
    """Anyone may read a feed."""
    return {"feed": name}


PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>feed</title><link rel="icon" href="data:,"></head>
<body>
<p>state: <span id="state">-</span>, messages: <span id="count">0</span></p>
<script type="module">
import { Realtime } from "/rt/client.js";

const feed = { received: [], offsets: [], epochs: new Set(), resets: 0, joins: [], left: [], joined: false };
window.feed = feed;
const tell = (event) => { if (window.report) window.report(JSON.stringify(event)); };
const room = new URLSearchParams(location.search).get("room");
const rt = new Realtime("/rt", { params: () => ({ client: "feed-page" }) });
window.rt = rt;
rt.on("state", (state, detail) => {
  document.getElementById("state").textContent = state;
  tell({ event: "state", state, detail: detail || null, reconnects: rt.reconnects, count: feed.received.length });
});
const channel = rt.room(room);
channel.on("message", (data, meta) => {
  feed.received.push(data.n);
  feed.offsets.push(meta.offset);
  feed.epochs.add(meta.epoch);
  document.getElementById("count").textContent = String(feed.received.length);
});
channel.on("reset", () => { feed.resets += 1; tell({ event: "reset" }); });
channel.on("joined", (info) => { feed.joins.push(info); tell({ event: "joined", ...info }); });
channel.on("left", (info) => { feed.left.push(info); tell({ event: "left", ...info }); });
await channel.join();
feed.joined = true;
tell({ event: "ready" });
</script>
</body>
</html>
"""


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE
