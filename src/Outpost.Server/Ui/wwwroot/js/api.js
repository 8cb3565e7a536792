// The public API, as the CLI and kubectl use it, with the API token the user signed in with.
// The token lives in this tab's session storage: never in a URL, gone when the tab closes.

const TOKEN = 'outpost.token';
export const TABLE = 'application/json;as=Table;g=meta.k8s.io;v=v1, application/json';
export const OUTPOST = '/apis/outpost.dev/v1';

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  set token(value) { value ? sessionStorage.setItem(TOKEN, value) : sessionStorage.removeItem(TOKEN); },
};

function headers(accept) {
  return { Authorization: 'Bearer ' + session.token, Accept: accept ?? 'application/json' };
}

async function fail(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.message) message = body.message;
  } catch { /* not a Status */ }
  if (response.status === 401) onUnauthorized?.();
  return new ApiError(response.status, message);
}

/** Called when the server refuses the token (revoked, expired): back to sign-in. */
export let onUnauthorized = null;
export function setUnauthorizedHandler(handler) { onUnauthorized = handler; }

export async function get(path, { accept, signal } = {}) {
  const response = await fetch(path, { headers: headers(accept), signal, cache: 'no-store' });
  if (!response.ok) throw await fail(response);
  return response.json();
}

export async function post(path, body, { signal } = {}) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { ...headers(), 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await fail(response);
  return response.json();
}

/** Who the token is: {username, role} from a SelfSubjectReview (what `kubectl auth whoami` asks). */
export async function whoami(token) {
  const response = await fetch('/apis/authentication.k8s.io/v1/selfsubjectreviews', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token, Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify({ apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' }),
  });
  if (!response.ok) throw await fail(response);
  const info = (await response.json()).status?.userInfo ?? {};
  const group = (info.groups ?? []).find(g => g.startsWith('outpost:')) ?? 'outpost:viewer';
  return { username: info.username ?? '', role: group.slice('outpost:'.length) };
}

/**
 * Follows a watch (?watch=true): calls onEvent({type, object}) per line until the stream ends
 * or the signal aborts. Resolves when the server closes it (its timeout); the caller watches again.
 */
export async function watch(path, onEvent, { accept, signal } = {}) {
  const response = await fetch(path + (path.includes('?') ? '&' : '?') + 'watch=true', { headers: headers(accept), signal, cache: 'no-store' });
  if (!response.ok) throw await fail(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffered += value;
    let newline;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim()) onEvent(JSON.parse(line));
    }
  }
}

/**
 * Keeps a watch open: on an error or the server's timeout it waits (1 s, up to 30 s when it
 * keeps failing), calls relist() to catch up, and watches again. Stops when the signal aborts.
 */
export async function keepWatching(open, relist, signal, onError) {
  let delay = 1000;
  while (!signal.aborted) {
    try {
      await open();
      delay = 1000;
    } catch (error) {
      if (signal.aborted) return;
      onError?.(error);
      delay = Math.min(delay * 2, 30000);
    }
    await sleep(delay, signal);
    if (signal.aborted) return;
    try { await relist(); } catch (error) { onError?.(error); }
  }
}

export function sleep(ms, signal) {
  return new Promise(resolve => {
    const stop = () => { clearTimeout(timer); resolve(); };
    const timer = setTimeout(() => { signal?.removeEventListener('abort', stop); resolve(); }, ms);
    signal?.addEventListener('abort', stop, { once: true });
  });
}

/** Calls fn now and every `ms` while the signal is live and the page is visible. */
export function every(ms, fn, signal) {
  let timer = null;
  const run = async () => {
    if (signal.aborted) return;
    if (!document.hidden) {
      try { await fn(); } catch { /* shown by fn's own error handling */ }
    }
    if (!signal.aborted) timer = setTimeout(run, ms);
  };
  signal.addEventListener('abort', () => clearTimeout(timer), { once: true });
  run();
}

/** A Table's rows as objects keyed by column name, with the row's metadata. */
export function rowsOf(tableJson) {
  const names = tableJson.columnDefinitions.map(c => c.name);
  return (tableJson.rows ?? []).map(row => {
    const out = { metadata: row.object?.metadata ?? {} };
    names.forEach((n, i) => { out[n] = row.cells[i]; });
    return out;
  });
}
