// One device: identity evidence, points with current values and a small history chart (kept by
// the gateway since it started, then followed live), recent decisions with reasons, and commands
// with their results.
import { api, el, put, table, can, flash, when, ago, ASSURANCE, attempt, getCatalogue } from './lib.js';
import { statusCell } from './devices.js';

let HISTORY = 48;
const SVG = 'http://www.w3.org/2000/svg';

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A line chart of numeric values (oldest first), as an SVG element. */
export function chart(values) {
  const w = 240;
  const h = 48;
  const s = svg('svg', { class: 'chart', width: w, height: h, viewBox: `0 0 ${w} ${h}`, role: 'img' });
  if (values.length < 2) return s;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const pts = values.map((v, i) => `${(i * (w - 4)) / (values.length - 1) + 2},${h - 2 - ((v - lo) * (h - 4)) / span}`);
  s.append(svg('polyline', { points: pts.join(' ') }));
  return s;
}

function parseArgs(text) {
  const args = {};
  for (const part of text.split(/\s+/).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error(`argument \`${part}\` is not name=value`);
    const k = part.slice(0, i);
    const raw = part.slice(i + 1);
    let v = raw;
    if (raw === 'true' || raw === 'false') v = raw === 'true';
    else if (raw !== '' && !Number.isNaN(Number(raw))) v = Number(raw);
    args[k] = v;
  }
  return args;
}

function show(v) {
  if (v && typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

export async function render(root, id) {
  const path = `/api/devices/${encodeURIComponent(id)}`;
  const info = el('div', { class: 'card', id: 'device-info' });
  const pointsBody = el('tbody', { id: 'point-rows' });
  const pointsNote = el('p', { class: 'muted', id: 'points-note' }, 'Waiting for the device\'s next allowed message…');
  const decisions = el('div', {});
  const cmdName = el('input', { id: 'command-name', placeholder: 'command (e.g. turn_on)', maxlength: 64, list: 'device-commands' });
  const cmdList = el('datalist', { id: 'device-commands' });
  const cmdAllowed = el('p', { class: 'muted', id: 'command-allowed' });
  const cmdArgs = el('input', { id: 'command-args', placeholder: 'arguments: name=value …', maxlength: 1000 });
  const cmdResult = el('pre', { id: 'command-result', class: 'mono' });
  const actions = el('div', { class: 'toolbar', id: 'device-actions' });
  const history = {};
  const rows = {};

  const drawInfo = async () => {
    const { device: d, stats: s } = await api('GET', path);
    const cat = await getCatalogue();
    const prof = d.profile ? cat.profiles[d.profile] : undefined;
    const cmds = prof ? prof.commands : [];
    put(cmdList, cmds.map((c) => el('option', { value: c })));
    cmdAllowed.textContent = prof
      ? (cmds.length ? `profile ${d.profile} allows: ${cmds.join(', ')}` : `profile ${d.profile} allows no command`)
      : 'no profile: every command is denied';
    const kv = [
      ['name', d.name || ''], ['status', statusCell(d.status)], ['reason', d.status_reason],
      ['since', `${when(d.status_at)} by ${d.status_by}`], ['zone', d.zone], ['role', d.role || ''],
      ['profile', d.profile || ''], ['assurance (best seen)', ASSURANCE[s.best_assurance] || '—'],
      ['firmware posture', s.posture], ['manufacturer', d.manufacturer || ''], ['model', d.model || ''],
      ['firmware', d.firmware || ''], ['serial', d.serial || ''],
      ['credentials', (d.credentials || []).join(', ') || 'none'],
      ['first seen', when(d.first_seen)], ['last seen', ago(s.last_seen)],
      ['messages', `${s.messages} (${s.denied} denied), ${s.rate_per_min}/min, ${s.bytes} bytes`],
    ];
    put(info, el('table', { class: 'kv' }, el('tbody', {}, kv.map(([k, v]) => el('tr', { 'data-key': k }, el('th', {}, k), el('td', {}, v))))));
    put(actions);
    if (can('operator')) {
      const reason = el('input', { id: 'action-reason', placeholder: 'reason', maxlength: 500 });
      const act = (name, label) => el('button', { type: 'button', id: `action-${name}`, onclick: async () => {
        const r = await attempt(name, () => api('POST', `${path}/${name}`, { reason: reason.value.trim() }));
        if (r) { flash(`${id}: ${name} done`, 'ok'); await drawInfo(); }
      } }, label);
      actions.append(reason);
      if (d.status === 'active') actions.append(act('quarantine', 'Quarantine'));
      if (d.status === 'quarantined') actions.append(act('release', 'Release'));
      if (d.status === 'pending') actions.append(el('a', { href: '/ui/pending' }, 'Approve on the Pending page'));
    }
    if (can('admin') && d.status !== 'revoked') {
      actions.append(el('button', { type: 'button', id: 'action-revoke', onclick: async () => {
        if (!window.confirm(`Revoke ${id}? It can only come back by re-enrolling.`)) return;
        const why = document.getElementById('action-reason');
        const r = await attempt('revoke', () => api('POST', `${path}/revoke`, { reason: why ? why.value.trim() : '' }));
        if (r) { flash(`${id} revoked`, 'ok'); await drawInfo(); }
      } }, 'Revoke'));
    }
  };

  const point = (p, ts, past) => {
    const h = (history[p.name] = history[p.name] || []);
    if (past) h.push(...past.map((s) => s[1]));
    else if (typeof p.value === 'number') h.push(p.value);
    else if (typeof p.value === 'boolean') h.push(p.value ? 1 : 0);
    while (h.length > HISTORY) h.shift();
    const cells = [el('td', {}, p.name), el('td', { class: 'value' }, `${show(p.value)}${p.unit ? ` ${p.unit}` : ''}`), el('td', {}, when(ts)), el('td', {}, chart(h))];
    if (!rows[p.name]) {
      rows[p.name] = el('tr', { 'data-point': p.name });
      pointsBody.append(rows[p.name]);
    }
    put(rows[p.name], cells);
    pointsNote.textContent = '';
  };

  const drawDecisions = async () => {
    const tail = await api('GET', '/api/audit/tail?n=2000');
    const mine = tail.filter((r) => r.device === id).slice(-30).reverse();
    put(decisions, mine.length ? table('decisions', ['time', 'action', 'verdict', 'decider', 'reason', 'actor'], mine.map((r) => el('tr', {},
      el('td', {}, when(r.ts)), el('td', {}, r.action), el('td', { class: r.verdict || '' }, r.verdict || ''),
      el('td', {}, r.decider || ''), el('td', { class: 'reason' }, r.reason), el('td', {}, r.actor))))
      : el('p', { class: 'muted' }, 'No audit record names this device in the recent log.'));
  };

  const send = el('button', { type: 'button', id: 'command-send', onclick: async () => {
    const name = cmdName.value.trim();
    if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) { flash('a command name is 1-64 letters, digits, _ . or -', 'error'); return; }
    let args;
    try { args = parseArgs(cmdArgs.value.trim()); } catch (e) { flash(e.message, 'error'); return; }
    cmdResult.textContent = 'sending…';
    try {
      const r = await api('POST', `${path}/commands`, { command: name, args });
      cmdResult.textContent = JSON.stringify(r, null, 2);
      cmdResult.dataset.outcome = r.outcome || '';
    } catch (e) {
      cmdResult.textContent = `refused: ${e.message}`;
      cmdResult.dataset.outcome = 'error';
    }
    drawDecisions().catch(() => {});
  } }, 'Send');

  put(root, el('h1', { id: 'device-id' }, id), actions, info,
    el('h2', {}, 'Points'), pointsNote, el('table', { id: 'points' }, el('thead', {}, el('tr', {}, ['point', 'value', 'at', 'history'].map((h) => el('th', {}, h)))), pointsBody),
    can('operator') ? el('div', {}, el('h2', {}, 'Send a command'), cmdAllowed, el('div', { class: 'toolbar' }, cmdName, cmdList, cmdArgs, send), cmdResult) : null,
    el('h2', {}, 'Recent decisions'), decisions);
  await drawInfo();
  await drawDecisions();
  const src = new EventSource(`${path}/points/live`);
  // what the gateway kept since it started; live updates older than it are not drawn twice
  const kept = await api('GET', `${path}/points`);
  HISTORY = kept.history_samples || HISTORY;
  const seen = {};
  for (const p of kept.points) { point(p, p.ts, p.history); seen[p.name] = p.ts; }
  if (!kept.points.length) pointsNote.textContent = 'Nothing of this device has been delivered since the gateway started; waiting for its next allowed message…';
  src.onmessage = (m) => {
    let u;
    try { u = JSON.parse(m.data); } catch (e) { return; }
    for (const p of u.points || []) {
      if (seen[p.name] !== undefined && u.ts <= seen[p.name]) continue;
      point(p, u.ts);
    }
  };
  setInterval(() => drawInfo().catch(() => {}), 5000);
  setInterval(() => drawDecisions().catch(() => {}), 5000);
}
