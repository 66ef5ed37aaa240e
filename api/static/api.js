// Calls to /api/v1 with the bearer token kept in sessionStorage.

const KEY = "citywatch.token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export async function call(method, path, body, bearer = token.get()) {
  const headers = { Accept: "application/json" };
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, `无法连接服务器 (cannot reach the server): ${err.message}`);
  }
  let doc = null;
  try {
    doc = await response.json();
  } catch {
    // A proxy's HTML error page: fall back to the status text below.
  }
  if (!response.ok) {
    const message = doc && doc.error && doc.error.message ? doc.error.message : response.statusText;
    throw new ApiError(response.status, message || `HTTP ${response.status}`);
  }
  return doc;
}

export const get = (path, bearer) => call("GET", path, undefined, bearer);
export const post = (path, body) => call("POST", path, body);

/** Every page of a paginated list (items, total, next). */
export async function getAll(path, bearer) {
  const sep = path.includes("?") ? "&" : "?";
  let items = [];
  let offset = 0;
  for (;;) {
    const page = await get(`${path}${sep}limit=1000&offset=${offset}`, bearer);
    items = items.concat(page.items);
    if (page.next === null || page.next === undefined) return items;
    offset = page.next;
  }
}

/** The error as people read it: what failed, in Chinese first. */
export function describe(err) {
  const words = {
    401: "令牌无效或缺失 (unauthorised)",
    403: "无权限 (forbidden)",
    404: "未找到 (not found)",
    409: "状态冲突 (conflict)",
    429: "请求过于频繁 (rate limited)",
    503: "服务不可用 (unavailable)",
  };
  if (!(err instanceof ApiError)) return String(err && err.message ? err.message : err);
  const head = words[err.status] || (err.status ? `错误 ${err.status}` : "");
  return head ? `${head}: ${err.message}` : err.message;
}
