"""The web app: ``create_app(bot)`` returns an ASGI app to serve alone or mount in your own.

    from fastapi import FastAPI
    from chatbot.bot import Bot
    from chatbot.web import create_app

    app = FastAPI()
    app.mount("/bot", create_app(Bot.from_registry("models.yaml")))
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from pydantic import BaseModel

from chatbot.bot import Bot
from chatbot.runtime.base_models import DEFAULT_BASE
from chatbot.web import errors, openai_api, sessions_api
from chatbot.web.access import Access, AccessMiddleware
from chatbot.web.dependencies import AppState, BotDep, StateDep
from chatbot.web.limits import BodyLimitMiddleware
from chatbot.web.metrics import Metrics, MetricsMiddleware

log = logging.getLogger(__name__)
REGISTRY_POLL_S = 1.0  # how often models.yaml is looked at for changes made by another process

service_endpoints = APIRouter()


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "loading", "failed"]
    skills: list[str] | None = None
    error: str | None = None


@service_endpoints.get("/healthz", tags=["health"], response_model=Health)
async def healthz() -> Health:
    """The process is up."""
    return Health(status="ok")


@service_endpoints.get("/readyz", tags=["health"], response_model=Readiness, response_model_exclude_none=True,
                       responses={503: {"model": Readiness, "description": "the models are loading, or failed to load (`error` says why)"}})
async def readyz(bot: BotDep, state: StateDep) -> Any:
    """The skills' models are loaded (503 until then)."""
    if state.ready.is_set():
        return Readiness(status="ready", skills=list(bot.registry.skills))
    body = Readiness(status="failed" if state.failure else "loading", error=state.failure)
    return JSONResponse(body.model_dump(exclude={"skills"}), status_code=503)


@service_endpoints.get("/metrics", tags=["health"], response_class=PlainTextResponse,
                       responses={200: {"content": {"text/plain": {}}, "description": "Prometheus' text format"}})
async def metrics(request: Request) -> PlainTextResponse:
    """Prometheus metrics: requests, latency, turns by skill and outcome, time waiting for the model, tokens, job states."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return PlainTextResponse(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@service_endpoints.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page() -> str:
    return resources.files("chatbot.web").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(bot: Bot, *, warm_up: bool = True, fine_tuning: bool = True, workers: int = 32, access: Access | None = None,
               route_new_models: bool = False, base_models: list[str] | None = None, job_threads: int | None = None) -> FastAPI:
    """An app serving *bot*; with *warm_up* the skills' models load in the background (``/readyz`` says when).

    *access*: API keys, allowed Host names and CORS origins (:class:`~chatbot.web.access.Access`;
    by default no key, loopback names only, no CORS). With *fine_tuning*, ``/v1/files`` and
    ``/v1/fine_tuning/jobs`` train new skills with the local trainer in a background worker; each new
    model answers under its own name as soon as it is trained, and joins the bot's router only with
    *route_new_models* (otherwise the operator turns routing on: ``chatbot registry routing NAME on``).
    Jobs start from the bundled base or from one of *base_models* (local folders or hub ids the operator names).
    Each job trains in a process of its own, with *job_threads* torch threads (default: every core but one)
    at a lower CPU priority (:mod:`chatbot.jobs.training_process`).
    """
    state = AppState(executor=ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chatbot"), started=int(time.time()),
                     base_models=list(dict.fromkeys([DEFAULT_BASE, *(base_models or [])])))

    def load() -> None:
        try:
            bot.warm_up()
            state.ready.set()
        except Exception as exc:  # noqa: BLE001 - reported by /readyz
            state.failure = f"{type(exc).__name__}: {exc}"

    # Started here rather than in the lifespan: a mounted app's lifespan never runs.
    if warm_up:
        threading.Thread(target=load, name="chatbot-warm-up", daemon=True).start()
    else:
        state.ready.set()

    worker = None
    if fine_tuning and bot.registry.path is not None:
        from chatbot.jobs.store import JobStore
        from chatbot.jobs.worker import JobWorker

        jobs = JobStore(bot.store.engine, bot.data_dir)  # one engine, one pool for conversations and jobs
        worker = JobWorker(jobs, bot.registry.path, on_model=lambda _skill: bot.reload(), route_new_models=route_new_models,
                           threads=job_threads)
        worker.start(preload=tuple(state.base_models))

    stopping = threading.Event()

    def watch_registry() -> None:  # another server sharing models.yaml may register a model, or an operator edit it
        while not stopping.wait(REGISTRY_POLL_S):
            try:
                if bot.refresh():
                    log.info("models.yaml changed: skills reloaded")
            except Exception:  # noqa: BLE001 - a half-edited file: the skills in service stay, the next look tries again
                log.warning("cannot reload models.yaml", exc_info=True)

    if bot.registry.path is not None:
        threading.Thread(target=watch_registry, name="registry-watch", daemon=True).start()

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        yield
        stopping.set()
        if worker is not None:
            worker.stop()
        state.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="chatbot", summary="A bot of fine-tuned skills: OpenAI-compatible and REST APIs, and a chat page.",
                  lifespan=lifespan)
    app.state.chatbot = state
    app.state.bot = bot
    errors.install(app)
    access = access or Access()
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(AccessMiddleware, access=access)  # outside the body limit: a stranger's body is refused unread
    if access.cors_origins:  # outside the key check: it answers a browser's preflight before the key is asked for
        app.add_middleware(CORSMiddleware, allow_origins=access.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "Accept", "X-Session-Id"], expose_headers=[openai_api.SKILL_HEADER])
    app.state.metrics = Metrics(job_counts=worker.store.counts if worker is not None else None)
    bot.on_reply(app.state.metrics.turn)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: refused requests are counted too
    # every route may be refused by the middlewares or fail, and says so in the schema; the open ones ask for no key
    app.include_router(service_endpoints, responses=errors.responses(400, 413, 500))
    app.include_router(openai_api.endpoints, responses=errors.EVERY_ROUTE)
    app.include_router(sessions_api.endpoints, responses=errors.EVERY_ROUTE)
    if worker is not None:
        from chatbot.web import fine_tuning_api

        app.state.jobs, app.state.job_worker = worker.store, worker
        # its routes declare no errors of their own yet: an unknown id (404), a file in use (409)
        app.include_router(fine_tuning_api.endpoints, responses=errors.EVERY_ROUTE | errors.responses(404, 409))
    return app
