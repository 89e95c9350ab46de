// Audit: the tail of the hash-chained log, filtered; verify the chain (result and head); export
// what is shown as JSON lines.
import { api, el, put, table, when, flash, attempt } from './lib.js';

export async function render(root) {
  const n = el('input', { id: 'audit-n', type: 'number', min: 1, max: 10000, value: '200' });
  const text = el('input', { id: 'audit-filter', type: 'search', placeholder: 'filter (device, action, reason, actor)', maxlength: 100 });
  const verdict = el('select', { id: 'audit-verdict' }, ['', 'deny', 'allow'].map((v) => el('option', { value: v }, v || 'any verdict')));
  const result = el('div', { id: 'verify-result', class: 'card' }, 'Not verified yet.');
  const holder = el('div', {});
  let records = [];
  const shown = () => {
    const q = text.value.trim().toLowerCase();
    return records.filter((r) => (!verdict.value || r.verdict === verdict.value)
      && (!q || [r.device, r.action, r.reason, r.actor, r.decider].some((v) => typeof v === 'string' && v.toLowerCase().includes(q))));
  };
  const draw = () => {
    const rows = shown().slice().reverse().map((r) => el('tr', { 'data-seq': r.seq },
      el('td', {}, String(r.seq)), el('td', {}, when(r.ts)), el('td', {}, r.category), el('td', {}, r.action),
      el('td', {}, r.device || ''), el('td', { class: r.verdict || '' }, r.verdict || ''), el('td', { class: 'reason' }, r.reason), el('td', {}, r.actor)));
    put(holder, table('audit', ['seq', 'time', 'category', 'action', 'device', 'verdict', 'reason', 'actor'], rows));
  };
  const load = async () => {
    const v = Number(n.value);
    if (!Number.isInteger(v) || v < 1 || v > 10000) { flash('the number of records is 1 to 10000', 'error'); return; }
    const r = await attempt('audit tail', () => api('GET', `/api/audit/tail?n=${v}`));
    if (r) { records = r; draw(); }
  };
  const verify = el('button', { type: 'button', id: 'audit-verify', onclick: async () => {
    put(result, 'Verifying…');
    try {
      const r = await api('GET', '/api/audit/verify');
      result.className = 'card ok';
      put(result, el('strong', { id: 'verify-ok' }, 'Audit log intact'), el('pre', { class: 'mono' }, JSON.stringify(r, null, 2)));
    } catch (e) {
      result.className = 'card bad';
      put(result, el('strong', { id: 'verify-bad' }, 'Verification FAILED: '), e.message);
    }
  } }, 'Verify the chain');
  const exp = el('button', { type: 'button', id: 'audit-export', onclick: () => {
    const blob = new Blob([shown().map((r) => JSON.stringify(r)).join('\n') + '\n'], { type: 'application/x-ndjson' });
    const a = el('a', { href: URL.createObjectURL(blob), download: 'warden-audit.jsonl' });
    document.body.append(a);
    a.click();
    a.remove();
  } }, 'Export shown (JSON lines)');
  n.addEventListener('change', load);
  text.addEventListener('input', draw);
  verdict.addEventListener('change', draw);
  put(root, el('h1', {}, 'Audit log'),
    el('div', { class: 'toolbar' }, el('label', { for: 'audit-n' }, 'last'), n, verdict, text,
      el('button', { type: 'button', id: 'audit-reload', onclick: load }, 'Reload'), verify, exp),
    result, holder);
  await load();
}
