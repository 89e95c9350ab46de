"""Drives the Warden dashboard in Debian's headless chromium through selenium (a chromedriver at
/usr/bin/chromedriver, so selenium-manager never downloads anything).

Usage: drive.py BASE_URL OPERATOR PASSWORD API_TOKEN SCREENSHOT_DIR EVIL_ID EVIL_NAME VIEWER

Every step waits on a condition (WebDriverWait), never on a fixed sleep. Prints one `ok: …` line
per step; any failure raises (non-zero exit) with the page's URL and a screenshot named `failed`.
"""

import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

BASE, USER, PASSWORD, TOKEN, SHOTS, EVIL_ID, EVIL_NAME, VIEWER = sys.argv[1:9]
WAIT = 30


def step(msg):
    print(f"ok: {msg}", flush=True)


def shot(d, name):
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def wait(d, cond, timeout=WAIT, what=""):
    try:
        # pages redraw their tables: an element found a moment ago may have been replaced
        return WebDriverWait(d, timeout, poll_frequency=0.05,
                             ignored_exceptions=[StaleElementReferenceException]).until(cond)
    except TimeoutException:
        raise AssertionError(f"timed out after {timeout} s waiting for {what} on {d.current_url}")


def css(sel):
    return (By.CSS_SELECTOR, sel)


def row(table_id, device):
    return css(f'#{table_id} tr[data-id="{device}"]')


def api(method, path, body=None):
    """The bearer-token API (what the CLI uses), for set-up and triggers outside the browser."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(BASE + path, data=data, method=method)
    req.add_header("Authorization", f"Bearer {TOKEN}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def device_status(dev):
    """The device's registry status through the API, or None while it is unknown."""
    try:
        return api("GET", f"/api/devices/{dev}")["device"]["status"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def fetch_status(d, method, path, body, csrf):
    """Runs fetch() in the page (the browser's own cookie); returns the HTTP status."""
    return d.execute_async_script(
        """
        const [method, path, body, csrf, done] = arguments;
        const headers = {'Content-Type': 'application/json'};
        if (csrf) headers['X-CSRF-Token'] = csrf;
        fetch(path, {method, credentials: 'same-origin', headers,
                     body: body === null ? undefined : body})
          .then(r => done(r.status), e => done(-1));
        """,
        method, path, body, csrf)


def open_page(d, path):
    d.get(BASE + path)
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready === '1'"),
         what=f"{path} to render")
    ms = d.execute_script("return document.body.dataset.readyMs")
    print(f"figure: {path} rendered {ms} ms after navigation", flush=True)


def main():
    os.makedirs(SHOTS, exist_ok=True)
    stale = os.path.join(SHOTS, "failed.png")
    if os.path.exists(stale):
        os.remove(stale)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="warden-chromium-")
    for a in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1400,1000"]:
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    d.set_script_timeout(30)
    try:
        run(d)
    except BaseException:
        try:
            shot(d, "failed")
        finally:
            raise
    finally:
        d.quit()


def run(d):
    # --- locked before login: a page redirects to the login page
    d.get(BASE + "/ui/devices")
    wait(d, EC.url_contains("/ui/login"), what="the redirect to the login page")
    shot(d, "login")
    d.find_element(By.ID, "name").send_keys(USER)
    d.find_element(By.ID, "password").send_keys("wrong password")
    d.find_element(By.ID, "login-submit").click()
    wait(d, EC.text_to_be_present_in_element(css("#login-error"), "wrong"), what="a refused login")
    step("a wrong password is refused on the page")
    d.find_element(By.ID, "password").clear()
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    wait(d, EC.text_to_be_present_in_element(css("#whoami"), USER), what="the logged-in operator")
    wait(d, EC.presence_of_element_located(css("#overview")), what="the overview")
    cookies = {c["name"]: c for c in d.get_cookies()}
    session = cookies.get("warden_session")
    assert session and session["httpOnly"] and session.get("sameSite") == "Strict", session
    assert d.execute_script("return document.cookie.includes('warden_session')") is False
    step("logged in; the session cookie is HttpOnly and SameSite=Strict")
    shot(d, "overview")

    # --- the demo's devices
    open_page(d, "/ui/devices")
    for dev in ["sim:thermostat-1", "sim:switch-1", "sim:meter-1", "sim:newcomer-1", "sim:rogue-1"]:
        wait(d, EC.presence_of_element_located(row("devices", dev)), what=dev)
    # a device that keeps sending is online; one never heard is not
    wait(d, EC.presence_of_element_located(css('#devices tr[data-id="sim:meter-1"] td.online')),
         what="sim:meter-1 online")
    assert d.find_elements(By.CSS_SELECTOR, f'#devices tr[data-id="{EVIL_ID}"] td.offline')
    step("the demo's devices are listed")
    # a device name with markup renders as text, and no script of it ran
    evil = wait(d, EC.presence_of_element_located(row("devices", EVIL_ID)), what=EVIL_ID)
    name_cell = evil.find_element(By.CSS_SELECTOR, "td.name")
    assert name_cell.text == EVIL_NAME, (name_cell.text, EVIL_NAME)
    assert name_cell.find_elements(By.CSS_SELECTOR, "script, img") == []
    assert d.execute_script("return window.__pwned === undefined")
    step("a device name containing <script> renders as text")
    shot(d, "devices")

    # --- approve the pending newcomer with a profile; its telemetry appears
    open_page(d, "/ui/pending")
    r = wait(d, EC.presence_of_element_located(row("pending", "sim:newcomer-1")), what="the newcomer")
    assert "first seen" in r.text
    shot(d, "pending")
    r.find_element(By.CSS_SELECTOR, "input.profile").send_keys("meter")
    d.find_element(By.ID, "bulk-reason").send_keys("expected meter (browser test)")
    r.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait(d, EC.invisibility_of_element_located(row("pending", "sim:newcomer-1")), what="approval")
    step("the newcomer is approved from the pending page")
    open_page(d, "/ui/devices/sim:newcomer-1")
    wait(d, EC.presence_of_element_located(css('#points tr[data-point] td.value')), what="telemetry")
    wait(d, lambda d: d.find_element(By.CSS_SELECTOR, '#device-info tr[data-key="status"] td').text == "active",
         what="status active")
    step("the newcomer's telemetry appears on its page")
    shot(d, "device")

    # --- a provisioning batch approved together
    open_page(d, "/ui/pending")
    for dev in ["sim:batch-1", "sim:batch-2"]:
        wait(d, EC.element_to_be_clickable(
            css(f'#pending tr[data-id="{dev}"] input.select')), what=dev).click()
    d.find_element(By.ID, "bulk-profile").send_keys("meter")
    d.find_element(By.ID, "bulk-reason").send_keys("provisioning batch B")
    d.find_element(By.ID, "bulk-approve").click()
    for dev in ["sim:batch-1", "sim:batch-2"]:
        wait(d, EC.invisibility_of_element_located(row("pending", dev)), what=f"{dev} approved")
        got = api("GET", f"/api/devices/{dev}")["device"]
        assert (got["status"], got["profile"]) == ("active", "meter"), got
    step("a provisioning batch is approved together")

    # --- quarantine and release
    open_page(d, "/ui/devices/sim:thermostat-1")
    d.find_element(By.ID, "action-reason").send_keys("browser test quarantine")
    d.find_element(By.ID, "action-quarantine").click()
    wait(d, lambda d: d.find_element(By.CSS_SELECTOR, '#device-info tr[data-key="status"] td').text == "quarantined",
         what="quarantined")
    open_page(d, "/ui/quarantine")
    q = wait(d, EC.presence_of_element_located(row("quarantined", "sim:thermostat-1")), what="the quarantined row")
    assert "browser test quarantine" in q.find_element(By.CSS_SELECTOR, "td.why").text
    shot(d, "quarantine")
    q.find_element(By.CSS_SELECTOR, "input.release-reason").send_keys("browser test release")
    q.find_element(By.CSS_SELECTOR, "button.release").click()
    wait(d, EC.invisibility_of_element_located(row("quarantined", "sim:thermostat-1")), what="release")
    assert api("GET", "/api/devices/sim:thermostat-1")["device"]["status"] == "active"
    step("a device is quarantined and released")

    # --- a denial shows in the live view within a second
    open_page(d, "/ui/live")
    wait(d, EC.text_to_be_present_in_element(css("#live-state"), "live"), what="the live stream")
    sent = time.monotonic()
    res = api("POST", "/api/devices/sim:switch-1/commands", {"command": "debug_shell"})
    assert res["outcome"] != "delivered", res
    wait(d, EC.presence_of_element_located(
        css('#live-rows tr[data-device="sim:switch-1"][data-verdict="deny"]')), timeout=1.0,
        what="the denial in the live view")
    step(f"a denial is shown {time.monotonic() - sent:.3f} s after the command was sent")
    # pausing holds new records back
    d.find_element(By.ID, "live-pause").click()
    wait(d, EC.text_to_be_present_in_element(css("#live-pause"), "Resume"), what="paused")
    shot(d, "live")
    d.find_element(By.ID, "live-pause").click()

    # --- audit verify from the page
    open_page(d, "/ui/audit")
    d.find_element(By.ID, "audit-verify").click()
    wait(d, EC.presence_of_element_located(css("#verify-ok")), what="the verification result")
    assert "head" in d.find_element(By.ID, "verify-result").text.lower()
    step("audit verify from the page: intact")
    shot(d, "audit")

    # --- a command and its result
    open_page(d, "/ui/devices/sim:switch-1")
    # the profile's commands are offered (from /api/catalogue)
    wait(d, EC.text_to_be_present_in_element(css("#command-allowed"), "turn_on"), what="the allowed commands")
    offered = d.execute_script(
        "return [...document.querySelectorAll('#device-commands option')].map(o => o.value)")
    assert "turn_on" in offered, offered
    d.find_element(By.ID, "command-name").send_keys("turn_on")
    d.find_element(By.ID, "command-send").click()
    wait(d, lambda d: d.find_element(By.ID, "command-result").get_attribute("data-outcome") == "delivered",
         what="the command's result")
    step("a command is sent and its result shown")
    shot(d, "command")

    # --- CSRF: the same request from the page without the token is refused
    csrf = d.execute_script("return fetch('/ui/session').then(r => r.json()).then(j => j.csrf)")
    body = json.dumps({"command": "turn_off"})
    assert fetch_status(d, "POST", "/api/devices/sim:switch-1/commands", body, None) == 403
    assert fetch_status(d, "POST", "/api/devices/sim:switch-1/commands", body, "00" * 32) == 403
    assert fetch_status(d, "POST", "/api/devices/sim:switch-1/commands", body, csrf) == 200
    step("a state-changing request without the CSRF token is refused (403); with it, accepted")

    # --- a device page shows the values the gateway kept, as soon as it renders
    def kept_power(_d):
        pts = api("GET", "/api/devices/sim:meter-1/points")["points"]
        return next((p for p in pts if p["name"] == "power" and len(p["history"]) >= 2), None)
    kept = wait(d, kept_power, what="two kept samples of sim:meter-1's power")
    open_page(d, "/ui/devices/sim:meter-1")
    # the page reads the live stream only after drawing the kept values, so what is drawn when it
    # reports ready came from them
    assert d.find_elements(By.CSS_SELECTOR, '#points tr[data-point="power"] svg.chart polyline'), \
        "no history chart drawn from the kept values"
    assert d.find_element(By.CSS_SELECTOR, '#points tr[data-point="power"] td.value').text.endswith(" W")
    step(f"a device page shows kept values and a {len(kept['history'])}-sample history as it renders")
    shot(d, "device-history")

    # --- the adapters page opens a join window on the sim adapter; the held device joins, pending
    assert device_status("sim:meter-2") is None
    open_page(d, "/ui/adapters")
    sim = wait(d, EC.presence_of_element_located(css('tr[data-adapter="sim"]')), what="the sim adapter")
    secs = sim.find_element(By.CSS_SELECTOR, "input.seconds")
    secs.clear()
    secs.send_keys("120")
    sim.find_element(By.CSS_SELECTOR, "button.op-join").click()
    wait(d, EC.text_to_be_present_in_element(css('tr[data-adapter="sim"] span.progress'), "joined 1"),
         what="the join window's progress")
    text = d.find_element(By.CSS_SELECTOR, 'tr[data-adapter="sim"] span.progress').text
    assert "join running" in text and "s left" in text, text
    wait(d, lambda d: device_status("sim:meter-2") == "pending", what="sim:meter-2 pending")
    shot(d, "adapters")
    d.find_element(By.CSS_SELECTOR, 'tr[data-adapter="sim"] button.op-close').click()
    # the window's own stream ("closed by operator:…") and the close's ("join window closed") both
    # write the progress line; either may be last
    wait(d, EC.text_to_be_present_in_element(css('tr[data-adapter="sim"] span.progress'), "closed"),
         what="the close")
    sim_state = next(a for a in api("GET", "/api/adapters") if a["adapter"] == "sim")
    assert sim_state["latest"]["progress"]["state"] in ("done", "cancelled"), sim_state
    step("a join window opened from the adapters page: progress shown, the device joined pending, closed")

    open_page(d, "/ui/plugins")
    shot(d, "plugins")
    step("plugins and adapters pages render")

    # --- log out: everything is locked
    d.find_element(By.ID, "logout").click()
    wait(d, EC.url_contains("/ui/login"), what="the login page after logout")
    assert fetch_status(d, "GET", "/api/status", None, None) == 401
    assert fetch_status(d, "GET", "/ui/assets/app.js", None, None) == 401
    assert fetch_status(d, "POST", "/api/devices/sim:switch-1/commands", body, csrf) == 401
    d.get(BASE + "/ui/devices")
    wait(d, EC.url_contains("/ui/login"), what="the redirect after logout")
    step("after logout the pages and the API are locked")

    # --- a viewer is offered no action, and the API refuses one all the same
    d.find_element(By.ID, "name").send_keys(VIEWER)
    d.find_element(By.ID, "password").send_keys(PASSWORD)
    d.find_element(By.ID, "login-submit").click()
    wait(d, EC.text_to_be_present_in_element(css("#whoami"), f"{VIEWER} (viewer)"), what="the viewer")
    open_page(d, "/ui/devices")
    wait(d, EC.presence_of_element_located(row("devices", "sim:switch-1")), what="devices for the viewer")
    assert d.find_elements(By.CSS_SELECTOR, "button.quarantine") == []
    open_page(d, "/ui/devices/sim:switch-1")
    assert d.find_elements(By.ID, "command-send") == [] and d.find_elements(By.ID, "action-quarantine") == []
    csrf = d.execute_script("return fetch('/ui/session').then(r => r.json()).then(j => j.csrf)")
    assert fetch_status(d, "POST", "/api/devices/sim:switch-1/commands", body, csrf) == 403
    step("a viewer is offered no action and the API refuses one (403)")


if __name__ == "__main__":
    main()
