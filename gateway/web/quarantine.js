// Quarantine: why each device is held, since when and by whom; release with a reason.
import { api, el, put, table, can, flash, when, attempt, devicePath } from './lib.js';

export async function render(root) {
  const holder = el('div', {});
  put(root, el('h1', {}, 'Quarantine'), holder);
  const load = async () => {
    const all = await api('GET', '/api/devices');
    const q = all.filter((x) => x.device.status === 'quarantined');
    const rows = q.map(({ device: d }) => {
      const reason = el('input', { class: 'release-reason', placeholder: 'reason to release', maxlength: 500 });
      const actions = el('td', {});
      if (can('operator')) {
        actions.append(reason, el('button', {
          type: 'button', class: 'release',
          onclick: async () => {
            const r = await attempt('release', () => api('POST', `/api/devices/${encodeURIComponent(d.id)}/release`, { reason: reason.value.trim() }));
            if (r) flash(`${d.id} released`, 'ok');
            await load();
          },
        }, 'Release'));
      }
      return el('tr', { 'data-id': d.id }, el('td', {}, el('a', { href: devicePath(d.id) }, d.id)),
        el('td', { class: 'name' }, d.name || ''), el('td', { class: 'why' }, d.status_reason),
        el('td', {}, when(d.status_at)), el('td', {}, d.status_by), actions);
    });
    put(holder, rows.length
      ? table('quarantined', ['id', 'name', 'why', 'since', 'by', ''], rows)
      : el('p', { id: 'quarantine-empty' }, 'No device is in quarantine.'));
  };
  await load();
}
