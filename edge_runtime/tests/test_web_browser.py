"""The line-side page in a real browser (Debian's headless chromium, driven by Selenium) on a real `slsg-edge run`
of a video: live verdict and counts changing, the reject grid, a review, a refit whose new version the run then
uses, and a rollback. With SLSG_SCREENSHOTS=DIR it also saves the three views there (`docs/images/` in the repo:
`SLSG_SCREENSHOTS=docs/images python -m pytest edge_runtime/tests/test_web_browser.py`)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.tests.conftest import make_bundle

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="chromium and chromedriver are not installed (apt-get install chromium "
                                       "chromium-driver)")

OPERATOR_TOKEN = "operator-token-123456"
# the test model's score is the brightness of the brightest pixels / 255 (threshold 0.5): 100 OK, 140 a false
# reject, 230 a defect
VALUES = (100, 140, 230)


def _part(value: int, h: int = 240, w: int = 320) -> np.ndarray:
    """A dark tray with a round part of the given brightness and a fixed texture (lossless video: identical frames)."""
    rng = np.random.default_rng(value)
    frame = (30 + rng.integers(0, 12, (h, w, 1))).astype(np.uint8).repeat(3, axis=2)
    cv2.circle(frame, (w // 2, h // 2), 70, (value, value, value), -1)
    cv2.circle(frame, (w // 2, h // 2), 20, (60, 60, 60), -1)
    return frame


def _video(path: Path, repeats: int = 40) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), 10.0, (320, 240))
    for _ in range(repeats):
        for v in VALUES:
            writer.write(_part(v))
    writer.release()
    return path


def _page_url(log: Path, proc: subprocess.Popen, timeout_s: float = 60.0) -> str:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"slsg-edge run ended early: {proc.stderr.read()}")
        if log.is_file():
            for line in log.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == "page":
                    return record["url"]
        time.sleep(0.2)
    raise AssertionError("the run did not report its page")


@pytest.fixture
def browser():
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout_s: float = 30.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout_s, poll_frequency=0.2).until(condition, message=f"waiting for {what}")


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def _shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / name))
    target = os.environ.get("SLSG_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(target) / name)


def test_the_page_in_a_browser_reviews_refits_and_rolls_back_a_running_line(tmp_path, browser):
    from selenium.webdriver.common.by import By

    bundle = make_bundle(tmp_path / "model.slsg")
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": [{"name": "ana", "role": "operator", "token": OPERATOR_TOKEN}]}))
    log = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "run", "-b", str(bundle), "--video", str(_video(tmp_path / "line.mkv")),
         "--loop", "--realtime", "--web", "127.0.0.1:0", "--web-users", str(users), "--log", str(log), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        browser.get(_page_url(log, proc))
        _wait(browser, lambda d: _text(d, "verdict") in ("OK", "NG"), "a live verdict")
        first = int(_text(browser, "count-ok"))
        _wait(browser, lambda d: int(_text(d, "count-ok")) > first + 2, "the OK count to rise")
        assert _text(browser, "status") == "RUNNING" and _text(browser, "version") == "1"

        browser.find_element(By.ID, "token").send_keys(OPERATOR_TOKEN)
        browser.find_element(By.ID, "login").click()
        _wait(browser, lambda d: "ana (operator)" in _text(d, "user"), "the operator to be logged in")
        _shot(browser, tmp_path, "page-live.png")

        browser.find_element(By.ID, "tab-rejects").click()
        _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#reject-grid .card .review-good"), "reject cards")
        false_reject = _card_scoring(browser, "0.5490")
        defect = _card_scoring(browser, "0.9020")
        key_good, key_defect = false_reject.get_attribute("data-key"), defect.get_attribute("data-key")
        false_reject.find_element(By.CSS_SELECTOR, ".review-good").click()
        _wait(browser, lambda d: "reviewed-good" in _card(d, key_good).get_attribute("class"), "the good review")
        _card(browser, key_defect).find_element(By.CSS_SELECTOR, ".review-defect").click()
        _wait(browser, lambda d: "reviewed-defect" in _card(d, key_defect).get_attribute("class"), "the defect review")
        _shot(browser, tmp_path, "page-rejects.png")

        browser.find_element(By.ID, "tab-model").click()
        browser.find_element(By.ID, "refit").click()
        _wait(browser, lambda d: "version 2 made" in _text(d, "refit-result"), "the refit's result")
        _wait(browser, lambda d: _text(d, "version") == "2", "the run to use version 2")
        _wait(browser, lambda d: "2 (current)" in d.find_element(By.ID, "versions").text, "the versions table")
        assert not browser.find_element(By.ID, "login-form").is_displayed()
        _shot(browser, tmp_path, "page-model.png")

        browser.find_element(By.ID, "tab-live").click()
        _wait(browser, lambda d: "v2" in _text(d, "live-caption"), "a frame judged by version 2")
        browser.find_element(By.ID, "tab-model").click()
        browser.find_element(By.ID, "rollback").click()
        _wait(browser, lambda d: _text(d, "version") == "1", "the rollback to version 1")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    events = [json.loads(x) for x in log.read_text().splitlines()]
    switched = [e["version"] for e in events if e.get("event") == "version"]
    assert switched == [2, 1]
    judged_by = {e["version"] for e in events if e.get("event") == "frame"}
    assert judged_by == {1, 2}


def _card(driver, key: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, f'#reject-grid .card[data-key="{key}"]')


def _card_scoring(driver, score: str):
    from selenium.webdriver.common.by import By

    for card in driver.find_elements(By.CSS_SELECTOR, "#reject-grid .card"):
        if f"score {score}" in card.text and card.find_elements(By.CSS_SELECTOR, ".review-good"):
            return card
    raise AssertionError(f"no reviewable reject scoring {score}")
