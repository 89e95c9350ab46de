// Overview: devices by status and protocol, message and decision rates, queue, broker, audit
// head, alarms.
import { api, el, put, parseMetrics, sumBy } from './lib.js';

function card(title, ...body) {
  return el('div', { class: 'card' }, el('h2', {}, title), ...body);
}

function counts(obj) {
  const entries = Object.entries(obj).sort();
  if (!entries.length) return el('p', { class: 'muted' }, 'none');
  return el('ul', {}, entries.map(([k, v]) => el('li', {}, `${k || '—'}: ${v}`)));
}

let previous = null;

async function load(root) {
  const [status, devices, metricsText] = await Promise.all([
    api('GET', '/api/status'), api('GET', '/api/devices'), api('GET', '/metrics'),
  ]);
  const byStatus = {};
  const byProtocol = {};
  for (const d of devices) {
    byStatus[d.device.status] = (byStatus[d.device.status] || 0) + 1;
    const proto = String(d.device.id).split(':')[0];
    byProtocol[proto] = (byProtocol[proto] || 0) + 1;
  }
  const m = parseMetrics(metricsText);
  const messages = sumBy(m, 'warden_messages_total', 'verdict');
  const now = Date.now();
  const perMin = devices.reduce((n, d) => n + (d.stats.rate_per_min || 0), 0);
  let rates = el('p', {}, `${perMin} messages/min over the last minute (by verdict: at the next refresh)`);
  if (previous) {
    const dt = (now - previous.at) / 1000;
    const r = {};
    for (const [k, v] of Object.entries(messages)) r[k || 'all'] = `${((v - (previous.messages[k] || 0)) / dt).toFixed(1)}/s`;
    rates = el('div', {}, el('p', {}, `${perMin} messages/min over the last minute`), counts(r));
  }
  previous = { at: now, messages };
  const alarms = [];
  if (status.disk && status.disk.low) alarms.push('disk space low');
  if (status.disk && status.disk.degraded) alarms.push('degraded mode: audit writes failing');
  const brute = sumBy(m, 'warden_brute_force_alarms_total', 'listener');
  for (const [k, v] of Object.entries(brute)) if (v > 0) alarms.push(`brute-force alarm on ${k}: ${v}`);
  const anomalies = sumBy(m, 'warden_anomaly_alerts_total');
  if (anomalies[''] > 0) alarms.push(`anomaly alerts: ${anomalies['']}`);
  put(root,
    el('h1', {}, `Gateway ${status.gateway}`),
    el('div', { class: 'cards', id: 'overview' },
      card('Devices', el('p', { id: 'device-count' }, `${status.devices} devices, ${status.pending} pending`), counts(byStatus)),
      card('Protocols', counts(byProtocol)),
      card('Messages by verdict (total)', counts(messages)),
      card('Message rates', rates),
      card('Northbound', el('p', {}, `broker ${status.broker_connected ? 'connected' : 'not connected'}`),
        el('p', {}, `queue depth ${status.queue_depth}, published ${status.published}`)),
      card('Audit head', el('p', { class: 'mono', id: 'audit-head' }, `#${status.audit_head.seq} ${status.audit_head.hash}`)),
      card('Alarms', alarms.length ? el('ul', { class: 'bad' }, alarms.map((a) => el('li', {}, a))) : el('p', { class: 'ok' }, 'none')),
      card('Gateway', el('p', {}, `version ${status.version}, up ${status.uptime_s} s`))));
}

export async function render(root) {
  await load(root);
  setInterval(() => load(root).catch(() => {}), 5000);
}
