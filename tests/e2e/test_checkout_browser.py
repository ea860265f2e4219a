"""The test provider's checkout page in a real browser: headless Chromium (Debian's `chromium` and
`chromium-driver`, driven by Selenium) presses Pay, or Cancel, as a buyer would."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_orders import item, order, register_goods, stock
from tests.support.shop import add_user, bearer, make_settings

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
INSTALL = (
    "headless Chromium is not installed: apt-get install -y chromium chromium-driver"
    " && pip install -e '.[test]' (selenium)"
)
# Where to keep a picture of the page (the README's docs/checkout.png is made this way).
SCREENSHOT = os.environ.get("MIRI_CHECKOUT_SCREENSHOT")


def _browser_ready() -> bool:
    return (
        Path(CHROMIUM).exists()
        and Path(DRIVER).exists()
        and importlib.util.find_spec("selenium") is not None
    )


pytestmark = pytest.mark.skipif(not _browser_ready(), reason=INSTALL)


@pytest.fixture
def settings(data_dir):
    return make_settings(data_dir, payment_provider="checkout")


@pytest.fixture
def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    options.add_argument("--window-size=520,640")
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def checkout(shop: Any, client: Any, quantity: int) -> tuple[dict[str, Any], str, int]:
    """A buyer's order of ``quantity`` (of 5) and its checkout session."""
    _, seller = await add_user(shop, "seller@example.com")
    _, buyer = await add_user(shop, "buyer@example.com")
    goods = await register_goods(client, seller, stock=5, price=12_500)
    resp = await order(client, buyer, goods, quantity)
    placed = (await resp.json())["data"]
    resp = await client.post(f"/api/auth/orders/{placed['orderId']}/payment", headers=bearer(buyer))
    assert resp.status == 201, await resp.text()
    session = (await resp.json())["data"]
    return session, buyer, placed["items"][0]["orderDetailId"]


def press(driver: Any, url: str, label: str, screenshot: Path | None = None) -> str:
    """Open the checkout page, press the button labelled ``label``; the result's text."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    assert "Checkout" in driver.title
    assert driver.find_element(By.ID, "amount").text == "₩25,000"
    if screenshot is not None:
        driver.save_screenshot(str(screenshot))
    driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
    result = WebDriverWait(driver, 20).until(
        expected_conditions.presence_of_element_located((By.ID, "result"))
    )
    assert not driver.find_elements(By.TAG_NAME, "button")  # nothing left to press
    return result.text


async def test_pay_in_the_browser_completes_the_item(shop, client, browser, tmp_path):
    session, buyer, detail = await checkout(shop, client, 2)
    picture = Path(SCREENSHOT) if SCREENSHOT else tmp_path / "checkout.png"
    # Selenium blocks: it runs in a thread while this loop serves the page and the webhook.
    text = await asyncio.to_thread(press, browser, session["checkoutUrl"], "Pay", picture)
    assert text == "Paid. The shop confirmed your order."
    assert picture.read_bytes().startswith(b"\x89PNG")
    assert await shop.bus.drain(timeout=20)
    got = await item(client, buyer, detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("COMPLETED", "PAYMENT_COMPLETED")


async def test_cancel_in_the_browser_gives_the_stock_back(shop, client, browser):
    session, buyer, detail = await checkout(shop, client, 2)
    goods = (await item(client, buyer, detail))["goodsId"]
    assert await stock(client, goods) == 3
    text = await asyncio.to_thread(press, browser, session["checkoutUrl"], "Cancel")
    assert text == "Payment canceled. Nothing was charged."
    assert await shop.bus.drain(timeout=20)
    got = await item(client, buyer, detail)
    assert (got["orderStatus"], got["paymentStatus"]) == ("CANCELED", "PAYMENT_ABORTED")
    assert await stock(client, goods) == 5
