"""Take the README's screenshots (docs/screenshots/: overview, agents, an agent, runtimes,
kill switches, the flag editor, the deploy form with its promotion gates; the overview and
the kill switches on a phone, 390 CSS px wide).

Runs the product exactly as `make run` does, on a throw-away var dir (SQLite and the demo
data), logs in as the generated admin in Debian's headless Chromium and captures the pages.
Not part of the test suite:

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--phone-only]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGES = {
    "overview.png": "/",
    "agents.png": "/agents/",
    "agent.png": "/agents/1/",
    "runtimes.png": "/runtimes/",
    "kill-switches.png": "/flags/kill-switches/",
    "flag-editor.png": "/flags/1/edit/",  # the demo's 10% gradual rollout
    "deploy-gate.png": "/agents/1/deploy/",  # each environment's promotion gate
}
# The same pages on a phone (an iPhone 12-15's 390 x 844 CSS px): one column, the sidebar
# folded behind its Menu button.
PHONE: ViewportSize = {"width": 390, "height": 844}
PHONE_PAGES = {
    "overview-phone.png": "/",
    "kill-switches-phone.png": "/flags/kill-switches/",
}
# --all: more pages, to look over the UI (not for the README)
MORE_PAGES = {
    "agent-new.png": "/agents/new/",
    "agent-archive.png": "/agents/1/archive/",
    "tenants.png": "/tenants/",
    "tenant.png": "/tenants/acme/",
    "audit.png": "/audit/",
    "audit-event.png": "/audit/2/",
    "users.png": "/users/",
    "profile.png": "/profile/",
    "bundles.png": "/bundles/",
    "api-docs.png": "/api/docs/",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=3) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout:.0f} s")


def _story_pages(page: Page, base: str, timeout: float) -> dict[str, str]:
    """Wait (up to ``timeout`` seconds) until the demo story has played — support-bot v2's
    rollout in production rolled back by the analysis, refund-agent's approvals waiting —
    and return the pages that show it: the rollout, the incident panel, the inbox."""
    deadline = time.monotonic() + timeout
    while True:
        rollouts = page.request.get(f"{base}/api/v1/rollouts/").json()["results"]
        done = [
            r
            for r in rollouts
            if r["agent_slug"] == "support-bot"
            and r["environment_slug"] == "production"
            and r["state"] == "rolled_back"
        ]
        waiting = page.request.get(f"{base}/api/v1/approvals/?status=pending").json()
        if done and waiting.get("count", len(waiting.get("results", []))):
            rollout = done[0]
            print(f"the story has played: rollout #{rollout['id']} rolled back", flush=True)
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the demo story did not play within {timeout:.0f} s")
        time.sleep(5)
    time.sleep(20)  # a few more minutes' rollups for the overview's sparklines
    return {
        "rollout.png": f"/rollouts/{rollout['id']}/",
        "incident-panel.png": f"/incidents/{rollout['agent']}/{rollout['environment']}/",
        "approvals.png": "/approvals/",
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument(
        "--all", action="store_true", help="also capture the other pages and the login page"
    )
    parser.add_argument(
        "--phone-only", action="store_true", help="capture only the phone-width screenshots"
    )
    parser.add_argument(
        "--quick", action="store_true", help="no worker and no demo story: the seeded data only"
    )
    parser.add_argument(
        "--story-timeout", type=float, default=600, help="seconds to wait for the demo story"
    )
    args = parser.parse_args()
    pages = {**PAGES, **MORE_PAGES} if args.all else PAGES
    if args.phone_only:
        pages = {}
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="controlplane-screenshots-") as var_dir:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")
        }
        env.update(
            CONTROLPLANE_VAR_DIR=var_dir,
            PYTHONUNBUFFERED="1",
            DJANGO_SETTINGS_MODULE="controlplane.settings.base",
            # the demo story, paced as tests/project/test_run_demo.py paces it
            ROLLOUT_ANALYSIS_EVERY_S="5",
            DEMO_ROLLOUT_AFTER_S="5",
            DEMO_SUPPORT_BOT_RPS="8",
            DEMO_REFUND_AGENT_RPS="3",
        )
        port = _free_port()
        command = [sys.executable, "-m", "controlplane.run", "--port", str(port)]
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [*command, "--no-worker"] if args.quick else command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        output: list[str] = []
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(
            target=lambda: output.extend(iter(stdout.readline, "")), daemon=True
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_for(f"{base}/login/", process)
            match = re.search(r"Password \(generated now.*\): (\S+)", "".join(output))
            if match is None:
                raise SystemExit("no generated admin password in the output:\n" + "".join(output))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": args.height})
                page.goto(f"{base}/login/")
                if args.all:
                    page.screenshot(path=str(args.out / "login.png"))
                page.get_by_label("Username").fill("admin")
                page.get_by_label("Password").fill(match[1])
                page.get_by_role("button", name="Log in").click()
                page.wait_for_url(f"{base}/")
                if not args.quick and not args.phone_only:
                    pages = {**pages, **_story_pages(page, base, args.story_timeout)}
                for name, path in pages.items():
                    page.goto(f"{base}{path}")
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(args.out / name), full_page=False)
                    print(f"wrote {args.out / name}")
                page.set_viewport_size(PHONE)
                for name, path in PHONE_PAGES.items():
                    page.goto(f"{base}{path}")
                    page.wait_for_load_state("networkidle")
                    page.screenshot(path=str(args.out / name), full_page=False)
                    print(f"wrote {args.out / name}")
                browser.close()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
