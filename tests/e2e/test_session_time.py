"""Inside JupyterLab, in a real Chromium: the session's end and time left in
the top bar, the warnings before the end, Download my work, and no first-use
prompt (the sessions' extension, jupyterhub_service/labextension)."""

from __future__ import annotations

import json
import re
import uuid
import zipfile

import requests

from dev.testing import open_lab, wait_until

TIME = ".jp-ckan-session-time"
TOAST = ".jp-toast-message"
NOTEBOOK = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c1", "metadata": {},
                       "outputs": [], "source": ["answer = 42  # edited before the download"]}],
            "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def open_in_chromium(driver, session: dict) -> None:
    driver.get(session["launch_url"])
    assert wait_until(lambda: "Session ends" in top_bar_text(driver), timeout=90), (
        driver.current_url, top_bar_text(driver), browser_errors(driver))


def top_bar_text(driver) -> str:
    return driver.execute_script(
        f"const e = document.querySelector('{TIME}'); return e ? e.textContent : '';")


def toasts(driver) -> list[str]:
    return driver.execute_script(
        f"return Array.from(document.querySelectorAll('{TOAST}')).map(e => e.textContent);")


def toast_buttons(driver, text: str) -> list[str]:
    """Labels of the buttons of the notification whose message holds ``text``."""
    return driver.execute_script("""
        const text = arguments[0];
        for (const msg of document.querySelectorAll('.jp-toast-message')) {
          if (!msg.textContent.includes(text)) continue;
          let box = msg.parentElement;
          while (box && !box.querySelector('.jp-toast-button')) box = box.parentElement;
          return box ? Array.from(box.querySelectorAll('.jp-toast-button')).map(b => b.textContent) : [];
        }
        return null;""", text)


def click_toast_button(driver, text: str, label: str) -> None:
    clicked = driver.execute_script("""
        const [text, label] = arguments;
        for (const msg of document.querySelectorAll('.jp-toast-message')) {
          if (!msg.textContent.includes(text)) continue;
          let box = msg.parentElement;
          while (box && !box.querySelector('.jp-toast-button')) box = box.parentElement;
          const button = box && Array.from(box.querySelectorAll('.jp-toast-button'))
                                     .find(b => b.textContent.trim() === label);
          if (button) { button.click(); return true; }
        }
        return false;""", text, label)
    assert clicked, (text, label, toasts(driver))


def browser_errors(driver) -> list[str]:
    return [e["message"][:300] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def local_clock(driver, iso: str) -> str:
    """HH:MM of an ISO time in the browser's time zone, as the page shows it."""
    return driver.execute_script(
        "return new Date(arguments[0]).toLocaleTimeString("
        "[], {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'});",
        iso)


def test_the_top_bar_shows_the_end_and_follows_the_bridge(bridge, chromium):
    bridge.put_settings(guest_extensions=True)
    sess = bridge.launch("ds-time-shown").json()
    open_in_chromium(chromium, sess)
    text = top_bar_text(chromium)
    match = re.fullmatch(r"Session ends (\d\d:\d\d) · (\d+) min left", text)
    assert match, text
    assert match.group(1) == local_clock(chromium, sess["expires_at"])
    assert int(match.group(2)) in (19, 20)
    hover = chromium.execute_script(f"return document.querySelector('{TIME}').title;")
    assert "discarded" in hover and match.group(1) in hover
    # the end moves on the bridge (Extend by the API): the top bar follows
    # at its next sync, whatever the browser's clock says
    extended = bridge.call("POST", f"/api/sessions/{sess['id']}/extend").json()
    new_end = local_clock(chromium, extended["expires_at"])
    assert new_end != match.group(1)
    assert wait_until(lambda: top_bar_text(chromium).startswith(f"Session ends {new_end} · "),
                      timeout=75), top_bar_text(chromium)
    assert re.fullmatch(r"Session ends \d\d:\d\d · 3\d min left", top_bar_text(chromium))


def test_a_short_session_counts_down_and_warns_a_minute_before_its_end(bridge, chromium):
    bridge.put_settings(timeout=100, idle_timeout=240)
    sess = bridge.launch("ds-time-warn").json()
    open_in_chromium(chromium, sess)
    # under two minutes left: the five-minute warning is up at once, and so
    # is the idle one (4 minutes without use end it)
    assert wait_until(lambda: any("ends in" in t and " at " in t for t in toasts(chromium)),
                      timeout=20), toasts(chromium)
    assert wait_until(lambda: any("if it stays unused" in t for t in toasts(chromium)),
                      timeout=20), toasts(chromium)

    def seconds_shown():
        m = re.search(r"· (\d+) s left$", top_bar_text(chromium))
        return int(m.group(1)) if m else None

    assert wait_until(lambda: seconds_shown() is not None, timeout=60), top_bar_text(chromium)
    first = seconds_shown()
    assert wait_until(lambda: (seconds_shown() or first) < first, timeout=5), top_bar_text(chromium)
    assert wait_until(lambda: any("ends in 1 minute" in t for t in toasts(chromium)), timeout=30), (
        toasts(chromium))
    warning = next(t for t in toasts(chromium) if "ends in 1 minute" in t)
    assert local_clock(chromium, sess["expires_at"]) in warning
    assert "discarded" in warning
    # a guest: the warning says why saving and extending are not offered
    assert "edit rights" in warning
    assert toast_buttons(chromium, "ends in 1 minute") == ["Download", "Save to portal", "Extend"]
    assert "jp-mod-warn" in chromium.execute_script(
        f"return document.querySelector('{TIME}').className;")


def test_download_gives_a_zip_with_the_edited_notebook(bridge, chromium):
    user = f"guest-{uuid.uuid4().hex[:8]}"
    sess = bridge.launch("ds-time-download", user_id=user).json()
    lab = open_lab(sess)
    assert lab.write("edited.ipynb", json.dumps(NOTEBOOK)).status_code in (200, 201)
    again = bridge.launch("ds-time-download", user_id=user).json()  # a fresh ticket, same session
    assert again["id"] == sess["id"]
    open_in_chromium(chromium, again)
    chromium.find_element("css selector", TIME).click()
    assert wait_until(lambda: toast_buttons(chromium, "Temporary session") is not None, timeout=10)
    click_toast_button(chromium, "Temporary session", "Download")

    def finished():
        done = [p for p in chromium.downloads.iterdir() if p.suffix == ".zip"]
        return done[0] if done else None

    assert wait_until(lambda: finished() is not None, timeout=60), list(chromium.downloads.iterdir())
    with zipfile.ZipFile(finished()) as zf:
        names = zf.namelist()
        assert json.loads(zf.read("edited.ipynb"))["cells"][0]["source"] == NOTEBOOK["cells"][0]["source"]
    assert "start_here.ipynb" in names
    assert not [n for n in names if n.startswith(("data/", ".cache/", ".local/"))], names


def test_jupyterlab_asks_nothing_on_first_use(bridge, chromium):
    sess = bridge.launch("ds-time-prompts").json()
    open_in_chromium(chromium, sess)
    base = re.match(r"(.*/user/[^/]+/[^/]+/)", chromium.current_url).group(1)
    settings = chromium.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const xsrf = (document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '';
        fetch(arguments[0] + 'lab/api/settings/@jupyterlab/apputils-extension:notification',
              {headers: {'X-XSRFToken': decodeURIComponent(xsrf)}})
          .then(r => r.json()).then(j => done(j), e => done(String(e)));""", base)
    # the overrides are the defaults JupyterLab starts from
    defaults = {k: v.get("default") for k, v in settings["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false" and defaults["checkForUpdates"] is False, defaults
    # JupyterLab asks its news question a moment after start; it must not
    assert not wait_until(lambda: any("news" in t.lower() for t in toasts(chromium)), timeout=10), (
        toasts(chromium))


def test_save_to_portal_from_the_dialog_creates_the_resource(portal, bridge, chromium):
    admin = portal.sysadmin
    name = f"saver-{uuid.uuid4().hex[:8]}"
    admin.action.user_create(name=name, email=f"{name}@example.org", password=uuid.uuid4().hex)
    org = admin.action.organization_create(name=f"org-{uuid.uuid4().hex[:8]}",
                                           users=[{"name": name, "capacity": "editor"}])
    dataset = admin.action.package_create(name=f"saved-{uuid.uuid4().hex[:8]}",
                                          owner_org=org["id"], private=False)
    api = portal.api(admin.action.api_token_create(user=name, name="e2e")["token"])
    data = "year,value\n" + "".join(f"{y},{y * 7}\n" for y in range(1900, 2000))
    lab = open_lab(api.action.jupyternotebook_session_create(id=dataset["name"]))
    assert lab.write("trend.csv", data).status_code in (200, 201)
    # the same session again, with a fresh ticket for the browser
    open_in_chromium(chromium, api.action.jupyternotebook_session_create(id=dataset["name"]))
    chromium.find_element("css selector", TIME).click()
    assert wait_until(lambda: toast_buttons(chromium, "Temporary session") is not None, timeout=10)
    click_toast_button(chromium, "Temporary session", "Save to portal")
    assert wait_until(lambda: chromium.execute_script(
        "return !!document.querySelector('.jp-Dialog .jp-ckan-save-form select');"), timeout=30)
    options = chromium.execute_script(
        "return Array.from(document.querySelectorAll('.jp-ckan-save-form option')).map(o => o.value);")
    assert "trend.csv" in options and "start_here.ipynb" in options
    assert not [o for o in options if o.startswith(("data/", ".cache/", ".local/"))], options
    chromium.execute_script("""
        const select = document.querySelector('.jp-ckan-save-form select');
        select.value = 'trend.csv';
        select.dispatchEvent(new Event('change'));
        document.querySelector('.jp-ckan-save-form input[name=name]').value = 'Trend from JupyterLab';
        document.querySelector('.jp-Dialog .jp-mod-accept').click();""")
    assert wait_until(lambda: any("Saved trend.csv" in t for t in toasts(chromium)), timeout=60), (
        toasts(chromium))
    resources = admin.action.package_show(id=dataset["id"])["resources"]
    saved = next(r for r in resources if r["name"] == "Trend from JupyterLab")
    stored = requests.get(saved["url"], timeout=30,
                          headers={"Authorization": admin.apikey}).content
    assert stored == data.encode()
    page = requests.get(f"{portal.url}/dataset/{dataset['name']}", timeout=30)
    assert "Trend from JupyterLab" in page.text
