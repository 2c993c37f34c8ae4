"""What the dashboard's browser drivers share: a line per finding on stdout, sync words from the test on
stdin, polling with a deadline, and Debian's chromium."""

import shutil
import sys
import time

STEP_S = 15.0


def say(*words):
    print(*words, flush=True)


def wait(stdin_word):
    line = sys.stdin.readline().strip()
    if line != stdin_word:
        fail(f"expected {stdin_word!r} from the test, got {line!r}")


def fail(why):
    say("FAIL", why)
    sys.exit(1)


def until(what, check, within=STEP_S):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    fail(f"{what} within {within} s")


def chromium():
    """The system's chromium: Playwright drives it without a browser download of its own."""
    path = shutil.which("chromium")
    if path is None:
        fail("no chromium on PATH (scripts/provision-tools.sh installs it)")
    return path


def finish(browser, errors):
    """Fails on the page errors collected, else closes the browser and says `done`."""
    if errors:
        fail(f"page errors: {errors}")
    browser.close()
    say("done")
