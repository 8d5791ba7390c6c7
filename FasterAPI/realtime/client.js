// The FasterAPI realtime browser client (an ES module). Placeholder: the client is being
// written on the realtime-client branch; this file is served at <path>/client.js.
export class Realtime {
  constructor() {
    throw new Error("FasterAPI realtime client.js is not built yet");
  }
}
