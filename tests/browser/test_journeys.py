"""Journeys a person makes through the SOC console and the customer portal, in a real Chromium.

The operator onboards a customer and its admin signs in on the customer's own domain; an attack signal becomes a
diversion that appears on the customer's dashboard without a reload (over the websocket); a customer whose profile
asks for manual approval approves a pending mitigation from its page. Each screen is kept as a screenshot under
test-artifacts/screenshots/ for a person to look at.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import pyotp
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import NEW_TENANT_SLUG, SCREENSHOTS, Stack
from tests.support.world import OPERATOR_PASSWORD, OPERATOR_TOTP_SECRET

# Waits are generous: two shared cores run a worker, daphne, a lab network and Chromium at once.
LIVE_TIMEOUT_MS = 120_000
PAGE_TIMEOUT_MS = 30_000
NEW_TENANT_DOMAIN = f"{NEW_TENANT_SLUG}.localhost"
# Documentation space that overlaps neither acme (203.0.113.0/24, 2001:db8:100::/48) nor globex (198.51.100.0/24,
# 2001:db8:200::/48), nor the lab's diversion next hops (192.0.2.10, 2001:db8:ffff::10).
NEW_TENANT_PREFIX = "2001:db8:abcd::/48"


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile per journey: no cookie of one journey may help another."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        yield context
    finally:
        context.close()


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Page, url: str, username: str, password: str, totp_secret: str | None = None) -> None:
    """Both sign-in steps as a person makes them; the code step only where the user's role asks for TOTP."""
    page.goto(url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    if totp_secret is not None:
        page.wait_for_url("**/login/verify/")
        page.get_by_label("Code").fill(pyotp.TOTP(totp_secret).now())
        page.get_by_role("button", name="Verify").click()
        page.wait_for_load_state()
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)


def post_signal(stack: Stack, target: str, phase: str = "start", vectors: tuple[str, ...] = ("udp_flood",)) -> dict:
    """A detector's signal to the operator API over HTTP, as an external detector would send it."""
    body = json.dumps({"target": target, "vectors": list(vectors), "bps": 30_000_000_000, "pps": 4_000_000,
                       "phase": phase, "detector": "browser-tests"}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{stack.port}/api/v1/signals/", data=body, method="POST",
        headers={"Host": "localhost", "Content-Type": "application/json",
                 "Authorization": f"Token {stack.signal_token}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status in (200, 202)
        return json.loads(response.read())


def wait_live(page: Page) -> None:
    """The page's websocket is open (live.js lights the dot): events sent from now on reach it."""
    expect(page.locator("#live-dot.on")).to_be_visible(timeout=LIVE_TIMEOUT_MS)


def mark_page(page: Page) -> None:
    """A marker that a reload would wipe: its survival proves the update came in over the socket."""
    page.evaluate("window.sluiceNoReload = true")


def assert_not_reloaded(page: Page) -> None:
    assert page.evaluate("window.sluiceNoReload === true"), "the page reloaded instead of updating live"


def test_operator_onboards_a_tenant_whose_admin_then_signs_in_on_its_domain(
    stack: Stack, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, stack.url("localhost", "/login/"), "soc", OPERATOR_PASSWORD, totp_secret=OPERATOR_TOTP_SECRET)
    expect(page.locator("#live-dot")).to_be_attached()
    shot(page, "01-soc-board")

    page.goto(stack.url("localhost", "/soc/inventory/"))
    expect(page.get_by_role("columnheader", name="Push state").first).to_be_visible()
    expect(page.get_by_role("button", name="Maintenance").first).to_be_visible()
    shot(page, "01b-soc-inventory")

    page.goto(stack.url("localhost", "/soc/onboard/"))
    page.locator("#id_name").fill("Initrode")
    page.locator("#id_slug").fill(NEW_TENANT_SLUG)
    page.locator("#id_domain").fill(NEW_TENANT_DOMAIN)
    page.locator("#id_admin_email").fill("noc@initrode.example")
    page.locator("#id_prefixes").fill(NEW_TENANT_PREFIX)
    page.locator("#id_latency_ms").fill("30")
    page.locator("#id_profile").select_option("web")
    page.locator("#id_verify").check()
    shot(page, "02-soc-onboard-form")
    page.get_by_role("button", name="Onboard").click()

    expect(page.locator("h1")).to_have_text("Initrode is onboarded")
    result = page.locator(".panel table")
    expect(result).to_contain_text(NEW_TENANT_DOMAIN)
    expect(result).to_contain_text(NEW_TENANT_PREFIX)
    admin_username = result.locator("tr", has_text="Admin user").locator("td").inner_text().strip()
    password = page.locator(".secret").inner_text().strip()
    assert admin_username and len(password) >= 12
    shot(page, "03-soc-onboarded")

    customer = context.new_page()
    customer.goto(stack.url(NEW_TENANT_DOMAIN, "/login/"))
    expect(customer.locator("h1")).to_contain_text("Initrode")
    shot(customer, "04-customer-login")
    sign_in(customer, stack.url(NEW_TENANT_DOMAIN, "/login/"), admin_username, password)
    expect(customer.locator("h1")).to_have_text("Initrode · protection status")
    expect(customer.locator("#board")).to_contain_text("No active attack on your prefixes.")
    shot(customer, "05-customer-dashboard-new-tenant")


def test_a_diversion_appears_on_the_customer_dashboard_without_a_reload(
    stack: Stack, context: BrowserContext
) -> None:
    page = context.new_page()
    sign_in(page, stack.url("acme.localhost", "/login/"), "admin", stack.world.acme_admin_password)
    expect(page.locator("h1")).to_have_text("Acme Corp · protection status")
    wait_live(page)
    mark_page(page)
    shot(page, "06-customer-dashboard-before")

    post_signal(stack, "203.0.113.77")
    row = page.locator("#board tr[data-mitigation]", has_text="203.0.113.77")
    expect(row).to_contain_text("Active", timeout=LIVE_TIMEOUT_MS)
    expect(row).to_contain_text("Diversion")
    expect(row).to_contain_text("Lab Frankfurt")
    assert_not_reloaded(page)
    expect(page.locator("#events")).to_contain_text("mitigation.active")
    shot(page, "07-customer-dashboard-live-diversion")



def test_the_detail_of_a_live_diversion_shows_its_verified_actions(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, stack.url("acme.localhost", "/login/"), "admin", stack.world.acme_admin_password)
    post_signal(stack, "203.0.113.77")  # a repeated start only updates the attack: no matter which test came first
    row = page.locator("#board tr[data-mitigation]", has_text="203.0.113.77")
    expect(row).to_contain_text("Active", timeout=LIVE_TIMEOUT_MS)

    row.get_by_role("link").first.click()
    page.wait_for_load_state()
    shot(page, "08-customer-mitigation-detail-diversion")
    expect(page.locator("h1")).to_contain_text("203.0.113.77")
    expect(page.locator("h1 .badge")).to_have_text("Active")
    expect(page.locator("body")).to_contain_text("carried on")  # how far, in the customer's words
    expect(page.locator("body")).not_to_contain_text("speaker:lab-speaker")


def test_a_customer_approves_a_pending_mitigation_from_its_page(stack: Stack, context: BrowserContext) -> None:
    page = context.new_page()
    sign_in(page, stack.url("globex.localhost", "/login/"), "admin", stack.world.globex_admin_password)
    expect(page.locator("h1")).to_have_text("Globex · protection status")
    wait_live(page)
    mark_page(page)

    post_signal(stack, "198.51.100.77", vectors=("ntp_amplification",))
    row = page.locator("#board tr[data-mitigation]", has_text="198.51.100.77")
    expect(row).to_contain_text("Awaiting approval", timeout=LIVE_TIMEOUT_MS)
    assert_not_reloaded(page)
    shot(page, "09-customer-dashboard-awaiting-approval")

    row.get_by_role("link").first.click()
    expect(page.locator("h1 .badge")).to_have_text("Awaiting approval")
    shot(page, "10-customer-approval-pending")
    page.get_by_role("button", name="Approve").click()
    # The detail page reloads itself on this mitigation's events (so the flash message may be gone already);
    # the approval ends in an active FlowSpec mitigation.
    expect(page.locator("h1 .badge")).to_have_text("Active", timeout=LIVE_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.locator("body")).to_contain_text("Approved by")
    shot(page, "11-customer-approved-active")
