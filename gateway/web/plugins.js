// Plugins: the configured plugins and their bindings (chain order), what the gateway's metrics
// say about each (active, loads and decisions by outcome) and recent plugin events in the audit
// log (signature refusals, failures, disabling, reloads).
import { api, el, put, table, parseMetrics, getCatalogue, when } from './lib.js';

export async function render(root) {
  const [metrics, cat, tail] = await Promise.all([api('GET', '/metrics'), getCatalogue(), api('GET', '/api/audit/tail?n=2000')]);
  const m = parseMetrics(metrics);
  const plugins = {};
  const get = (n) => (plugins[n] = plugins[n] || { active: null, loads: {}, decisions: {}, module: '', wasi: [] });
  const conf = cat.plugins || { load: [], bind: [], require_signature: true };
  for (const l of conf.load) Object.assign(get(l.name), { module: l.module || `${l.name.replace(/-/g, '_')}.wasm`, wasi: l.wasi || [] });
  for (const s of m) {
    if (s.name === 'warden_plugin_active') get(s.labels.plugin).active = s.value;
    if (s.name === 'warden_plugin_loads_total') get(s.labels.plugin).loads[s.labels.outcome] = s.value;
    if (s.name === 'warden_plugin_decisions_total') get(s.labels.plugin).decisions[s.labels.outcome] = s.value;
  }
  const fmt = (o) => Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ') || '—';
  const rows = Object.entries(plugins).sort().map(([name, p]) => el('tr', { 'data-plugin': name },
    el('td', {}, name), el('td', { class: 'mono' }, p.module),
    el('td', { class: p.active ? 'ok' : 'bad' }, p.active ? 'active' : 'disabled / not loaded'),
    el('td', {}, fmt(p.loads)), el('td', {}, fmt(p.decisions)), el('td', {}, p.wasi.join(', ') || 'none')));
  const sel = (b) => ['zones', 'roles', 'protocols', 'devices'].filter((k) => b[k] && b[k].length).map((k) => `${k}: ${b[k].join(', ')}`).join('; ') || 'every message';
  const binds = conf.bind.map((b, i) => el('tr', {}, el('td', {}, String(i + 1)), el('td', {}, b.plugin), el('td', {}, sel(b)), el('td', {}, b.direction || 'both')));
  const events = tail.filter((r) => typeof r.action === 'string' && r.action.startsWith('plugin')).slice(-30).reverse()
    .map((r) => el('tr', {}, el('td', {}, when(r.ts)), el('td', {}, r.action), el('td', {}, r.verdict || ''), el('td', { class: 'reason' }, r.reason)));
  put(root, el('h1', {}, 'Plugins'),
    el('p', {}, conf.require_signature ? 'Signatures are required: an unsigned or wrongly signed module is refused.' : 'Signatures are NOT required by this configuration.'),
    rows.length ? table('plugins', ['plugin', 'module', 'state', 'loads', 'decisions', 'WASI'], rows) : el('p', { id: 'plugins-none' }, 'No plugin is configured.'),
    el('h2', {}, 'Bindings (chain order)'),
    binds.length ? table('bindings', ['#', 'plugin', 'selects', 'direction'], binds) : el('p', { class: 'muted' }, 'No binding.'),
    el('h2', {}, 'Recent plugin events'),
    events.length ? table('plugin-events', ['time', 'action', 'verdict', 'reason'], events) : el('p', { class: 'muted' }, 'None in the recent audit log.'));
}
