// The login page: posts the form as JSON; the gateway answers with the session cookie.
const form = document.getElementById('login-form');
const error = document.getElementById('login-error');

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.textContent = '';
  const body = {
    name: form.elements.name.value,
    password: form.elements.password.value,
  };
  const totp = form.elements.totp.value.trim();
  if (totp) body.totp = totp;
  let r;
  try {
    r = await fetch('/ui/login', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
    });
  } catch (e) {
    error.textContent = 'The gateway did not answer.';
    return;
  }
  if (r.ok) {
    location.assign('/ui/');
    return;
  }
  let msg = `login failed (${r.status})`;
  try {
    const j = await r.json();
    if (j && typeof j.error === 'string') msg = j.error;
  } catch (e) { /* keep the status */ }
  error.textContent = msg;
});
