// Pending approvals: the identity evidence of each newcomer; approve with profile, zone and role,
// or reject (revoke, admin); one at a time or the selected ones together.
import { api, el, put, table, can, flash, when, attempt, getCatalogue, datalist } from './lib.js';

function evidence(d) {
  const parts = [];
  for (const k of ['manufacturer', 'model', 'firmware', 'serial']) if (d[k]) parts.push(`${k}: ${d[k]}`);
  if (d.credentials && d.credentials.length) parts.push(`credentials: ${d.credentials.join(', ')}`);
  parts.push(`first seen ${when(d.first_seen)}`);
  return el('ul', { class: 'evidence' }, parts.map((p) => el('li', {}, p)));
}

export async function render(root) {
  const cat = await getCatalogue();
  const lists = el('div', {}, datalist('profiles', Object.keys(cat.profiles)), datalist('zones', cat.zones), datalist('roles', cat.roles));
  const holder = el('div', {});
  const profile = el('input', { id: 'bulk-profile', placeholder: 'profile', maxlength: 64, list: 'profiles' });
  const zone = el('input', { id: 'bulk-zone', placeholder: 'zone (optional)', maxlength: 64, list: 'zones' });
  const role = el('input', { id: 'bulk-role', placeholder: 'role (optional)', maxlength: 64, list: 'roles' });
  const reason = el('input', { id: 'bulk-reason', placeholder: 'reason', maxlength: 500 });
  const selected = new Set();
  const approve = async (ids, p, z, r, why) => {
    const body = { reason: why || 'approved from the dashboard' };
    if (p) body.profile = p;
    if (z) body.zone = z;
    if (r) body.role = r;
    let ok = 0;
    for (const id of ids) {
      const res = await attempt(`approve ${id}`, () => api('POST', `/api/devices/${encodeURIComponent(id)}/approve`, body));
      if (res) ok += 1;
    }
    if (ok) flash(`approved ${ok} of ${ids.length}`, 'ok');
    await load();
  };
  const reject = async (id, why) => {
    const res = await attempt(`reject ${id}`, () => api('POST', `/api/devices/${encodeURIComponent(id)}/revoke`, { reason: why || 'rejected from the dashboard' }));
    if (res) flash(`${id} rejected (revoked)`, 'ok');
    await load();
  };
  const load = async () => {
    const all = await api('GET', '/api/devices');
    const pending = all.filter((x) => x.device.status === 'pending');
    const rows = pending.map(({ device: d, stats: s }) => {
      const p = el('input', { class: 'profile', placeholder: 'profile', maxlength: 64, value: d.profile || '', list: 'profiles' });
      const z = el('input', { class: 'zone', placeholder: 'zone', maxlength: 64, value: d.zone || '', list: 'zones' });
      const r = el('input', { class: 'role', placeholder: 'role', maxlength: 64, value: d.role || '', list: 'roles' });
      const cb = el('input', { type: 'checkbox', class: 'select', checked: selected.has(d.id),
        onchange: (ev) => { if (ev.target.checked) selected.add(d.id); else selected.delete(d.id); } });
      const actions = el('td', {});
      if (can('operator')) {
        actions.append(el('button', { type: 'button', class: 'approve', onclick: () => approve([d.id], p.value.trim(), z.value.trim(), r.value.trim(), reason.value.trim()) }, 'Approve'));
      }
      if (can('admin')) {
        actions.append(el('button', { type: 'button', class: 'reject', onclick: () => reject(d.id, reason.value.trim()) }, 'Reject'));
      }
      return el('tr', { 'data-id': d.id }, el('td', {}, cb), el('td', {}, d.id), el('td', { class: 'name' }, d.name || ''),
        el('td', {}, evidence(d)), el('td', {}, `${s.messages} messages`), el('td', {}, p, z, r), actions);
    });
    put(holder, rows.length
      ? table('pending', ['', 'id', 'name', 'evidence', 'traffic', 'assign', ''], rows)
      : el('p', { id: 'pending-empty' }, 'No device is waiting for approval.'));
  };
  const bulk = el('button', { type: 'button', id: 'bulk-approve', onclick: () => approve([...selected], profile.value.trim(), zone.value.trim(), role.value.trim(), reason.value.trim()) }, 'Approve selected');
  put(root, el('h1', {}, 'Pending approvals'), lists,
    can('operator') ? el('div', { class: 'toolbar' }, profile, zone, role, reason, bulk) : el('p', { class: 'muted' }, 'Approving needs the operator role.'),
    holder);
  await load();
}
