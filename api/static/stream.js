// The live stream: one WebSocket, resumed after a drop so that no event is missed.

const MIN_DELAY = 500;
const MAX_DELAY = 15000;

export class Stream {
  /**
   * handlers: onEvent(msg), onHello(msg, fresh) (fresh: nothing was replayed, so the
   * lists must be reloaded), onState("connected" | "reconnecting" | "closed").
   */
  constructor(bearer, handlers) {
    this.bearer = bearer;
    this.h = handlers;
    this.resume = null;
    this.delay = MIN_DELAY;
    this.ws = null;
    this.timer = null;
    this.stopped = false;
  }

  url() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = new URLSearchParams();
    if (this.bearer) q.set("token", this.bearer);
    if (this.resume) q.set("resume", this.resume);
    const qs = q.toString();
    return `${proto}//${location.host}/api/v1/stream${qs ? `?${qs}` : ""}`;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const ws = new WebSocket(this.url());
    this.ws = ws;
    let greeted = false;
    ws.onmessage = (e) => {
      greeted = true;
      this.receive(e.data);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (this.stopped) {
        this.h.onState("closed");
        return;
      }
      // Refused before any hello: perhaps the token was revoked (a browser cannot see
      // the 401 of a WebSocket); the page checks it with a plain request.
      if (!greeted && this.h.onRefused) this.h.onRefused();
      this.h.onState("reconnecting");
      this.timer = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, MAX_DELAY);
    };
  }

  async receive(data) {
    const text = typeof data === "string" ? data : await data.text();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return;
    }
    if (msg.type === "hello") {
      this.delay = MIN_DELAY;
      // With a resume token the server replays what was missed; the hello's token is
      // only ours to keep when starting afresh.
      const fresh = !this.resume;
      if (fresh) this.resume = msg.resume;
      this.h.onState("connected");
      this.h.onHello(msg, fresh);
    } else if (msg.type === "reset") {
      // Events were lost: start afresh, and the fresh hello reloads the lists.
      this.resume = null;
      this.delay = MIN_DELAY;
      if (this.ws) this.ws.close();
    } else {
      if (msg.resume) this.resume = msg.resume;
      this.h.onEvent(msg);
    }
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    else this.h.onState("closed");
  }
}
