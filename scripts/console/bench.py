#!/usr/bin/env python3
"""The web console at scale, measured in headless chromium with the Performance API: a dem with
an empty model and one with N hosts and N/10 subsystems (10 targets, each subsystem's access
list 10 hosts, one in ten open to any host, 10 groups), side by side in alternating rounds.
For each: the time from navigation to the overview drawn (signed in from the tab's session
storage), to the hosts list (its first page) and to one host's page, and the bytes of
GET /dem/config. Prints a Markdown section for docs/PERFORMANCE.md.

  bench.py DEM [--scale N] [--rounds R]
"""
import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

parser = argparse.ArgumentParser()
parser.add_argument("dem")
parser.add_argument("--scale", type=int, default=10000)
parser.add_argument("--rounds", type=int, default=5)
args = parser.parse_args()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DEM:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="dem-console-bench.")
        self.port = free_port()
        self.process = subprocess.Popen(
            [args.dem, "--data-dir", self.data, "--address", "127.0.0.1", "--port", str(free_port()),
             "--api-port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data, "dem.log"), "w"))
        self.url = f"https://127.0.0.1:{self.port}"
        for _ in range(150):
            if os.path.exists(os.path.join(self.data, "admin.token")) and os.path.exists(os.path.join(self.data, "dem-api.pem")):
                try:
                    self.call("GET", "/health", token=False)
                    break
                except OSError:
                    pass
            time.sleep(0.2)
        self.token = open(os.path.join(self.data, "admin.token")).read().strip()
        spki = subprocess.run(
            f"openssl x509 -in {self.data}/dem-api.pem -noout -pubkey | openssl pkey -pubin -outform der"
            " | openssl dgst -sha256 -binary | base64", shell=True, capture_output=True, text=True)
        self.spki = spki.stdout.strip()

    def call(self, method, path, body=None, token=True):
        context = ssl.create_default_context(cafile=os.path.join(self.data, "fabric-ca.pem"))
        request = urllib.request.Request(self.url + path, method=method, data=None if body is None else json.dumps(body).encode())
        if token:
            request.add_header("Authorization", "Bearer " + self.token)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, context=context, timeout=300) as response:
            return response.read()

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.data, ignore_errors=True)


def seed(dem, fabric):
    """Stores `fabric` through the REST API, request by request (a whole model of 10,000 hosts
    is more than a request body may hold): hosts, targets and ports, subsystems with their
    access lists, groups."""
    def run(calls):
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(dem.call, *c) for c in calls]:
                future.result()
    run([("PUT", "/host", h) for h in fabric["Hosts"]])
    for t in fabric["Targets"]:
        dem.call("POST", "/target/" + t["Alias"])
        dem.call("PATCH", "/target/" + t["Alias"], {"MgmtMode": t["MgmtMode"]})
        for p in t["PortIDs"]:
            dem.call("PUT", f"/target/{t['Alias']}/portid", p)
    run([("PUT", f"/target/{t['Alias']}/subsystem", {k: v for k, v in s.items() if k != "NSIDs"})
         for t in fabric["Targets"] for s in t["Subsystems"]])
    for g in fabric["Groups"]:
        dem.call("POST", "/group/" + g["Name"])
        run([("POST", f"/group/{g['Name']}/host/{h}") for h in g["Hosts"]])


def model(n):
    hosts = [{"Alias": f"h{i}", "HOSTNQN": f"nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-{i:012d}"} for i in range(n)]
    subsystems = max(1, n // 10)
    targets = []
    for t in range(10):
        subs = []
        for s in range(t, subsystems, 10):
            acl = [] if s % 10 == 0 else [f"h{(s * 10 + k) % n}" for k in range(10)]
            subs.append({"SUBNQN": f"nqn.2024-01.io.example:bench-{s}", "AllowAnyHost": 1 if s % 10 == 0 else 0,
                         "NSIDs": [], "Hosts": sorted(set(acl))})
        targets.append({"Alias": f"t{t}", "Refresh": 0, "MgmtMode": "LocalMgmt", "PortIDs": [
            {"PORTID": 1, "TRTYPE": "tcp", "ADRFAM": "ipv4", "TRADDR": f"192.0.2.{t + 1}", "TRSVCID": 4420}],
            "Subsystems": subs, "NSDevices": [], "Interfaces": []})
    groups = [{"Name": f"g{g}", "Targets": [], "Hosts": [f"h{i}" for i in range(g, min(n, 1000), 10)]} for g in range(10)]
    return {"Targets": targets, "Hosts": hosts, "Groups": groups}


def browser(dem):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,800",
                     f"--user-data-dir={tempfile.mkdtemp(prefix='dem-console-chromium.')}",
                     f"--ignore-certificate-errors-spki-list={dem.spki}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def drawn(driver, view, since, timeout=60):
    """Milliseconds from `since` (performance.now() of the page) to the view's draw mark."""
    end = time.time() + timeout
    while time.time() < end:
        at = driver.execute_script(
            "const m = performance.getEntriesByName('dem-drawn-' + arguments[0]).filter(e => e.startTime >= arguments[1]);"
            " return m.length ? m[0].startTime : null", view, since)
        if at is not None:
            return at - since
        time.sleep(0.02)
    raise RuntimeError(f"{view} was not drawn within {timeout} s")


def measure(dem, driver):
    driver.get(dem.url + "/")
    driver.execute_script("sessionStorage.setItem('dem.console.token', arguments[0])", dem.token)
    # A new load (the query differs), which signs in from session storage.
    driver.get(dem.url + "/?measured#/overview")
    overview = drawn(driver, "overview", 0)
    config = driver.execute_script(
        "const r = performance.getEntriesByType('resource').filter(e => e.name.endsWith('/dem/config'));"
        " return r.length ? [r[0].encodedBodySize, r[0].duration] : [0, 0]")
    now = driver.execute_script("return performance.now()")
    driver.execute_script("location.hash = '#/hosts'")
    hosts = drawn(driver, "hosts", now)
    now = driver.execute_script("return performance.now()")
    driver.execute_script("location.hash = '#/host/h1'")
    host = drawn(driver, "host", now)
    return {"overview": overview, "hosts": hosts, "host": host, "config_bytes": config[0], "config_ms": config[1]}


small, large = DEM(), DEM()
try:
    started = time.time()
    seed(large, model(args.scale))
    seed_seconds = time.time() - started
    seed(small, model(10))
    results = {"small": [], "large": []}
    for _ in range(args.rounds):
        for name, dem in (("small", small), ("large", large)):
            driver = browser(dem)
            try:
                results[name].append(measure(dem, driver))
            finally:
                driver.quit()
finally:
    small.stop()
    large.stop()

med = lambda name, key: statistics.median(r[key] for r in results[name])
spread = lambda name, key: ", ".join(f"{r[key]:.0f}" for r in results[name])
print(f"### The web console: {args.scale:,} hosts and {max(1, args.scale // 10):,} subsystems beside 10 and 1, in chromium\n")
print("Headless chromium on this machine, a fresh browser per measurement, "
      f"{args.rounds} rounds alternating the two dem (medians; every round in brackets). Times from the Performance API: "
      "from navigation (or the view's link) until the view is drawn and takes input. The large model was stored in "
      f"{seed_seconds:.1f} s through the REST API (8 requests at a time).\n")
print("| View | 10 hosts (ms) | " + f"{args.scale:,} hosts (ms) | ratio | goal |")
print("|---|---|---|---|---|")
for key, label, goal in (("overview", "overview, from navigation (sign-in from session storage included)", "< 1000 ms"),
                         ("hosts", "hosts list (its first page of 100), from the link", ""),
                         ("host", "one host's page with its log page and reasons, from the link", "")):
    ratio = med("large", key) / max(med("small", key), 0.001)
    met = "" if not goal else ("met" if med("large", key) < 1000 else "**missed**")
    print(f"| {label} | {med('small', key):.0f} ({spread('small', key)}) | **{med('large', key):.0f}** ({spread('large', key)}) | "
          f"{ratio:.1f} | {goal} {met} |")
print(f"| GET /dem/config: bytes on the wire, ms | {med('small', 'config_bytes'):,.0f} B, {med('small', 'config_ms'):.0f} | "
      f"{med('large', 'config_bytes'):,.0f} B, {med('large', 'config_ms'):.0f} | | |")
print()
