"""The Prefect UI as a user sees it: headless chromium opens the local server's UI, goes to
Deployments, opens the nightly refresh, "Run > Custom run", and finds tava's parameter form with
its defaults and descriptions. Needs Debian's chromium + chromium-driver (CI installs them)."""
from __future__ import annotations

import shutil
import tempfile
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
NIGHTLY = "nightly-adapter-refresh"


@pytest.fixture()
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromedriver not found (Debian: apt-get install chromium chromium-driver; "
                    ".ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[dev]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chromium-', dir=tmp_path)}")
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _renderings(description: str) -> list[str]:
    """How the UI may show a description: as it is (the v2 UI, the server's default) or rendered
    as markdown (v1: code spans lose their backticks). tava's schema writes <placeholders> as
    ‹placeholders› so that neither UI swallows them (see tava_core.config)."""
    return [description, description.replace("`", "")]


def _squash(text: str) -> str:
    return " ".join(text.split())


def _expected_form(flow) -> tuple[dict[str, str], dict[str, Any]]:
    """Descriptions and scalar defaults of the nightly flow's config, from the flow itself."""
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(flow.fn).model_dump()
    config_ref = schema["properties"]["config"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["definitions"][config_ref]["properties"]
    defaults = schema["properties"]["config"]["default"]
    descriptions = {name: prop["description"] for name, prop in fields.items()}
    scalars = {name: value for name, value in defaults.items()
               if isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""}
    return descriptions, scalars


def _deployment_id(api: str, name: str) -> str:
    """The id of the deployment ``name`` (its flow is named the same), from the server's REST API."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{api}/deployments/name/{name}/{name}", timeout=30) as response:
        return json.loads(response.read())["id"]


def _matches(value: Any, shown: list[str]) -> bool:
    if isinstance(value, str):
        return value in shown
    numbers = []
    for text in shown:
        try:
            numbers.append(float(text))
        except ValueError:
            pass
    return any(abs(number - float(value)) <= 1e-12 + 1e-9 * abs(float(value)) for number in numbers)


@pytest.mark.xdist_group("local_prefect_server")  # one server start (~50 s) for both tests
@pytest.mark.timeout(1200)  # may include starting the server and deploying (session fixture)
def test_nightly_deployment_shows_tavas_parameter_form(local_prefect_server, browser, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    server = local_prefect_server
    if NIGHTLY not in server.deployed:
        pytest.skip(f"{NIGHTLY} was not deployed: {server.not_deployed.get(NIGHTLY)}")
    from test_deployments import _load_flow

    descriptions, defaults = _expected_form(_load_flow("flows/refresh.py:nightly_adapter_refresh"))
    wait = WebDriverWait(browser, 60)
    screenshot = tmp_path / "nightly-custom-run.png"
    try:
        # As a user would: the UI's Deployments page, the nightly deployment, Run > Custom run. The
        # list pages by ten and tava deploys more than ten flows, so the nightly one may sit on page
        # two: open it by its id (the link the list would follow) when it is not on the first page.
        browser.get(server.url)
        wait.until(EC.element_to_be_clickable((By.XPATH, "//a[normalize-space()='Deployments']"))).click()
        try:
            WebDriverWait(browser, 15).until(EC.element_to_be_clickable(
                (By.XPATH, f"//a[normalize-space()='{NIGHTLY}']"))).click()
        except TimeoutException:
            browser.get(f"{server.url}/deployments/deployment/{_deployment_id(server.api, NIGHTLY)}")
        wait.until(EC.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Run']"))).click()
        wait.until(EC.element_to_be_clickable((By.XPATH, "//*[normalize-space()='Custom run']"))).click()
        wait.until(EC.url_contains("/run"))
        last = next(reversed(descriptions.values()))
        wait.until(lambda d: any(_squash(text) in _squash(d.find_element(By.TAG_NAME, "body").text)
                                 for text in _renderings(last)))
        browser.save_screenshot(str(screenshot))

        page = _squash(browser.find_element(By.TAG_NAME, "body").text)
        # Field values: inputs, plus the choice shown by select boxes (v2 draws them as comboboxes).
        shown = [element.get_attribute("value") or "" for element in
                 browser.find_elements(By.CSS_SELECTOR, "input, textarea, select")]
        shown += [element.text.strip() for element in
                  browser.find_elements(By.CSS_SELECTOR, "[role='combobox'], button[aria-haspopup='listbox']")]
    except Exception:
        browser.save_screenshot(str(screenshot))
        raise
    assert screenshot.stat().st_size > 10_000
    assert NIGHTLY in page and "Parameters" in page
    missing = {name: text for name, text in descriptions.items()
               if not any(_squash(shown_as) in page for shown_as in _renderings(text))}
    assert not missing, f"descriptions not on the form (screenshot {screenshot}): {missing}"
    absent = {name: value for name, value in defaults.items() if not _matches(value, shown)}
    assert not absent, f"defaults not in the form's fields (screenshot {screenshot}): {absent}; fields: {shown}"
    assert "nightly" in shown and len(defaults) >= 5  # tava's own defaults, not an empty form
