"""Who may use the server: API keys, allowed Host names, CORS, the serve command's refusals,
fine-tuning switched off, and a job's model kept out of the router until the operator says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from bot_helpers import ScriptedBackend, write_registry
from environment import scaled
from fastapi import FastAPI
from typer.testing import CliRunner
from web_server import running

from chatbot import registry as registry_io
from chatbot.bot import Bot
from chatbot.cli import app as cli
from chatbot.web import create_app
from chatbot.web.access import Access

KEYS = ["key-one", "key-two"]


def make_bot(folder: Path) -> Bot:
    write_registry(folder)
    return Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'c.db'}", backends={"local": ScriptedBackend()})


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    bot = make_bot(tmp_path_factory.mktemp("keyed"))
    with running(create_app(bot, access=Access(api_keys=KEYS, cors_origins=["http://app.example"]))) as url:
        yield url


def get(url: str, **kw: object) -> httpx.Response:
    return httpx.get(url, timeout=scaled(15), **kw)  # type: ignore[arg-type]


def test_every_route_but_health_and_static_pages_needs_a_key(keyed: str) -> None:
    for path in ("/healthz", "/readyz", "/", "/openapi.json"):
        assert get(keyed + path).status_code in (200, 503), path  # readyz: 503 while loading
    for path in ("/v1/models", "/sessions", "/v1/files", "/v1/fine_tuning/jobs"):
        missing = get(keyed + path)
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer", path
        assert missing.json()["error"] == {"message": "You didn't provide an API key: send it as `Authorization: Bearer KEY`",
                                           "type": "authentication_error", "param": None, "code": "invalid_api_key"}
        wrong = get(keyed + path, headers={"Authorization": "Bearer key-three"})
        assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "Incorrect API key provided"
    assert get(keyed + "/sessions", headers={"Authorization": "Bearer key-two"}).status_code == 200  # any of the keys
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=keyed + "/v1", api_key="nope", max_retries=0).models.list()
    client = openai.OpenAI(base_url=keyed + "/v1", api_key="key-one", max_retries=0)
    reply = client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "When are you open?"}])
    assert reply.choices[0].message.content == "We are open 9 to 6."


def test_only_allowed_host_names_are_answered(keyed: str, tmp_path: Path) -> None:
    port = keyed.rsplit(":", 1)[1]
    assert get(keyed + "/healthz", headers={"Host": f"localhost:{port}"}).status_code == 200
    rebound = get(keyed + "/healthz", headers={"Host": "evil.example"})
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    with running(create_app(make_bot(tmp_path), access=Access(allowed_hosts=["*"]))) as url:
        assert get(url + "/healthz", headers={"Host": "evil.example"}).status_code == 200


def test_cors_only_for_the_origins_given(keyed: str, tmp_path: Path) -> None:
    preflight = httpx.options(keyed + "/v1/chat/completions", timeout=scaled(15), headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "http://app.example"
    other = get(keyed + "/healthz", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    with running(create_app(make_bot(tmp_path))) as url:  # no origins given: CORS off
        assert "access-control-allow-origin" not in get(url + "/healthz", headers={"Origin": "http://app.example"}).headers


def test_a_mounted_app_asks_for_the_key_below_its_mount_point(tmp_path: Path) -> None:
    host = FastAPI()
    host.mount("/bot", create_app(make_bot(tmp_path), access=Access(api_keys=KEYS)))
    with running(host) as url:
        assert get(url + "/bot/healthz").status_code == 200
        assert get(url + "/bot/v1/models").status_code == 401
        assert get(url + "/bot/v1/models", headers={"Authorization": "Bearer key-one"}).status_code == 200


def test_fine_tuning_can_be_switched_off(tmp_path: Path) -> None:
    with running(create_app(make_bot(tmp_path), fine_tuning=False)) as url:
        assert get(url + "/v1/files").status_code == 404 and get(url + "/v1/models").status_code == 200


def test_serve_refuses_an_open_address_without_a_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOT_API_KEY", raising=False)
    write_registry(tmp_path)
    refused = CliRunner().invoke(cli, ["serve", "--host", "0.0.0.0", "--registry", str(tmp_path / "models.yaml")])
    assert refused.exit_code == 2 and "--host 0.0.0.0: anyone who reaches this address" in refused.output


def test_a_skill_with_routing_off_answers_only_by_name_until_turned_on(tmp_path: Path) -> None:
    bot = make_bot(tmp_path)
    with registry_io.editing(tmp_path / "models.yaml") as reg:
        reg.skills["mood"].routing = False  # as a fine-tuning job registers its model
    bot.reload()
    review = "I love this shop, great mechanics!"
    assert bot.route(review).skill != "mood" and "mood" not in {c.skill for c in bot.route(review).runners_up}
    assert bot.reply_once(review, skill="mood").label == "positive"  # asked by name, it answers
    result = CliRunner().invoke(cli, ["registry", "routing", "mood", "on", "--registry", str(tmp_path / "models.yaml")])
    assert result.exit_code == 0 and "routing on for mood" in result.output
    bot.reload()
    assert bot.route(review).skill == "mood"
