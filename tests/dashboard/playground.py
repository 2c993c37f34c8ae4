"""Drives the dashboard's playground in headless Chromium for tests/playground.rs, one step at a time.

Usage:
  playground.py URL --play SEED DURATION CHUNK_MS OUTDIR
      generate, report `played FIRST_AUDIO_MS DONE_MS CHECKSUM RECEIVED_S AUDIO_STATE`, then save a
      screenshot of the playground and the page's WAV and FLAC downloads into OUTDIR and report
      `downloads PNG WAV FLAC`; then continue the FLAC as a clip (`continued STATE NOTES`);
  playground.py URL --stop DURATION CHUNK_MS
      generate, report `running RECEIVED_S` once audio arrives, wait for `stop` on stdin, press Stop,
      report `stopped RECEIVED_S`;
  playground.py URL --tokens READ GENERATE
      generate without a token (the page must ask for one), with READ (refused: `refused CODE MESSAGE`),
      then with GENERATE (`generated RECEIVED_S`).
Each finding is one line on stdout; `done` ends a run. Any failure prints `FAIL <why>` and exits 1, as
does a page error or a Content-Security-Policy violation. Debian's chromium, driven by Playwright.
"""

import os
import sys

from playwright.sync_api import sync_playwright

from steps import chromium, fail, finish, say, until, wait

GENERATION_S = 240.0


def value(page, testid):
    return page.get_by_test_id(testid).get_attribute("data-value")


def ready(page, url, duration, chunk_ms, seed=""):
    page.goto(url)
    until("the models listed", lambda: page.get_by_test_id("playground-model").get_attribute("data-state") == "listed")
    by = page.get_by_test_id
    if not by("playground-model").input_value():
        fail("no usable model selected")
    by("playground-prompt").fill("a calm piano over soft rain")
    by("playground-duration").fill(str(duration))
    by("playground-chunk-ms").fill(str(chunk_ms))
    by("playground-seed").fill(seed)


def state(page):
    return value(page, "playground-state")


def play(page, url, seed, duration, chunk_ms, outdir):
    ready(page, url, duration, chunk_ms, seed)
    page.get_by_test_id("playground-generate").click()
    final = until("the generation's end", lambda: (s := state(page)) in ("done", "refused", "stopped") and s, GENERATION_S)
    if final != "done":
        fail(f"ended {final}: {page.get_by_test_id('playground-error').inner_text()}")
    first = value(page, "playground-first-audio-ms")
    audio_state = page.get_by_test_id("playground-first-audio-ms").get_attribute("data-audio-state")
    say("played", first, value(page, "playground-done-ms"), value(page, "playground-checksum"),
        value(page, "playground-received-seconds"), audio_state)
    saved = [os.path.join(outdir, "playground.png")]
    page.get_by_test_id("panel-playground").screenshot(path=saved[0])
    for kind in ("wav", "flac"):
        with page.expect_download(timeout=GENERATION_S * 1000) as info:
            page.get_by_test_id(f"playground-download-{kind}").click()
        path = os.path.join(outdir, f"played.{kind}")
        info.value.save_as(path)
        saved.append(path)
    say("downloads", *saved)
    # The FLAC just saved, as a clip to continue: decoded by the browser, sent as PCM.
    page.set_input_files("#pg-clip", saved[2])
    until("the clip read", lambda: "decoded here" in page.inner_text("#pg-clip-note"))
    by = page.get_by_test_id
    by("playground-duration").fill("1")
    by("playground-generate").click()
    final = until("the continuation's end", lambda: (s := state(page)) in ("done", "refused") and s, GENERATION_S)
    say("continued", final, page.inner_text("#pg-notes"), "|", by("playground-error").inner_text())


def stop(page, url, duration, chunk_ms):
    ready(page, url, duration, chunk_ms)
    page.get_by_test_id("playground-generate").click()
    until("audio arriving", lambda: float(value(page, "playground-received-seconds") or 0) > 0, GENERATION_S)
    say("running", value(page, "playground-received-seconds"))
    wait("stop")
    page.get_by_test_id("playground-stop").click()
    until("stopped", lambda: state(page) == "stopped")
    say("stopped", value(page, "playground-received-seconds"))


def tokens(page, url, read, generate):
    by = page.get_by_test_id
    ready(page, url, 1, 200)
    by("playground-generate").click()
    until("the token form", lambda: by("token-form").is_visible())
    say("asked", page.inner_text("#token-reason"))
    page.fill("#token", read)
    page.click("#token-form button")
    until("the read token refused",
          lambda: state(page) == "refused" and by("token-form").is_visible() and by("playground-error").inner_text())
    say("refused", by("playground-error").get_attribute("data-code"), by("playground-error").inner_text())
    page.fill("#token", generate)
    page.click("#token-form button")
    until("generated with the generate token", lambda: state(page) == "done", GENERATION_S)
    say("generated", value(page, "playground-received-seconds"), by("token-form").is_hidden())


def main():
    url, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium(), args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page(accept_downloads=True)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: "Content Security Policy" in m.text and errors.append(m.text))
        if mode == "--play":
            play(page, url, args[0], float(args[1]), int(args[2]), args[3])
        elif mode == "--stop":
            stop(page, url, float(args[0]), int(args[1]))
        elif mode == "--tokens":
            tokens(page, url, args[0], args[1])
        else:
            fail(f"unknown mode {mode}")
        finish(browser, errors)


if __name__ == "__main__":
    main()
