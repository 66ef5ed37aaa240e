// The supervisor console: sign-in, live alerts with acknowledgement, the map, lit cases.

import { ApiError, describe, get, getAll, post, token } from "./api.js";
import { AlertList } from "./alerts.js";
import { renderCases } from "./cases.js";
import { STATES, learn } from "./labels.js";
import { MapView } from "./map.js";
import { alarm, unlockSound } from "./notify.js";
import { Stream } from "./stream.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 30000;
const CONN = {
  connected: ["已连接", "live"],
  reconnecting: ["重连中", "reconnecting"],
  closed: ["已断开", "offline"],
};

let session = null; // {bearer, stream, timers, pending}
let map = null;
const errors = new Map(); // source -> message, shown together in the banner

const alerts = new AlertList($("alerts"), {
  onAck: async (id, note) => {
    try {
      return await post(`/api/v1/alerts/${id}/ack`, note ? { note } : {});
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) signedOut(e);
      throw new Error(describe(e));
    }
  },
  onChange: () => {
    const open = alerts.open();
    $("alert-count").textContent = String(open.length);
    $("alerts-empty").hidden = alerts.alerts.size > 0;
    const worst = new Map();
    for (const a of open) {
      if (a.grid && worst.get(a.grid) !== "red") worst.set(a.grid, a.severity);
    }
    if (map) map.markCells(worst);
  },
});

function setError(source, err) {
  if (err) errors.set(source, `${source}: ${describe(err)}`);
  else errors.delete(source);
  $("error").textContent = [...errors.values()].join("\n");
  $("error").hidden = errors.size === 0;
}

function setConn(state) {
  const el = $("conn");
  const [zh, en] = CONN[state];
  el.dataset.state = state;
  el.className = `conn conn-${state}`;
  const small = document.createElement("small");
  small.textContent = en;
  el.replaceChildren(`${zh} `, small);
}

/** Runs a loader, reporting its failure in the banner; a 401 means the token is gone. */
async function load(source, fn) {
  try {
    await fn();
    setError(source, null);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signedOut(e);
    setError(source, e);
  }
}

const loadAlerts = () =>
  load("告警 alerts", async () => {
    const askedAt = performance.now();
    alerts.replace(await getAll("/api/v1/alerts", session.bearer), askedAt);
  });

const loadOfficers = () =>
  load("人员 officers", async () => {
    const items = await getAll("/api/v1/officers", session.bearer);
    map.setOfficers(items);
    $("officer-count").textContent = String(items.length);
  });

const loadCases = () =>
  load("案件 cases", async () => {
    const items = await getAll("/api/v1/cases?light=red,yellow", session.bearer);
    renderCases($("cases"), items);
    $("case-count").textContent = String(items.length);
    $("cases-empty").hidden = items.length > 0;
  });

async function loadGrids() {
  try {
    map.setCells(await get("/api/v1/grids", session.bearer));
    setError("网格 grids", null);
  } catch (e) {
    // No grids file on the server: the map goes on without cells.
    if (e instanceof ApiError && e.status === 404) return setError("网格 grids", null);
    setError("网格 grids", e);
  }
}

function loadAll() {
  return Promise.all([loadAlerts(), loadOfficers(), loadCases()]);
}

/** At most one reload of a list in flight per short while, however many events ask. */
function soon(name, fn) {
  if (!session || session.pending.has(name)) return;
  session.pending.add(name);
  setTimeout(() => {
    if (!session) return;
    session.pending.delete(name);
    fn();
  }, 300);
}

function onEvent(msg) {
  if (msg.type === "alert" && msg.alert) {
    const a = msg.alert;
    if (alerts.apply(a)) alarm();
    if (a.subject && a.subject.kind === "case") soon("cases", loadCases);
    if (a.subject && a.subject.kind === "officer") soon("officers", loadOfficers);
  } else if (msg.type === "position" && msg.device) {
    const d = msg.device;
    if (d.officer && !map.move(d.officer, d.lon, d.lat)) soon("officers", loadOfficers);
  }
}

async function start(bearer) {
  $("login").hidden = true;
  $("console").hidden = false;
  $("logout").hidden = !bearer;
  $("who").textContent = bearer ? "" : "本机免登录 local access";
  if (!map) {
    let tilesUrl = null;
    try {
      const config = await get("/console/config.json", null);
      tilesUrl = config.tiles_url;
      learn(config.patrol);
    } catch (e) {
      setError("配置 config", e);
    }
    legend();
    map = new MapView($("map"), { tilesUrl, note: $("map-note") });
  }
  session = { bearer, timers: [], pending: new Set(), stream: null };
  session.stream = new Stream(bearer, {
    onEvent,
    onState: setConn,
    onRefused: () => load("连接 stream", () => get("/api/v1/alerts?limit=1", session.bearer)),
    onHello: (msg, fresh) => {
      if (bearer && msg.principal) $("who").textContent = msg.principal;
      if (fresh) loadAll();
    },
  });
  session.stream.start();
  session.timers.push(
    setInterval(() => alerts.tick(), 1000),
    setInterval(loadCases, REFRESH_MS),
    setInterval(loadOfficers, REFRESH_MS),
  );
  await Promise.all([loadAll(), loadGrids()]);
}

function stop() {
  if (!session) return;
  session.stream.stop();
  session.timers.forEach(clearInterval);
  session = null;
  alerts.replace([]);
}

function showLogin(message) {
  $("console").hidden = true;
  $("logout").hidden = true;
  $("who").textContent = "";
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("login-error").hidden = !message;
  $("token").focus();
}

function signedOut(err) {
  stop();
  token.clear();
  errors.clear();
  setError("", null);
  showLogin(describe(err));
}

/** Whether the API answers with this token (null: none, as the local machine without tokens). */
async function works(bearer) {
  try {
    await get("/api/v1/alerts?limit=1", bearer);
    return true;
  } catch (e) {
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return false;
    throw e;
  }
}

async function login(e) {
  e.preventDefault();
  unlockSound();
  const value = $("token").value.trim();
  const button = e.target.querySelector("button");
  button.disabled = true;
  try {
    await get("/api/v1/alerts?limit=1", value);
    token.set(value);
    $("token").value = "";
    $("login-error").hidden = true;
    await start(value);
  } catch (err) {
    $("login-error").textContent = `登录失败 (sign-in failed): ${describe(err)}`;
    $("login-error").hidden = false;
  } finally {
    button.disabled = false;
  }
}

function legend() {
  $("legend").replaceChildren(
    ...STATES.map(([state, zh, en, colour]) => {
      const li = document.createElement("li");
      const dot = document.createElement("span");
      dot.className = `dot st-${state}`;
      dot.style.setProperty("--st", colour);
      const small = document.createElement("small");
      small.textContent = en;
      li.append(dot, `${zh} `, small);
      return li;
    }),
  );
}

async function boot() {
  setConn("closed");
  for (const kind of ["pointerdown", "keydown"]) {
    document.addEventListener(kind, unlockSound, { passive: true });
  }
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", () => {
    stop();
    token.clear();
    errors.clear();
    setError("", null);
    showLogin();
  });
  $("zoom-in").addEventListener("click", () => map && map.zoomBy(1));
  $("zoom-out").addEventListener("click", () => map && map.zoomBy(-1));
  $("zoom-fit").addEventListener("click", () => map && map.fit());
  try {
    const saved = token.get();
    if (saved && (await works(saved))) return await start(saved);
    token.clear();
    if (await works(null)) return await start(null);
    showLogin();
  } catch (e) {
    showLogin(describe(e));
  }
}

boot();
