// Live decisions: a Server-Sent Events stream of the pipeline's decisions and other audit
// records, filtered by the gateway (verdict, category, device) and here (text); pausable.
import { el, put, when, flash } from './lib.js';

const MAX_ROWS = 500;

export async function render(root) {
  const verdict = el('select', { id: 'live-verdict' }, ['', 'deny', 'allow'].map((v) => el('option', { value: v }, v || 'any verdict')));
  const category = el('select', { id: 'live-category' }, ['', 'decision', 'aggregate', 'operator', 'security', 'system'].map((v) => el('option', { value: v }, v || 'any category')));
  const device = el('input', { id: 'live-device', placeholder: 'device id (e.g. sim:switch-1)', maxlength: 200 });
  const text = el('input', { id: 'live-text', type: 'search', placeholder: 'text filter', maxlength: 100 });
  const pause = el('button', { type: 'button', id: 'live-pause' }, 'Pause');
  const state = el('span', { id: 'live-state', class: 'muted' }, 'connecting…');
  const list = el('tbody', { id: 'live-rows' });
  let paused = false;
  let held = [];
  let source = null;

  const row = (e) => el('tr', { class: `live-row ${e.verdict || ''}`, 'data-device': e.device || '', 'data-verdict': e.verdict || '' },
    el('td', {}, when(e.ts)), el('td', {}, e.category), el('td', {}, e.action), el('td', {}, e.device || ''),
    el('td', { class: e.verdict || '' }, e.verdict || ''), el('td', {}, e.decider || ''), el('td', { class: 'reason' }, e.reason), el('td', {}, e.actor));
  const show = (e) => {
    const q = text.value.trim().toLowerCase();
    if (q && ![e.device, e.reason, e.action, e.actor, e.decider].some((v) => typeof v === 'string' && v.toLowerCase().includes(q))) return;
    list.prepend(row(e));
    while (list.childElementCount > MAX_ROWS) list.lastElementChild.remove();
  };
  const connect = () => {
    if (source) source.close();
    const p = new URLSearchParams();
    if (verdict.value) p.set('verdict', verdict.value);
    if (category.value) p.set('category', category.value);
    if (device.value.trim()) p.set('device', device.value.trim());
    source = new EventSource(`/api/live?${p}`);
    source.onopen = () => { state.textContent = 'live'; state.className = 'ok'; };
    source.onerror = () => { state.textContent = 'reconnecting…'; state.className = 'warn'; };
    source.onmessage = (m) => {
      let e;
      try { e = JSON.parse(m.data); } catch (err) { return; }
      if (paused) { held.push(e); if (held.length > MAX_ROWS) held.shift(); pause.textContent = `Resume (${held.length} held)`; } else show(e);
    };
    source.addEventListener('lagged', () => flash('The live view fell behind and reconnected; some records were skipped (see Audit).', 'error'));
  };
  pause.addEventListener('click', () => {
    paused = !paused;
    if (!paused) { held.forEach(show); held = []; pause.textContent = 'Pause'; } else pause.textContent = 'Resume';
  });
  for (const c of [verdict, category]) c.addEventListener('change', connect);
  device.addEventListener('change', connect);
  put(root, el('h1', {}, 'Live decisions'),
    el('div', { class: 'toolbar' }, verdict, category, device, text, pause, state),
    el('div', { class: 'live-list' }, el('table', { id: 'live' },
      el('thead', {}, el('tr', {}, ['time', 'category', 'action', 'device', 'verdict', 'decider', 'reason', 'actor'].map((h) => el('th', {}, h)))),
      list)));
  connect();
}
