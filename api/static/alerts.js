// The live alerts list: one card per alert, updated in place as changes arrive.

import { RULES, SEVERITY, STATUS, SUBJECTS, clock, timeOfDay, word, zh } from "./labels.js";

const KEEP_RESOLVED = 600; // seconds a resolved alert stays visible
const RANK = { firing: 0, acknowledged: 1, resolved: 2 };

function h(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class AlertList {
  /** onAck(id, note) -> Promise<alert>; onChange() after the set of alerts changed. */
  constructor(ul, { onAck, onChange }) {
    this.ul = ul;
    this.onAck = onAck;
    this.onChange = onChange;
    this.alerts = new Map(); // id -> {alert, node}
  }

  /**
   * A full list from GET /api/v1/alerts, asked for at ``askedAt`` (performance.now()):
   * what is not in it is no longer open, unless the stream brought it after the list was
   * asked for (the list cannot know it yet).
   */
  replace(items, askedAt = Infinity) {
    const ids = new Set(items.map((a) => a.id));
    for (const [id, entry] of this.alerts) {
      const newer = entry.seen !== undefined && entry.seen > askedAt;
      if (!ids.has(id) && entry.alert.status !== "resolved" && !newer) this.drop(id);
    }
    for (const a of items) {
      const entry = this.alerts.get(a.id);
      if (!entry || !(entry.seen > askedAt)) this.apply(a, false, false);
    }
    this.finish();
  }

  /** One alert (from the stream or an ack): returns whether it is a new red one. */
  apply(alert, finish = true, live = true) {
    let entry = this.alerts.get(alert.id);
    const wasRed = entry && entry.alert.severity === "red" && entry.alert.status === "firing";
    if (!entry) {
      entry = { alert, node: this.card(alert) };
      this.alerts.set(alert.id, entry);
    }
    if (live) entry.seen = performance.now();
    entry.alert = alert;
    this.fill(entry);
    if (finish) this.finish();
    return !wasRed && alert.severity === "red" && alert.status === "firing";
  }

  drop(id) {
    const entry = this.alerts.get(id);
    if (entry) entry.node.remove();
    this.alerts.delete(id);
  }

  finish() {
    const order = [...this.alerts.values()].sort(
      (a, b) =>
        RANK[a.alert.status] - RANK[b.alert.status] ||
        (a.alert.severity === "red" ? 0 : 1) - (b.alert.severity === "red" ? 0 : 1) ||
        b.alert.id - a.alert.id,
    );
    const nodes = order.map((e) => e.node);
    // Moving a node would take the focus from a note being typed: only when the order changed.
    if (nodes.some((n, i) => this.ul.children[i] !== n)) this.ul.replaceChildren(...nodes);
    this.onChange();
  }

  open() {
    return [...this.alerts.values()].map((e) => e.alert).filter((a) => a.status !== "resolved");
  }

  card(alert) {
    const li = h("li", "alert");
    li.dataset.id = alert.id;
    const head = h("div", "alert-head");
    head.append(h("span", "badge"), h("span", "rule"), h("span", "status"), h("span", "dur"));
    const meta = h("p", "meta");
    const form = h("form", "ack");
    const note = h("input");
    note.name = "note";
    note.maxLength = 500;
    note.placeholder = "处置说明（选填） note";
    note.setAttribute("aria-label", "处置说明 note");
    const button = h("button", "", "确认 Ack");
    button.type = "submit";
    form.append(note, button);
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.ack(li, alert.id, note, button);
    });
    li.append(head, h("p", "summary"), meta, form, h("p", "acked"), h("p", "card-error"));
    return li;
  }

  async ack(li, id, note, button) {
    const err = li.querySelector(".card-error");
    err.textContent = "";
    button.disabled = true;
    try {
      const alert = await this.onAck(id, note.value.trim());
      note.value = "";
      this.apply(alert);
    } catch (e) {
      err.textContent = `确认失败 (ack failed): ${e.message}`;
    } finally {
      button.disabled = false;
    }
  }

  fill({ alert: a, node: li }) {
    li.className = `alert sev-${a.severity} st-${a.status}${a.silenced ? " silenced" : ""}`;
    li.dataset.status = a.status;
    li.dataset.severity = a.severity;
    li.dataset.rule = a.rule;
    li.querySelector(".badge").textContent = zh(SEVERITY, a.severity) || a.severity;
    li.querySelector(".rule").textContent = word(RULES, a.rule);
    li.querySelector(".status").textContent = word(STATUS, a.status) + (a.silenced ? " · 已静默" : "");
    li.querySelector(".summary").textContent = a.summary || "";
    const subject = a.subject || {};
    const parts = [
      `${zh(SUBJECTS, subject.kind)} ${subject.id ?? ""}`,
      a.grid ? `网格 ${a.grid}` : "",
      a.device ? `终端 ${a.device}` : "",
      a.unit ? `单位 ${a.unit}` : "",
      `开始 ${timeOfDay(a.starts_at)}`,
    ];
    li.querySelector(".meta").textContent = parts.filter(Boolean).join(" · ");
    li.querySelector(".ack").hidden = a.status !== "firing";
    const acked = li.querySelector(".acked");
    acked.hidden = !a.ack;
    if (a.ack) {
      const note = a.ack.note ? `：${a.ack.note}` : "";
      acked.textContent = `✓ ${a.ack.by} 于 ${timeOfDay(a.ack.at)} 确认${note}`;
    }
    this.tickOne(a, li);
  }

  tickOne(a, li) {
    const end = a.status === "resolved" && a.ends_at ? a.ends_at : Date.now() / 1000;
    li.querySelector(".dur").textContent = `持续 ${clock(end - a.starts_at)}`;
  }

  /** Once a second: durations count up; resolved alerts leave after a while. */
  tick() {
    const now = Date.now() / 1000;
    let dropped = false;
    for (const [id, { alert, node }] of this.alerts) {
      if (alert.status === "resolved" && now - (alert.ends_at || now) > KEEP_RESOLVED) {
        this.drop(id);
        dropped = true;
      } else {
        this.tickOne(alert, node);
      }
    }
    if (dropped) this.onChange();
  }
}
