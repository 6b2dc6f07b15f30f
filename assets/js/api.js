// REST under /api/v1 (raos-integration.md's response format): every answer is
// {success, ..., timestamp}; a failure carries `error` (the message) and `error_code`.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error_code;
  }
}

/** Calls the REST API; resolves with the body of a success, throws ApiError otherwise. */
export async function api(method, path, { token, body } = {}) {
  const headers = {};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let parsed = null;
  try {
    parsed = await response.json();
  } catch {
    // A body that is not JSON is reported by status alone.
  }
  if (!response.ok || parsed?.success === false) throw new ApiError(response.status, parsed);
  return parsed;
}

/** Logs in: the grant (`access_token`, `refresh_token`, `user_profile`, `roles`). */
export function login(username, password) {
  return api("POST", "/auth/login", { body: { username, password } });
}

/** Registers a player account, then logs in with it. */
export async function register(username, password) {
  await api("POST", "/auth/register", { body: { username, password } });
  return login(username, password);
}

/** The WebSocket URL of `path` on this server (ws: or wss: as the page was loaded). */
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}
