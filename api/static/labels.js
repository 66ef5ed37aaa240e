// Words shown to people: Chinese first, English after.

// The patrol rules' words and the officer states come from the server (learn), which has
// them from the rules' specs (rules/patrols/specs.py).
export const RULES = {
  case_warning: ["案件即将超时", "case due soon"],
  case_overdue: ["案件超时", "case overdue"],
};

/** Officer states on the map: [state, zh, en, colour], most usual first. */
export const STATES = [];

/** Takes the words of the patrol rules and officer states of /console/config.json. */
export function learn(patrol) {
  if (!patrol) return;
  Object.assign(RULES, patrol.rules);
  STATES.splice(0, STATES.length, ...patrol.states);
}

/** The colour of an officer state, or null (unknown: the stylesheet's grey). */
export function stateColour(state) {
  const found = STATES.find(([name]) => name === state);
  return found ? found[3] : null;
}

export const SEVERITY = { red: ["红灯", "red"], yellow: ["黄灯", "yellow"] };

export const STATUS = {
  firing: ["告警中", "firing"],
  acknowledged: ["已确认", "acknowledged"],
  resolved: ["已恢复", "resolved"],
};

export const STEPS = {
  filing: ["立案", "filing"],
  dispatch: ["派遣", "dispatch"],
  acceptance: ["受理", "acceptance"],
  disposal: ["处置", "disposal"],
  verification: ["核查", "verification"],
  closing: ["结案", "closing"],
};

export const SUBJECTS = { officer: ["人员", "officer"], case: ["案件", "case"] };

export function word(table, key) {
  const w = table[key];
  return w ? `${w[0]} ${w[1]}` : String(key ?? "");
}

export function zh(table, key) {
  const w = table[key];
  return w ? w[0] : String(key ?? "");
}

/** Seconds as 1:02:03 / 02:03, for counters. */
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Seconds as words: 2天3小时 / 3小时5分 / 5分. */
export function span(seconds) {
  const s = Math.abs(Math.round(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d) return `${d}天${h}小时`;
  if (h) return `${h}小时${m}分`;
  if (m) return `${m}分`;
  return `${s}秒`;
}

export function timeOfDay(ts) {
  return new Date(ts * 1000).toLocaleTimeString("zh-CN", { hour12: false });
}
