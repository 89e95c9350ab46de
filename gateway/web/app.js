// The dashboard shell: who is logged in, the navigation, log out, and which page module renders.
import { getSession, api, put, flash } from './lib.js';

const PAGES = {
  '': 'overview', devices: 'devices', pending: 'pending', quarantine: 'quarantine',
  live: 'live', audit: 'audit', plugins: 'plugins', adapters: 'adapters',
};

async function main() {
  const s = await getSession();
  document.getElementById('whoami').textContent = `${s.operator} (${s.role})`;
  document.getElementById('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/ui/logout');
    } catch (e) { /* the session is gone either way */ }
    location.assign('/ui/login');
  });
  const path = location.pathname.replace(/^\/ui\/?/, '').replace(/\/$/, '');
  const parts = path.split('/');
  let name = PAGES[path];
  let arg;
  if (!name && parts.length === 2 && parts[0] === 'devices') {
    name = 'device';
    arg = decodeURIComponent(parts[1]);
  }
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href').replace(/^\/ui\/?/, '');
    if (target === path || (name === 'device' && target === 'devices')) a.classList.add('active');
  }
  const root = document.getElementById('main');
  if (!name) {
    put(root, 'No such page.');
    return;
  }
  document.body.dataset.page = name;
  const mod = await import(`./${name}.js`);
  try {
    await mod.render(root, arg);
  } catch (e) {
    flash(`${name}: ${e.message}`, 'error');
  }
  // how long the page took from navigation to rendered data (read by the browser test)
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = '1';
}

main();
