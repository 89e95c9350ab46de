// Plugins: the configured plugins and their bindings (chain order); what the running host says of
// each (`GET /api/plugins`: the version loaded — module SHA-256 and contract —, its signer or that
// it is unsigned, when it was loaded, reloads, refused or disabled and why, the last reload
// refused); what the gateway's metrics say (loads and decisions by outcome) and recent plugin
// events in the audit log (signature refusals, failures, disabling, reloads).
import { api, el, put, table, parseMetrics, getCatalogue, when } from './lib.js';

export async function render(root) {
  const [metrics, cat, tail, host] = await Promise.all([api('GET', '/metrics'), getCatalogue(), api('GET', '/api/audit/tail?n=2000'),
    api('GET', '/api/plugins').catch(() => ({ plugins: [] }))]);
  const m = parseMetrics(metrics);
  const plugins = {};
  const get = (n) => (plugins[n] = plugins[n] || { active: null, loads: {}, decisions: {}, module: '', wasi: [], run: null });
  const conf = cat.plugins || { load: [], bind: [], require_signature: true };
  for (const l of conf.load) Object.assign(get(l.name), { module: l.module || `${l.name.replace(/-/g, '_')}.wasm`, wasi: l.wasi || [] });
  for (const r of host.plugins || []) get(r.name).run = r;
  for (const s of m) {
    if (s.name === 'warden_plugin_active') get(s.labels.plugin).active = s.value;
    if (s.name === 'warden_plugin_loads_total') get(s.labels.plugin).loads[s.labels.outcome] = s.value;
    if (s.name === 'warden_plugin_decisions_total') get(s.labels.plugin).decisions[s.labels.outcome] = s.value;
  }
  const fmt = (o) => Object.entries(o).map(([k, v]) => `${k}: ${v}`).join(', ') || '—';
  // what the host runs: state (and why not active), version, signature, when loaded and how often
  const state = (p) => {
    const r = p.run;
    if (!r) return el('td', { class: p.active ? 'ok' : 'bad', 'data-field': 'state' }, p.active ? 'active' : 'disabled / not loaded');
    return el('td', { class: r.state === 'active' ? 'ok' : 'bad', 'data-field': 'state', 'data-state': r.state },
      r.state, r.reason ? el('div', { class: 'reason' }, r.reason) : null,
      r.last_refused ? el('div', { class: 'reason muted' }, `last reload refused ${when(r.last_refused_ms)}: ${r.last_refused}`) : null);
  };
  const version = (r) => (r && r.sha256
    ? el('td', { 'data-field': 'version' }, `contract ${r.contract}`, el('div', { class: 'mono', title: r.sha256 }, `sha256 ${r.sha256}`))
    : el('td', { class: 'muted', 'data-field': 'version' }, 'none loaded'));
  const signature = (r) => {
    if (!r || !r.signature) return el('td', { class: 'muted', 'data-field': 'signature' }, '—');
    return r.signature === 'verified'
      ? el('td', { class: 'ok', 'data-field': 'signature' }, 'verified, key ', el('span', { class: 'mono' }, r.signer))
      : el('td', { class: 'bad', 'data-field': 'signature' }, 'unsigned (signatures not required)');
  };
  const loaded = (r) => el('td', { 'data-field': 'loaded' }, r && r.loaded_ms ? when(r.loaded_ms) : '—',
    r && r.loads > 1 ? el('div', { class: 'muted' }, `${r.loads - 1} reload(s)`) : null);
  const rows = Object.entries(plugins).sort().map(([name, p]) => el('tr', { 'data-plugin': name },
    el('td', {}, name), el('td', { class: 'mono' }, p.run ? p.run.module : p.module),
    state(p), version(p.run), signature(p.run), loaded(p.run),
    el('td', {}, fmt(p.loads)), el('td', {}, fmt(p.decisions)), el('td', {}, p.wasi.join(', ') || 'none')));
  const sel = (b) => ['zones', 'roles', 'protocols', 'devices'].filter((k) => b[k] && b[k].length).map((k) => `${k}: ${b[k].join(', ')}`).join('; ') || 'every message';
  const binds = conf.bind.map((b, i) => el('tr', {}, el('td', {}, String(i + 1)), el('td', {}, b.plugin), el('td', {}, sel(b)), el('td', {}, b.direction || 'both')));
  const events = tail.filter((r) => typeof r.action === 'string' && r.action.startsWith('plugin')).slice(-30).reverse()
    .map((r) => el('tr', {}, el('td', {}, when(r.ts)), el('td', {}, r.action), el('td', {}, r.verdict || ''), el('td', { class: 'reason' }, r.reason)));
  put(root, el('h1', {}, 'Plugins'),
    el('p', {}, conf.require_signature ? 'Signatures are required: an unsigned or wrongly signed module is refused.' : 'Signatures are NOT required by this configuration.'),
    rows.length ? table('plugins', ['plugin', 'module', 'state', 'version', 'signature', 'loaded', 'loads', 'decisions', 'WASI'], rows) : el('p', { id: 'plugins-none' }, 'No plugin is configured.'),
    el('h2', {}, 'Bindings (chain order)'),
    binds.length ? table('bindings', ['#', 'plugin', 'selects', 'direction'], binds) : el('p', { class: 'muted' }, 'No binding.'),
    el('h2', {}, 'Recent plugin events'),
    events.length ? table('plugin-events', ['time', 'action', 'verdict', 'reason'], events) : el('p', { class: 'muted' }, 'None in the recent audit log.'));
}
