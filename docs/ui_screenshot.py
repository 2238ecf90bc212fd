"""Screenshots of a real build in the Prefect UI, taken by headless Chromium.

    python docs/ui_screenshot.py            (needs Debian's chromium + chromium-driver, and selenium)

Starts a Prefect server on 127.0.0.1 with a throwaway database, runs a tiny
TinyStories build against it with the real command, then opens the flow
run's Artifacts tab and the build report artifact in Chromium and saves
both pages under docs/ui/. Each step checks what the page shows, so a UI that
renders no artifacts fails the script instead of producing a blank picture.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "ui"
BIN = Path(sys.executable).parent
RECIPE = """
name = "ui-demo"
kind = "tinystories"
description = "A tiny build for the Prefect UI screenshot"
seed = 5
output_root = "{out}"

[generate]
count = 12
batch_size = 4

[sampling]
max_tokens = 200

[filter]
min_required_words = 0
max_oov_fraction = 1.0

[difficulty]
epochs = 2
ifd = false

[publish]
validation_fraction = 0.2
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(url: str, body: dict | None = None) -> object:
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Content-Type": "application/json"}, method="POST" if body else "GET")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def wait_healthy(api_url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("prefect server exited during start-up")
        try:
            api(f"{api_url}/health")
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"prefect server not healthy after {timeout:.0f} s")


def browser(profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    # No network here: without the background-networking flags Chromium keeps dialling Google.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1440,1200", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def wait_for_text(driver, texts: list[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = driver.find_element("tag name", "body").text
        if all(t in body for t in texts):
            time.sleep(2)  # let images and fonts settle
            return
        time.sleep(0.5)
    raise SystemExit(f"{driver.current_url}: page never showed {texts}")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        url, api_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/api"
        env = {**os.environ, "PREFECT_HOME": tmp, "PREFECT_API_URL": api_url,
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_UI_API_URL": api_url}
        server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port",
                                   str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            wait_healthy(api_url, server)
            recipe = Path(tmp) / "ui-demo.toml"
            recipe.write_text(textwrap.dedent(RECIPE).format(out=Path(tmp) / "build"))
            print("building ui-demo against", url, flush=True)
            subprocess.run([str(BIN / "tinyforge"), "build", str(recipe)], env=env, check=True)
            (run,) = api(f"{api_url}/flow_runs/filter", {"limit": 1, "sort": "START_TIME_DESC"})
            artifacts = api(f"{api_url}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})
            report = next(a for a in artifacts if a["key"] == "ui-demo-report")

            driver = browser(str(Path(tmp) / "chromium"))
            try:
                driver.get(f"{url}/runs/flow-run/{run['id']}")
                wait_for_text(driver, ["Artifacts"])
                driver.find_element("css selector", "li.p-tab#artifacts").click()
                wait_for_text(driver, ["ui-demo-report", "ui-demo-stages", "ui-demo-usage"])
                driver.save_screenshot(str(OUT / "flow-run-artifacts.png"))
                driver.get(f"{url}/artifacts/artifact/{report['id']}")
                wait_for_text(driver, ["Build report: ui-demo", "Plots"])
                images = driver.execute_script(
                    "return [...document.images].filter(i => i.src.startsWith('data:image/png'))"
                    ".map(i => i.naturalWidth)")
                if not images or min(images) == 0:
                    raise SystemExit("the report's plots did not render in the UI")
                driver.execute_script(
                    "const h = [...document.querySelectorAll('h2')].find(e => e.textContent === 'Plots');"
                    "if (h) h.scrollIntoView();")
                time.sleep(1)
                driver.save_screenshot(str(OUT / "report-artifact-plots.png"))
            finally:
                driver.quit()
            print(f"saved {OUT / 'flow-run-artifacts.png'} and {OUT / 'report-artifact-plots.png'}")
        finally:
            server.terminate()
            server.wait(30)


if __name__ == "__main__":
    main()
