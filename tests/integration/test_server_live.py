"""A real `vfr serve` process on 127.0.0.1 (one for this module): HTTP over loopback and the JSON access
log, the search page in headless Chromium (Playwright driving Debian's /usr/bin/chromium), fuzzing from
/openapi.json with schemathesis, and last, SIGTERM with a request in flight."""
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server_helpers import REPO, ServerProcess, make_served_store

pytestmark = pytest.mark.integration
CHROMIUM = os.environ.get("VFR_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def live(template_store, tmp_path_factory):
    root = tmp_path_factory.mktemp("live-server")
    store = make_served_store(template_store, root)
    server = ServerProcess(store.db, root / "server.log")
    try:
        server.wait_ready()
        yield server, store
    finally:
        server.terminate()


def test_search_over_loopback_and_a_json_access_log_without_queries(live):
    server, store = live
    resp = httpx.get(f"{server.url}/v1/search", params={"q": "zebra crossing secretword", "k": 3},
                     headers={**store.auth("pets_read"), "X-Request-ID": "req-123"}, timeout=60)
    assert resp.status_code == 200 and len(resp.json()["hits"]) == 3
    assert resp.headers["x-request-id"] == "req-123"
    assert httpx.get(f"{server.url}/v1/search", params={"q": "x"}, timeout=60).status_code == 401
    time.sleep(0.5)
    lines = [json.loads(line) for line in server.log.read_text().splitlines() if line.startswith("{")]
    ours = [r for r in lines if r.get("request_id") == "req-123"]
    assert len(ours) == 1
    entry = ours[0]
    key_id = store.keys["pets_read"].split("_")[1]
    assert entry["route"] == "/v1/search" and entry["status"] == 200 and entry["key"] == key_id and entry["ms"] > 0
    assert "secretword" not in server.log.read_text()  # queries are personal data: never logged
    assert any(r["status"] == 401 and r["route"] == "/v1/search" for r in lines)


def test_concurrent_searches_all_succeed(live):
    """16 clients at once, every retriever: no request fails (JVM calls from many threads, batched encoding)."""
    from concurrent.futures import ThreadPoolExecutor

    server, store = live
    queries = ["a dog chasing a cat", "red bus", "people at a night market", "snowy mountain lake", "a bowl of ramen"]

    def client(i: int) -> list[int]:
        with httpx.Client(base_url=server.url, headers=store.auth("all_admin"), timeout=120) as c:
            return [c.get("/v1/search", params={"q": f"{queries[(i + j) % 5]} {j}", "k": 10,
                                                "retriever": ("bm25", "dense", "hybrid")[(i + j) % 3]}).status_code
                    for j in range(15)]
    with ThreadPoolExecutor(16) as pool:
        statuses = [s for got in pool.map(client, range(16)) for s in got]
    assert statuses == [200] * 240


def test_serve_refuses_a_network_address_without_keys(tmp_path):
    from vfr.store.store import Store

    db = tmp_path / "nokeys.duckdb"
    with Store(db):
        pass
    run = subprocess.run([sys.executable, "-m", "vfr", "serve", "--db", str(db), "--host", "0.0.0.0"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 1 and "refusing to serve 0.0.0.0 without keys" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: run `bash scripts/setup.sh test` (installs Debian's chromium) "
                    "or set VFR_CHROMIUM")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield b
        b.close()


def test_the_page_in_headless_chromium(live, browser, tmp_path):
    server, store = live
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the page's CSP forbids (as it should)
    page = browser.new_context(viewport={"width": 1100, "height": 1500}, bypass_csp=True).new_page()
    page.goto(server.url + "/")
    assert page.evaluate("document.activeElement.id") == "q"  # ready to type
    page.locator("#status.error").wait_for()  # no key yet: the collections call says why
    assert "missing API key" in page.locator("#status").inner_text()
    page.fill("#key", store.keys["all_admin"])
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#collection option').length > 2")
    page.fill("#q", "a dog chasing a cat")
    page.keyboard.press("Enter")
    page.locator(".card").first.wait_for()
    cards = page.locator(".card")
    assert cards.count() == 10
    assert [cards.nth(i).locator(".rank").inner_text() for i in range(3)] == ["#1", "#2", "#3"]
    marks = {m.lower() for m in page.locator(".card mark").all_text_contents()}
    assert marks and marks <= {"dog", "dogs", "chasing", "chase", "chases", "cat", "cats"}
    assert "BM25" in cards.first.locator(".why").inner_text() and "dense" in cards.first.locator(".why").inner_text()
    assert page.locator("img").count() == 0  # no pixels anywhere
    shot = Path(os.environ.get("VFR_SCREENSHOT", tmp_path / "page.png"))
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    hybrid_first = cards.first.locator(".id").inner_text()
    page.click("#next")  # paging
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Results 11')")
    assert page.locator(".card").first.locator(".rank").inner_text() == "#11"
    for first in range(21, 101, 10):  # on to the hybrid's last page (its window): Next stops there, and says why
        page.click("#next")
        page.wait_for_function(f"document.getElementById('status').textContent.startsWith('Results {first}')")
    assert page.locator("#next").is_disabled() and "choose BM25 or dense" in page.locator("#status").inner_text()
    assert "choose BM25 or dense" in page.locator("#next").get_attribute("title")  # said at the button too
    page.click("#prev")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Results 81')")
    assert not page.locator("#next").is_disabled()
    page.fill("#q", "a dog chasing a cat")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('status').textContent.startsWith('Results 1–')")
    page.select_option("#retriever", "bm25")
    page.wait_for_function("document.getElementById('status').textContent.includes('(bm25)')")
    bm25 = httpx.get(f"{server.url}/v1/search", params={"q": "a dog chasing a cat", "retriever": "bm25", "k": 1},
                     headers=store.auth("all_admin"), timeout=60).json()["hits"][0]["id"]
    assert page.locator(".card").first.locator(".id").inner_text() == bm25
    assert hybrid_first  # (the two retrievers may agree on the first hit; the request is what changed)
    page.fill("#key", "vfr_000000000000_wrong")
    page.click("#savekey")
    page.wait_for_function("document.getElementById('status').classList.contains('error')")
    assert "unknown or revoked API key" in page.locator("#status").inner_text()
    page.keyboard.press("Enter")
    page.click("#go")
    page.wait_for_function("document.getElementById('status').textContent.includes('unknown or revoked')")
    assert page.locator(".card").count() == 0
    phone = browser.new_context(viewport={"width": 375, "height": 800}, bypass_csp=True).new_page()
    phone.goto(server.url + "/")
    phone.evaluate(f"sessionStorage.setItem('vfr-key', {json.dumps(store.keys['pets_read'])})")
    phone.goto(server.url + "/")
    phone.fill("#q", "black dog")
    phone.keyboard.press("Enter")
    phone.locator(".card").first.wait_for()
    assert phone.evaluate("document.scrollingElement.scrollWidth") <= 375  # no sideways scrolling on a phone
    assert phone.evaluate("sessionStorage.getItem('vfr-key')") == store.keys["pets_read"]


def test_schemathesis_finds_no_server_errors_and_no_schema_violations(live, tmp_path):
    server, store = live
    key = store.keys["all_admin"]
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{server.url}/openapi.json", "--checks",
         "not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance",
         "--max-examples", os.environ.get("VFR_FUZZ_EXAMPLES", "10"), "--workers", "1", "--seed", "1",
         "--phases", "examples,coverage,fuzzing,stateful", "--request-timeout", "120",
         "-H", f"Authorization: Bearer {key}", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    summary = re.search(r"(\d+) generated, (.*)", run.stdout)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:]
    assert summary and "failed" not in summary.group(2) and int(summary.group(1)) > 100, run.stdout[-3000:]
    assert "5xx" not in run.stdout and "Server error" not in run.stdout


def test_sigterm_lets_requests_in_flight_finish(live):
    server, store = live
    result = {}

    def slow_request():
        body = {"queries": [f"a photo of {w} near a window" for w in range(24)], "k": 50,
                "include": ["description", "explain"]}
        result["resp"] = httpx.post(f"{server.url}/v1/search", json=body, headers=store.auth("all_admin"),
                                    timeout=300)
    t = threading.Thread(target=slow_request)
    t.start()
    time.sleep(0.5)
    assert server.proc.poll() is None
    assert server.terminate() in (0, -15)  # uvicorn re-raises the SIGTERM it captured once it has shut down
    t.join(60)
    assert result["resp"].status_code == 200 and len(result["resp"].json()["results"]) == 24
    log = server.log.read_text()
    assert "Application shutdown complete" in log
