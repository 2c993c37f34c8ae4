"""Drives the dashboard in headless Chromium for tests/dashboard.rs, one step at a time.

Usage: drive.py URL SCREENSHOT, or drive.py URL --token TOKEN for a server whose telemetry needs a
bearer token (the page must ask for it, then connect with it), or drive.py URL --action WEAK ADMIN for
a server with public telemetry and tokens (Clean up must ask for a token, refuse WEAK for its role,
then run with ADMIN). It reports each finding on stdout as one line (`host-memory <bytes>`,
`sampled-at <t1> <t2>`, ...) and waits at the sync points for a line on stdin from the test, which
changes the server meanwhile: `alert` (one was raised), `restarted` (the server is back on the same
ports). Any failure prints `FAIL <why>` and exits 1. Debian's chromium, driven by Playwright, without
a browser download of Playwright's own.
"""

import sys
import time

from playwright.sync_api import sync_playwright

from steps import chromium, fail, finish, say, until, wait


def with_token(page, url, token):
    by = page.get_by_test_id
    page.goto(url)
    until("the token form", lambda: by("token-form").is_visible())
    if by("connection").get_attribute("data-state") == "connected":
        fail("connected without a token")
    say("asked")
    page.fill("#token", token)
    page.click("#token-form button")
    until("connected with the token", lambda: by("connection").get_attribute("data-state") == "connected", 30.0)
    until("host memory shown", lambda: by("host-memory-used-bytes").get_attribute("data-value"))
    say("connected", by("token-form").is_hidden())


def action_with_token(page, url, weak, admin):
    by = page.get_by_test_id
    page.goto(url)
    until("connected without a token", lambda: by("connection").get_attribute("data-state") == "connected", 30.0)
    if by("token-form").is_visible():
        fail("asked for a token to read public telemetry")
    page.click("#cleanup")
    until("the token form for the action", lambda: by("token-form").is_visible())
    say("asked", page.inner_text("#token-reason"))
    page.fill("#token", weak)
    page.click("#token-form button")
    until("the weak token refused", lambda: "admin" in page.inner_text("#token-error") and by("token-form").is_visible())
    say("refused", by("action-result").get_attribute("data-state"))
    page.fill("#token", admin)
    page.click("#token-form button")
    until("the action done", lambda: by("action-result").get_attribute("data-state") == "done")
    say("done-action", page.inner_text("#action-result"), by("token-form").is_hidden())


def main():
    url = sys.argv[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        if sys.argv[2] == "--action":
            action_with_token(browser.new_page(), url, sys.argv[3], sys.argv[4])
            browser.close()
            say("done")
            return
        if sys.argv[2] == "--token":
            with_token(browser.new_page(), url, sys.argv[3])
            browser.close()
            say("done")
            return
        screenshot = sys.argv[2]
        page = browser.new_page(viewport={"width": 1400, "height": 1100})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        by = page.get_by_test_id
        opened = time.monotonic()
        page.goto(url)
        used = until("host memory shown", lambda: by("host-memory-used-bytes").get_attribute("data-value"), 3.0)
        say("host-memory", used, f"{time.monotonic() - opened:.2f}")
        first = until("a sample time", lambda: by("sampled-at").get_attribute("datetime"))
        later = until("sampled-at advancing", lambda: (t := by("sampled-at").get_attribute("datetime")) != first and t)
        say("sampled-at", first, later)
        until("connected", lambda: by("connection").get_attribute("data-state") == "connected")
        for panel in ["panel-host", "panel-gpus", "panel-alerts", "panel-leases", "panel-models", "panel-queue",
                      "panel-recent", "panel-evictions"]:
            if not by(panel).is_visible():
                fail(f"{panel} not shown")
        say("panels")
        wait("alert")
        text = until("the alert shown", lambda: "host_memory" in (t := by("panel-alerts").inner_text()) and t)
        say("alert-shown", "critical" in text)
        page.screenshot(path=screenshot, full_page=True)
        say("screenshot", screenshot)
        say("ready-for-restart")
        until("disconnected shown", lambda: by("connection").get_attribute("data-state") == "disconnected", 30.0)
        say("disconnected")
        wait("restarted")
        before = by("sampled-at").get_attribute("datetime")
        until("reconnected", lambda: by("connection").get_attribute("data-state") == "connected", 30.0)
        after = until("new samples", lambda: (t := by("sampled-at").get_attribute("datetime")) != before and t)
        say("reconnected", after)
        finish(browser, errors)


if __name__ == "__main__":
    main()
