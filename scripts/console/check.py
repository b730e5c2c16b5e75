#!/usr/bin/env python3
"""The web console end to end, in headless chromium driven by selenium, against the dem that
scripts/console-check started (DEM_URL, DEM_DATA) and its dem-cli (DEMCLI). Prints PASS/FAIL
lines and "console-check: N passed, M failed"; screenshots of each view go to
$OUT/screenshots."""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

from axe_selenium_python import Axe
from selenium import webdriver
from selenium.common.exceptions import ElementNotInteractableException, StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

URL = os.environ["DEM_URL"]
DATA = os.environ["DEM_DATA"]
DEMCLI = os.environ["DEMCLI"]
DEMEM = os.environ.get("DEMEM", "")
OUT = os.environ["OUT"]
PORT = URL.rsplit(":", 1)[1]
HOSTNQN = "nqn.2014-08.org.nvmexpress:uuid:6d1c3a52-7e0f-4a4b-9c3d-2f5e8a9b0c1d"
S1 = "nqn.2024-01.io.example:console-s1"
S2 = "nqn.2024-01.io.example:console-s2"
passed = failed = 0


def record(ok, name, why=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS {name}")
    else:
        failed += 1
        print(f"FAIL {name}: {why}")
    sys.stdout.flush()


def cli(*args, check=True):
    env = dict(os.environ, DEM_DATA_DIR=DATA)
    result = subprocess.run([DEMCLI, "-s", "127.0.0.1", "-p", PORT, *args], env=env, capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise RuntimeError(f"dem-cli {' '.join(args)}: {result.returncode} {result.stderr.strip()}")
    return result.stdout


def start_endpoint_manager():
    """dem-em enrolled and joined as target em1, on a folder standing in for configfs."""
    env = dict(os.environ, DEM_DATA_DIR=DATA)
    issued = subprocess.run([DEMCLI, "-s", "127.0.0.1", "-p", PORT, "add", "join-token", "em1", "600"],
                            env=env, capture_output=True, text=True, timeout=30)
    token = issued.stdout.strip()
    ca_hash = re.search(r"--ca-hash (sha256:[0-9a-f]+)", issued.stderr).group(1)
    folder = tempfile.mkdtemp(prefix="dem-console-em.")
    os.makedirs(folder + "/nvmet")
    return subprocess.Popen(
        [DEMEM, "--data-dir", folder + "/data", "--nvmet-root", folder + "/nvmet", "--api-address", "127.0.0.1",
         "--api-port", "0", "--join", URL, "--token", token, "--ca-hash", ca_hash, "--alias", "em1",
         "--log-level", "warning"],
        stdout=open(OUT + "/dem-em.log", "w"), stderr=subprocess.STDOUT)


def browser(width=1280, height=800):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # A profile of its own (chromium honours a pinned key only with one).
    profile = tempfile.mkdtemp(prefix="dem-console-chromium.")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}", f"--user-data-dir={profile}",
                     f"--ignore-certificate-errors-spki-list={os.environ['DEM_SPKI']}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(condition, timeout=10.0):
    end = time.time() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except WebDriverException:
            pass
        if time.time() > end:
            return None
        time.sleep(0.1)


def text(driver):
    return driver.find_element(By.ID, "main").text


def sign_in(driver, token):
    driver.get(URL + "/")
    field = wait(lambda: driver.find_element(By.ID, "token"))
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#sign-in-form button[type=submit]").click()


def go(driver, hash_, expect):
    driver.execute_script("location.hash = arguments[0]", hash_)
    shown = wait(lambda: expect in text(driver))
    time.sleep(0.2)
    return shown


def submit(driver, form_label, values):
    """Fills in the form labelled `form_label` and submits it; again from the start when the
    page was redrawn meanwhile (a change event arriving)."""
    for attempt in range(10):
        try:
            form = wait(lambda: driver.find_element(By.CSS_SELECTOR, f'form[aria-label="{form_label}"]'))
            for name, value in values.items():
                field = form.find_element(By.NAME, name)
                if field.tag_name == "select":
                    Select(field).select_by_value(value)
                elif field.get_attribute("type") == "checkbox":
                    if bool(value) != field.is_selected():
                        field.click()
                else:
                    field.clear()
                    field.send_keys(value)
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
            return form
        except (StaleElementReferenceException, ElementNotInteractableException):
            # Redrawn under the test's hands: a change event arrived (the target's state, say).
            time.sleep(0.3)
    raise RuntimeError(f"the form {form_label!r} kept being redrawn")


def retry(action):
    """`action()` again when the page was redrawn under it (a change event arrived)."""
    for attempt in range(20):
        try:
            return action()
        except (StaleElementReferenceException, ElementNotInteractableException):
            time.sleep(0.25)
    return action()


def click(driver, xpath):
    """Clicks the element at `xpath` once it is there (found again if the page was redrawn)."""
    wait(lambda: driver.find_element(By.XPATH, xpath))
    retry(lambda: driver.find_element(By.XPATH, xpath).click())


def shot(driver, name):
    driver.save_screenshot(os.path.join(OUT, "screenshots", name + ".png"))


def axe_check(driver, view):
    axe = Axe(driver)
    axe.inject()
    results = axe.run()
    bad = [v for v in results["violations"] if v.get("impact") in ("serious", "critical")]
    record(not bad, f"axe-core finds no serious or critical violation on {view}",
           "; ".join(f"{v['id']} ({v['impact']}): {v['help']} x{len(v['nodes'])}" for v in bad))
    with open(os.path.join(OUT, f"axe-{view}.json"), "w") as f:
        json.dump(results["violations"], f, indent=1)


admin = open(os.path.join(DATA, "admin.token")).read().strip()
first = browser()
second = None
try:
    # Signing in: a wrong token is refused, the admin token is taken.
    first.get(URL + "/")
    record(wait(lambda: first.find_element(By.ID, "token").is_displayed()), "the sign-in page is served without a token")
    shot(first, "sign-in")
    axe_check(first, "sign-in")
    sign_in(first, "dem_wrong_token")
    error = wait(lambda: first.find_element(By.ID, "sign-in-error").text)
    record(error and "refused" in error and not first.find_element(By.ID, "view").is_displayed(),
           "a wrong token is refused and nothing is shown", f"error {error!r}")
    sign_in(first, admin)
    record(wait(lambda: "Needs attention" in text(first)), "the admin token signs in to the overview", text(first)[:200])
    record("token" not in first.current_url.lower() and admin not in first.current_url,
           "the token is not in the URL", first.current_url)

    # A host, a target, a port, a subsystem and its access list, by clicking.
    go(first, "#/hosts", "Add a host")
    submit(first, "Add a host", {"Alias": "h1", "HOSTNQN": HOSTNQN})
    record(wait(lambda: "h1" in text(first) and HOSTNQN in text(first)), "a host is added through the console")
    go(first, "#/targets", "Add a target")
    submit(first, "Add a target", {"Alias": "t1"})
    record(wait(lambda: first.find_elements(By.LINK_TEXT, "t1")), "a target is added through the console")
    go(first, "#/target/t1", "Add a port")
    form = submit(first, "Add a port", {"PORTID": "1", "TRADDR": "not-an-address", "TRSVCID": "4420"})
    field_error = wait(lambda: form.find_element(By.CSS_SELECTOR, '.field-error[data-field="TRADDR"]').text)
    record(field_error, "the API's validation error is shown next to the field it names (TRADDR)",
           f"the page: {text(first)[:300]!r}")
    form = submit(first, "Add a port", {"PORTID": "1", "TRADDR": "192.0.2.10", "TRSVCID": "4420"})
    record(wait(lambda: "192.0.2.10" in text(first)), "a port is added through the console")
    submit(first, "Add a subsystem", {"SUBNQN": S1, "AllowAnyHost": False})
    record(wait(lambda: f"Allow a host on {S1}" in text(first)), "a subsystem is added through the console")
    submit(first, f"Allow a host on {S1}", {"Alias": "h1"})
    record(wait(lambda: first.find_elements(By.XPATH, "//button[contains(., 'Remove h1 from the access list')]")),
           "a host is put on the subsystem's access list through the console")
    shown = cli("get", "target", "t1")
    record(S1 in shown and "h1" in shown and "192.0.2.10" in shown,
           "dem-cli get target t1 shows the port, subsystem and access list made in the console", shown[:400])
    # The management mode, as dem-cli set outofband does it.
    submit(first, "How dem manages t1", {"MgmtMode": "OutOfBandMgmt", "ADDRESS": "192.0.2.20", "PORT": "22334"})
    record(wait(lambda: "OutOfBandMgmt at 192.0.2.20:22334" in text(first)) and "OutOfBandMgmt" in cli("get", "target", "t1"),
           "the target's management mode and interface are set through the console", text(first)[:200])

    # Editing: open the subsystem to any host, and restrict it again.
    click(first, f"//button[.='Open {S1} to any host']")
    opened = wait(lambda: first.find_elements(By.XPATH, f"//button[.='Restrict {S1} to its access list']"))
    record(opened, "a subsystem is opened to any host through the console (PATCH)")
    if opened:
        click(first, f"//button[.='Restrict {S1} to its access list']")
    record(wait(lambda: first.find_elements(By.XPATH, f"//button[.='Open {S1} to any host']")),
           "and restricted to its access list again")
    shot(first, "target")
    axe_check(first, "target")

    # A second browser, signed in too; dem-cli changes the model; both show it by themselves.
    second = browser()
    sign_in(second, admin)
    wait(lambda: "Needs attention" in text(second))
    go(second, "#/subsystems", "Subsystems")
    cli("add", "subsystem", "t1", S2)
    record(wait(lambda: S2 in text(first)), "a dem-cli change appears in the first browser without a reload")
    record(wait(lambda: S2 in text(second)), "and in a second browser, on another view")
    shot(second, "subsystems")

    # The host's page: exactly what dem-cli logpage host prints.
    go(first, "#/host/h1", "What this host sees")
    wait(lambda: first.find_elements(By.CSS_SELECTOR, "table caption"))
    page = json.loads(cli("--json", "logpage", "host", "h1"))
    def entry_rows():
        for table in first.find_elements(By.CSS_SELECTOR, "#view table"):
            caption = table.find_elements(By.TAG_NAME, "caption")
            if caption and caption[0].text == "entries":
                return [[c.text for c in r.find_elements(By.TAG_NAME, "td")] for r in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
        return []
    rows = retry(entry_rows)
    console_entries = sorted((r[1], r[2], r[3]) for r in rows if len(r) > 3)
    cli_entries = sorted((r["subnqn"], r["traddr"], str(r["trsvcid"])) for r in page["records"])
    record(console_entries == cli_entries and console_entries, "the host's page lists exactly the entries of dem-cli logpage host",
           f"console {console_entries} dem-cli {cli_entries}")
    reasons = [r[6] for r in rows if len(r) > 6]
    record(all(reasons), "each entry says why the host sees it", f"{rows}")
    withheld_console = S1 in text(first)
    withheld_cli = any(w["subnqn"] == S1 for w in page["withheld"])
    record(withheld_console == withheld_cli, "entries withheld now are shown as dem-cli shows them",
           f"console {withheld_console}, dem-cli {withheld_cli}")
    shot(first, "host")
    axe_check(first, "host")

    # Groups: one made and a host put in it by clicking, seen through dem-cli.
    go(first, "#/groups", "Add a group")
    submit(first, "Add a group", {"Name": "lab"})
    wait(lambda: first.find_elements(By.CSS_SELECTOR, 'form[aria-label="Put a host in a group"]'))
    submit(first, "Put a host in a group", {"Group": "lab", "Alias": "h1"})
    record(wait(lambda: "h1" in cli("get", "group", "lab")), "a group is made and a host put in it through the console",
           cli("get", "group", "lab", check=False))

    for view, expect in (("overview", "Needs attention"), ("targets", "Add a target"), ("groups", "Add a group"),
                         ("fabric", "Filter the picture"), ("events", "Changes as dem publishes them")):
        go(first, "#/" + view, expect)
        time.sleep(0.3)
        shot(first, view)
        axe_check(first, view)
    record(first.find_elements(By.CSS_SELECTOR, "#view svg"), "the fabric is drawn as SVG",
           text(first)[:200]) if go(first, "#/fabric", "Filter the picture") else record(False, "the fabric view opens")
    go(first, "#/events", "Changes as dem publishes them")
    events = first.find_elements(By.CSS_SELECTOR, "ul.events li")
    record(len(events) >= 3, "the event feed lists the changes", f"{len(events)} events")

    # A target whose dem-em joined: its view names the backend dem-em drives (nvmet, on a folder
    # standing in for configfs; SPDK's is shown the same way, see scripts/interop spdk).
    endpoint = start_endpoint_manager()
    try:
        joined = wait(lambda: "State:          reachable" in cli("get", "target", "em1", check=False), 60)
        shown = joined and go(first, "#/target/em1", "Backend nvmet")
        record(shown and first.find_elements(By.CSS_SELECTOR, "[data-backend=nvmet]"),
               "a target's view names the backend its dem-em drives (nvmet)",
               text(first)[:300] if joined else "target em1 did not become reachable: " + cli("get", "target", "em1", check=False)[-300:])
        shot(first, "target-backend")
    finally:
        endpoint.terminate()
        endpoint.wait(timeout=30)

    # A narrow screen.
    first.set_window_size(420, 900)
    go(first, "#/overview", "Needs attention")
    time.sleep(0.3)
    shot(first, "overview-narrow")
    first.set_window_size(1280, 800)

    # Signing out forgets the token.
    retry(lambda: first.find_element(By.ID, "sign-out").click())
    record(wait(lambda: first.find_element(By.ID, "token").is_displayed())
           and first.execute_script("return sessionStorage.length") == 0,
           "signing out shows the sign-in form and forgets the token")

    # A read-only token: a read-only console, and the API refuses changes anyway.
    made = subprocess.run([DEMCLI, "-s", "127.0.0.1", "-p", PORT, "add", "token", "viewer", "read"],
                          env=dict(os.environ, DEM_DATA_DIR=DATA), capture_output=True, text=True, timeout=30)
    reader = made.stdout.strip().splitlines()[-1] if made.stdout.strip() else ""
    sign_in(first, reader)
    record(wait(lambda: "read-only" in text(first)), "a read-only token signs in to a read-only console", text(first)[:200])
    go(first, "#/target/t1", "Add a port")
    def scan():
        found = [b for b in first.find_elements(By.CSS_SELECTOR, "#view button") if b.text not in ("Previous", "Next")]
        return (found, [b.text for b in found if b.is_enabled()],
                all(b.get_attribute("title") == "Read-only token: changes need an admin token" for b in found))
    buttons, enabled, titled = retry(scan)
    record(buttons and not enabled and titled, "every change button is disabled for it, saying why",
           f"enabled: {enabled}")
    shot(first, "read-only")
    status = first.execute_script(
        "return fetch('/target/t1/subsystem', {method: 'PUT', headers: {Authorization: 'Bearer ' + arguments[0],"
        " 'Content-Type': 'application/json'}, body: JSON.stringify({SUBNQN: arguments[1], AllowAnyHost: 1})})"
        ".then(r => r.status)", reader, "nqn.2024-01.io.example:sneaky")
    record(status == 403, "and the API refuses a change with it", f"status {status}")
finally:
    for driver in (first, second):
        if driver is not None:
            try:
                driver.quit()
            except WebDriverException:
                pass

print(f"console-check: {passed} passed, {failed} failed")
sys.exit(0 if failed == 0 else 1)
