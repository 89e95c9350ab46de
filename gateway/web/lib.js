// Shared helpers for the dashboard's pages. Every text from the gateway goes into the DOM as
// text (textContent / text nodes), never as markup: device names, points and reasons come from
// devices and are attacker-controlled.

let session = null;

const ROLES = ['viewer', 'operator', 'admin'];

/** The logged-in operator and the session's CSRF token; to the login page without a session. */
export async function getSession() {
  if (session) return session;
  const r = await fetch('/ui/session', { credentials: 'same-origin' });
  if (!r.ok) {
    location.assign('/ui/login');
    throw new Error('not logged in');
  }
  session = await r.json();
  return session;
}

/** Whether the operator's role is at least `role`. */
export function can(role) {
  return session !== null && ROLES.indexOf(session.role) >= ROLES.indexOf(role);
}

/** A JSON API call with the CSRF token; throws an Error with the gateway's message on failure. */
export async function api(method, path, body) {
  const s = await getSession();
  const init = { method, credentials: 'same-origin', headers: { 'X-CSRF-Token': s.csrf } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    location.assign('/ui/login');
    throw new Error('session ended');
  }
  const text = await r.text();
  let data = text;
  try { data = JSON.parse(text); } catch (e) { /* not JSON (metrics, exports) */ }
  if (!r.ok) {
    const msg = data && typeof data === 'object' && typeof data.error === 'string' ? data.error : `HTTP ${r.status}`;
    throw new Error(msg);
  }
  return data;
}

/** An element: `attrs` are properties/attributes (`on…` functions become listeners). */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'value') e.value = v;
    else if (k === 'checked') e.checked = !!v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  append(e, children);
  return e;
}

function append(e, children) {
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces an element's content. */
export function put(e, ...children) {
  e.replaceChildren();
  append(e, children);
}

/** A table from header names and rows of cells (each a node or text). */
export function table(id, heads, rows) {
  return el('table', { id },
    el('thead', {}, el('tr', {}, heads.map((h) => el('th', {}, h)))),
    el('tbody', {}, rows));
}

/** A message in the flash line (`kind`: ok or error). */
export function flash(text, kind) {
  const f = document.getElementById('flash');
  f.className = kind || '';
  f.textContent = text;
}

export function when(ms) {
  if (!ms) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function ago(ms) {
  if (!ms) return 'never';
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export const ASSURANCE = ['—', 'none', 'channel', 'shared-key', 'certificate'];

export function devicePath(id) {
  return `/ui/devices/${encodeURIComponent(id)}`;
}

/** Runs `f`, showing its error (if any) in the flash line; returns its value or undefined. */
export async function attempt(what, f) {
  try {
    const v = await f();
    return v;
  } catch (e) {
    flash(`${what}: ${e.message}`, 'error');
    return undefined;
  }
}

/** Parses Prometheus/OpenMetrics text into samples `{name, labels, value}`. */
export function parseMetrics(text) {
  const out = [];
  for (const line of String(text).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Sums samples of one metric, grouped by one label (or all together with no label). */
export function sumBy(samples, name, label) {
  const out = {};
  for (const s of samples) {
    if (s.name !== name) continue;
    const k = label ? (s.labels[label] ?? '') : '';
    out[k] = (out[k] || 0) + s.value;
  }
  return out;
}

let catalogue = null;

/** The configured profiles (with their commands), zones and roles; empty if unavailable. */
export async function getCatalogue() {
  if (catalogue) return catalogue;
  try {
    catalogue = await api('GET', '/api/catalogue');
  } catch (e) {
    catalogue = { profiles: {}, zones: [], roles: [] };
  }
  return catalogue;
}

/** A <datalist> of choices (an input with `list` = its id offers them and still takes text). */
export function datalist(id, values) {
  return el('datalist', { id }, values.map((v) => el('option', { value: v })));
}
