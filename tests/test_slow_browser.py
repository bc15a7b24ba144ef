"""The chat page in a real headless Chromium (Debian's `chromium`), driven by Playwright.

Slow: run by `.ci/run` (which installs chromium) through `make test-slow`.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from environment import missing, scaled
from bot_helpers import ScriptedBackend, write_registry
from web_server import running

from chatbot.bot import Bot
from chatbot.web import create_app

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


class HalfwayBackend(ScriptedBackend):
    """Holds each reply after its first two words until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__(delay=0.05)
        self.go_on = threading.Event()

    def stream(self, request):  # noqa: ANN001, ANN201
        for n, piece in enumerate(super().stream(request)):
            if n == 2:
                self.go_on.wait(timeout=scaled(30))
            yield piece


def test_type_see_a_streamed_reply_reload_see_the_history(tmp_path: Path) -> None:
    if CHROMIUM is None:
        missing("Chromium", "apt-get install chromium", "CHATBOT_REQUIRE_CHROMIUM")
    from playwright.sync_api import expect, sync_playwright

    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": (backend := HalfwayBackend())})
    with running(create_app(bot)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(url + "/")
        page.fill("#text", "When are you open?")
        page.keyboard.press("Enter")
        reply = page.locator(".bot").first
        expect(reply).to_contain_text("We are", timeout=scaled(20) * 1000)  # part of the reply shows ...
        assert "open 9 to 6." not in reply.inner_text()  # ... before the rest has been generated
        backend.go_on.set()
        expect(reply.locator(".meta")).to_contain_text("shop · score", timeout=scaled(20) * 1000)
        assert reply.inner_text().startswith("We are open 9 to 6.")

        page.fill("#text", "Who painted the Mona Lisa?")
        page.click("#send")
        expect(page.locator(".bot").nth(1)).to_contain_text("Sorry, I only know about bikes.", timeout=scaled(20) * 1000)
        expect(page.locator(".bot").nth(1).locator(".meta")).to_contain_text("fallback")

        session = page.evaluate("localStorage.getItem('chatbot-session')")
        page.reload()
        expect(page.locator(".user")).to_have_count(2)
        expect(page.locator(".bot").first).to_contain_text("We are open 9 to 6.")
        expect(page.locator(".bot").nth(1).locator(".meta")).to_contain_text("fallback")
        assert page.evaluate("localStorage.getItem('chatbot-session')") == session
        assert [t.user for t in bot.session(session).history] == ["When are you open?", "Who painted the Mona Lisa?"]
        browser.close()
