// Plugins: what the gateway's metrics say about each loaded plugin (active, loads, decisions
// and failures by outcome).
import { api, el, put, table, parseMetrics } from './lib.js';

export async function render(root) {
  const m = parseMetrics(await api('GET', '/metrics'));
  const plugins = {};
  const get = (n) => (plugins[n] = plugins[n] || { active: null, loads: {}, decisions: {} });
  for (const s of m) {
    if (s.name === 'warden_plugin_active') get(s.labels.plugin).active = s.value;
    if (s.name === 'warden_plugin_loads_total') get(s.labels.plugin).loads[s.labels.outcome] = s.value;
    if (s.name === 'warden_plugin_decisions_total') get(s.labels.plugin).decisions[s.labels.outcome] = s.value;
  }
  const fmt = (o) => Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ') || '—';
  const rows = Object.entries(plugins).sort().map(([name, p]) => el('tr', { 'data-plugin': name },
    el('td', {}, name),
    el('td', { class: p.active ? 'ok' : 'bad' }, p.active ? 'active' : 'disabled / not loaded'),
    el('td', {}, fmt(p.loads)), el('td', {}, fmt(p.decisions))));
  put(root, el('h1', {}, 'Plugins'),
    rows.length ? table('plugins', ['plugin', 'state', 'loads', 'decisions'], rows) : el('p', { id: 'plugins-none' }, 'No plugin is configured.'),
    el('p', { class: 'muted' }, 'Versions, signatures and bindings: `warden plugin list` on the hub (not yet in the API).'));
}
