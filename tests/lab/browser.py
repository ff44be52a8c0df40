"""A real browser for the lab tests: Debian's chromium driven by selenium, headless.

The browser and its driver come from the distribution (scripts/ensure-browser installs them); selenium is
given both paths, so it never downloads a browser or a driver of its own. The lab hub's certificate is
self-signed, hence --ignore-certificate-errors, here and only here; --no-proxy-server keeps a proxy set in
the environment away from the lab's private addresses.
"""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--ignore-certificate-errors",
        "--no-proxy-server", "--window-size=1400,1000"]


def missing() -> str:
    """Why no browser can start here ('' when it can): named so that the failure says what to install."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    return ("" if not absent else
            f"{' and '.join(absent)} missing: run scripts/ensure-browser (as root it installs Debian's chromium and "
            "chromium-driver), or apt-get install chromium chromium-driver")


def start() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ARGS:
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(120)
    return driver


def wait(driver: webdriver.Chrome, timeout: float = 60) -> WebDriverWait:
    return WebDriverWait(driver, timeout, poll_frequency=0.25)


def visible(driver: webdriver.Chrome, css: str, timeout: float = 60):
    """The first element matching css once it is visible."""
    return wait(driver, timeout).until(ec.visibility_of_element_located((By.CSS_SELECTOR, css)),
                                       f"no visible {css!r} after {timeout:.0f} s at {driver.current_url}")


@contextlib.contextmanager
def screenshots_on_failure(driver: webdriver.Chrome, directory: Path, name: str):
    """Save a screenshot and the page's HTML when the block fails (the failure itself goes on)."""
    try:
        yield
    except BaseException:
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            driver.save_screenshot(str(directory / f"{name}.png"))
            (directory / f"{name}.html").write_text(driver.page_source)
        raise
