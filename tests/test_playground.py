"""The web playground at / of a real `elision serve` (a subprocess on loopback, with a service
token), driven in a real headless Chromium by selenium through Debian's chromedriver (nothing is
downloaded). Skips, saying why, only when no browser is installed (`make setup` installs one
where apt-get can).

ELISION_PLAYGROUND_SCREENSHOT=docs/img/playground.png writes the screenshot the docs show."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
import httpx

from elision import Compressor

from .upstream import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
TOKEN = "pg-token-123"
DOCS = [
    "The Tay Bridge, opened in 1878, carried the North British Railway across the Firth of Tay near Dundee. "
    "Its designer, Thomas Bouch, was knighted after the opening, but less than two years later the central "
    "girders collapsed in a violent storm on 28 December 1879 while a train was crossing.",
    "Bread rises because yeast ferments the sugars in the dough and releases carbon dioxide, which the gluten "
    "network traps as small bubbles that expand in the heat of the oven.",
]
QUESTION = "Who designed the Tay Bridge?"

pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no headless browser: install Debian's chromium and chromium-driver "
                                       "(apt-get install -y chromium chromium-driver; `make setup` does)")


@pytest.fixture(scope="module")
def service():
    port = free_port()
    env = {**os.environ, "ELISION_API_KEY": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "elision.cli", "serve", "--method", "llmlingua2", "--methods",
                             "truncate", "--port", str(port), "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"elision serve did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1100", "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(driver, condition, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = driver.execute_script(condition)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {condition}")


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById({element_id!r}).textContent")


def test_playground_compresses_with_the_token_and_strikes_through(service, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(service + "/")
    wait_for(browser, "return document.body.dataset.ready === '1'")
    methods = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#method option")]
    assert methods == ["llmlingua2", "truncate"]
    browser.find_element(By.ID, "context").send_keys("\n\n".join(DOCS))
    browser.find_element(By.ID, "question").send_keys(QUESTION)
    browser.execute_script("const r = document.getElementById('rate'); r.value = '0.4';"
                           "r.dispatchEvent(new Event('input'));")
    assert text_of(browser, "rate-out") == "0.40"
    target = browser.find_element(By.ID, "target")
    assert target.get_attribute("value") == "gpt-4o"  # the service's default
    target.clear()
    target.send_keys("cl100k_base")

    browser.find_element(By.ID, "go").click()  # no token yet: the service refuses, the page says why
    wait_for(browser, "return !document.getElementById('error').hidden")
    assert "needs its token" in text_of(browser, "error")

    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "go").click()
    wait_for(browser, "return !document.getElementById('result').hidden")
    assert browser.find_element(By.ID, "error").get_attribute("hidden") is not None

    lib = Compressor("llmlingua2", target="cl100k_base").compress(context=DOCS, question=QUESTION, rate=0.4)
    assert text_of(browser, "compressed") == lib.compressed_prompt
    assert text_of(browser, "origin-tokens") == f"{lib.origin_tokens:,} cl100k_base tokens"
    assert text_of(browser, "compressed-tokens") == f"{lib.compressed_tokens:,} cl100k_base tokens"
    assert text_of(browser, "ratio").startswith(f"{lib.ratio:.1f}x")
    assert text_of(browser, "saving").startswith(f"{lib.saved_tokens:,} tokens")
    check_marked(browser, lib)
    assert browser.execute_script("return getComputedStyle(document.querySelector('#marked del'))"
                                  ".textDecorationLine") == "line-through"
    shot = tmp_path / "playground.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("ELISION_PLAYGROUND_SCREENSHOT"):
        shutil.copy(shot, os.environ["ELISION_PLAYGROUND_SCREENSHOT"])

    # spans count code points (Python's str); JS strings count an emoji as two: every span after
    # one must still line up. (Typed by script: chromedriver cannot type outside the BMP.)
    docs = ["🌉 " + DOCS[0], DOCS[1]]
    browser.execute_script("document.getElementById('context').value = arguments[0]", "\n\n".join(docs))
    browser.find_element(By.ID, "go").click()
    wait_for(browser, "return document.getElementById('marked').textContent.startsWith('🌉')")
    check_marked(browser, Compressor("llmlingua2", target="cl100k_base").compress(
        context=docs, question=QUESTION, rate=0.4))


def check_marked(browser, lib):
    """The whole original is shown, each dropped stretch inside <del>, each kept one as is."""
    text = lib.original_prompt
    assert text_of(browser, "marked") == text
    dropped = browser.execute_script("return [...document.querySelectorAll('#marked del')].map(e => e.textContent)")
    kept = browser.execute_script("return [...document.querySelectorAll('#marked span')].map(e => e.textContent)")
    assert dropped == [text[a:b] for a, b in _gaps(lib.kept_spans(), len(text))] and dropped
    assert kept == [text[a:b] for a, b in lib.kept_spans()]


def test_playground_page_is_open_and_locked_down(service):
    r = httpx.get(service + "/", timeout=10)  # the page needs no token; compressing does
    assert r.status_code == 200 and "elision playground" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert httpx.get(service + "/playground/config", timeout=10).json()["methods"] == ["llmlingua2", "truncate"]
    assert httpx.post(service + "/v1/compress", json={"context": "x"}, timeout=10).status_code == 401


def _gaps(spans, n):
    out, pos = [], 0
    for s, e in spans:
        if s > pos:
            out.append((pos, s))
        pos = e
    if pos < n:
        out.append((pos, n))
    return out
