// Devices: every device with status, zone, role, profile, assurance, last seen, rates and anomaly
// score; filter by text and status; quarantine (operator role).
import { api, el, put, table, can, flash, ago, ASSURANCE, devicePath, attempt, parseMetrics, getCatalogue } from './lib.js';

export function statusCell(st) {
  const cls = st === 'active' ? 'ok' : st === 'pending' ? 'warn' : 'bad';
  return el('span', { class: `status ${cls}` }, st);
}

export async function render(root) {
  const search = el('input', { id: 'device-search', type: 'search', placeholder: 'search id, name, zone, profile…', maxlength: 100 });
  const status = el('select', { id: 'device-status' },
    ['', 'active', 'pending', 'quarantined', 'revoked'].map((s) => el('option', { value: s }, s || 'any status')));
  const holder = el('div', {});
  put(root, el('h1', {}, 'Devices'), el('div', { class: 'toolbar' }, search, status), holder);
  const cat = await getCatalogue();
  const offlineMs = (cat.offline_after_s || 900) * 1000;
  const online = (s) => s.last_seen > 0 && Date.now() - s.last_seen < offlineMs;
  let devices = [];
  let scores = {};
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    const rows = devices
      .filter(({ device: d }) => !status.value || d.status === status.value)
      .filter(({ device: d }) => !q || [d.id, d.name, d.zone, d.role, d.profile, d.model, d.manufacturer]
        .some((v) => typeof v === 'string' && v.toLowerCase().includes(q)))
      .map(({ device: d, stats: s }) => {
        const actions = el('td', {});
        if (can('operator') && d.status === 'active') {
          actions.append(el('button', {
            type: 'button', class: 'quarantine',
            onclick: async () => {
              const reason = window.prompt(`Why quarantine ${d.id}?`);
              if (!reason) return;
              const r = await attempt('quarantine', () => api('POST', `/api/devices/${encodeURIComponent(d.id)}/quarantine`, { reason }));
              if (r) { flash(`${d.id} quarantined`, 'ok'); await load(); }
            },
          }, 'Quarantine'));
        }
        return el('tr', { 'data-id': d.id },
          el('td', {}, el('a', { href: devicePath(d.id) }, d.id)),
          el('td', { class: 'name' }, d.name || ''),
          el('td', {}, statusCell(d.status)),
          el('td', {}, d.zone), el('td', {}, d.role || ''), el('td', {}, d.profile || ''),
          el('td', {}, ASSURANCE[s.best_assurance] || '—'),
          el('td', {}, ago(s.last_seen)),
          el('td', { class: online(s) ? 'ok online' : 'muted offline' }, online(s) ? 'online' : 'offline'),
          el('td', {}, `${s.rate_per_min}/min`),
          el('td', {}, `${s.messages} (${s.denied} denied)`),
          el('td', {}, scores[d.id] !== undefined ? scores[d.id].toFixed(2) : ''),
          actions);
      });
    put(holder, table('devices', ['id', 'name', 'status', 'zone', 'role', 'profile', 'assurance', 'last seen', 'online', 'rate', 'messages', 'anomaly', ''], rows));
  };
  const load = async () => {
    const [d, m] = await Promise.all([api('GET', '/api/devices'), api('GET', '/metrics')]);
    devices = d.sort((a, b) => String(a.device.id).localeCompare(String(b.device.id)));
    scores = {};
    for (const s of parseMetrics(m)) if (s.name === 'warden_anomaly_score') scores[s.labels.device] = s.value;
    draw();
  };
  search.addEventListener('input', draw);
  status.addEventListener('change', draw);
  await load();
  setInterval(() => load().catch(() => {}), 3000);
}
