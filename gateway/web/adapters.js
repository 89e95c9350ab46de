// Adapters: link health, and the adapter operations (join/inclusion windows, scans) with live
// progress through the operations API.
import { api, el, put, table, can, flash, parseMetrics, getSession } from './lib.js';

/** One line about an operation's state. */
export function describe(st) {
  const p = st.progress || {};
  const parts = [`${(st.request && st.request.op) || ''} ${p.state || ''}`];
  if (p.seconds_left !== undefined) parts.push(`${p.seconds_left} s left`);
  parts.push(`seen ${p.devices_seen || 0}, joined ${p.devices_joined || 0}, refused ${p.devices_refused || 0}`);
  if (p.step) parts.push(p.step);
  if (p.detail) parts.push(p.detail);
  return parts.join(' · ');
}

async function follow(adapter, id, out) {
  const s = await getSession();
  const r = await fetch(`/api/adapters/${encodeURIComponent(adapter)}/operations/${encodeURIComponent(id)}/stream`,
    { credentials: 'same-origin', headers: { 'X-CSRF-Token': s.csrf } });
  if (!r.ok || !r.body) { out.textContent = `progress unavailable (${r.status})`; return; }
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        out.textContent = describe(JSON.parse(line));
      } catch (e) { /* a partial line */ }
    }
  }
}

export async function render(root) {
  const [ops, metrics] = await Promise.all([api('GET', '/api/adapters'), api('GET', '/metrics')]);
  const links = parseMetrics(metrics).filter((s) => s.name === 'warden_link_up');
  const linkRows = links.map((s) => el('tr', {}, el('td', {}, s.labels.link), el('td', { class: s.value >= 1 ? 'ok' : 'bad' }, s.value >= 1 ? 'up' : 'down')));
  const opRows = ops.map((a) => {
    const out = el('span', { class: 'progress' }, a.latest ? describe(a.latest) : 'no operation yet');
    const secs = el('input', { type: 'number', min: 1, max: 600, value: '60', class: 'seconds' });
    const actions = el('td', {});
    const start = async (body) => {
      try {
        const st = await api('POST', `/api/adapters/${encodeURIComponent(a.adapter)}/operations`, body);
        flash(`${body.op} started`, 'ok');
        follow(a.adapter, st.id, out).catch((e) => { out.textContent = e.message; });
      } catch (e) { flash(`${body.op}: ${e.message}`, 'error'); }
    };
    if (can('operator')) {
      for (const op of a.operations || []) {
        if (op === 'remove') continue;
        actions.append(el('button', { type: 'button', class: `op-${op}`, onclick: () => start(op === 'close' ? { op } : { op, seconds: Number(secs.value) }) }, op));
      }
      if ((a.operations || []).some((op) => op !== 'remove' && op !== 'close')) actions.append(secs);
    }
    if (!actions.childElementCount) actions.append(el('span', { class: 'muted' }, 'none'));
    return el('tr', { 'data-adapter': a.adapter }, el('td', {}, a.adapter), el('td', {}, (a.operations || []).join(', ') || 'none'), actions, el('td', {}, out));
  });
  put(root, el('h1', {}, 'Adapters'),
    el('h2', {}, 'Links'), linkRows.length ? table('links', ['link', 'state'], linkRows) : el('p', { class: 'muted' }, 'No link reports its health.'),
    el('h2', {}, 'Operations'), opRows.length ? table('operations', ['adapter', 'supports', 'start', 'progress'], opRows) : el('p', { class: 'muted' }, 'No adapter takes operations (join windows, scans) in this configuration.'));
}
