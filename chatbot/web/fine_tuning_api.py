"""OpenAI's files and fine-tuning API, served by ``chatbot serve``: ``/v1/files`` and ``/v1/fine_tuning/jobs``.

Any OpenAI client can upload a JSONL file, create a job, follow its events and use the model it
makes, which is trained here with the local trainer and served at once by the same server.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse

from chatbot.jobs.store import JobStore, new_id
from chatbot.jobs.worker import JobWorker
from chatbot.skills import DEFAULT_KIND, KIND_NAMES
from chatbot.web.errors import APIError
from chatbot.web.schemas import (
    CheckpointList,
    CreateJob,
    FileDeleted,
    FileList,
    FileObject,
    FineTuningJob,
    JobEventList,
    JobHyperparameters,
    JobList,
)

MAX_FILE_BYTES = 512 * 1024 * 1024

endpoints = APIRouter(prefix="/v1", tags=["files and fine-tuning (OpenAI-compatible)"])


def get_jobs(request: Request) -> JobStore:
    return request.app.state.jobs


def get_worker(request: Request) -> JobWorker:
    return request.app.state.job_worker


JobsDep = Annotated[JobStore, Depends(get_jobs)]
WorkerDep = Annotated[JobWorker, Depends(get_worker)]


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more}


def _file(store: JobStore, file_id: str, param: str = "file_id") -> dict[str, Any]:
    found = store.file(file_id)
    if found is None:
        raise APIError(404, f"No such File object: {file_id}", param=param, code="file_not_found")
    return found


def _job(store: JobStore, job_id: str) -> dict[str, Any]:
    found = store.job(job_id)
    if found is None:
        raise APIError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="fine_tuning_job_not_found")
    return found


@endpoints.post("/files", response_model=FileObject)
async def upload(store: JobsDep, file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
    """Upload a file (purpose ``fine-tune``: JSONL prompt/completion lines)."""
    if purpose != "fine-tune":
        raise APIError(400, f"purpose '{purpose}' is not supported here: use 'fine-tune'", param="purpose")
    content = await file.read(MAX_FILE_BYTES + 1)
    if len(content) > MAX_FILE_BYTES:
        raise APIError(400, f"the file is larger than {MAX_FILE_BYTES // 2**20} MB", param="file")
    if not content.strip():
        raise APIError(400, "the file is empty", param="file")
    return store.add_file(file.filename or "upload.jsonl", purpose, content)


@endpoints.get("/files", response_model=FileList)
async def list_files(store: JobsDep, purpose: str | None = None) -> dict[str, Any]:
    return _page(store.files(purpose), False)


@endpoints.get("/files/{file_id}", response_model=FileObject)
async def retrieve_file(file_id: str, store: JobsDep) -> dict[str, Any]:
    return _file(store, file_id)


@endpoints.get("/files/{file_id}/content")
async def file_content(file_id: str, store: JobsDep) -> FileResponse:
    found = _file(store, file_id)
    return FileResponse(store.file_path(file_id), media_type="application/octet-stream", filename=found["filename"])


@endpoints.delete("/files/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, store: JobsDep) -> FileDeleted:
    _file(store, file_id)
    store.delete_file(file_id)
    return FileDeleted(id=file_id, object="file", deleted=True)


# A job is answered as stored (response_model_exclude_unset): the fields it has, none added; a job made here has them all.
@endpoints.post("/fine_tuning/jobs", response_model=FineTuningJob, response_model_exclude_unset=True)
async def create_job(body: CreateJob, store: JobsDep, worker: WorkerDep) -> FineTuningJob:
    """Create a job: it is validated, queued and run by the server's worker, one job at a time."""
    _file(store, body.training_file, "training_file")
    if body.validation_file:
        _file(store, body.validation_file, "validation_file")
    kind = (body.metadata or {}).get("kind", DEFAULT_KIND)
    if kind not in KIND_NAMES:
        raise APIError(400, f"metadata.kind '{kind}' is not one of {', '.join(KIND_NAMES)}", param="metadata")
    hyper = body.hyperparameters
    if hyper is None and body.method and body.method.supervised:
        hyper = JobHyperparameters.model_validate(body.method.supervised.get("hyperparameters") or {})
    hyper = hyper or JobHyperparameters()
    job = FineTuningJob(
        id=new_id("ftjob"), object="fine_tuning.job", created_at=int(time.time()), finished_at=None, model=body.model,
        fine_tuned_model=None, organization_id="org-local", result_files=[], status="validating_files",
        training_file=body.training_file, validation_file=body.validation_file,
        hyperparameters=hyper.model_dump(), trained_tokens=None, error=None, seed=body.seed if body.seed is not None else 0,
        user_provided_suffix=body.suffix, estimated_finish=None, integrations=[],
        method={"type": "supervised", "supervised": {"hyperparameters": hyper.model_dump()}},
        metadata={"kind": kind, **(body.metadata or {})},
    )
    store.add_job(job.model_dump(), event=f"Created fine-tuning job: {job.id}")
    worker.wake()
    return job


@endpoints.get("/fine_tuning/jobs", response_model=JobList, response_model_exclude_unset=True)
async def list_jobs(store: JobsDep, after: str | None = None, limit: int = Query(default=20, ge=1, le=100)) -> dict[str, Any]:
    return _page(*store.jobs(after=after, limit=limit))


@endpoints.get("/fine_tuning/jobs/{job_id}", response_model=FineTuningJob, response_model_exclude_unset=True)
async def retrieve_job(job_id: str, store: JobsDep) -> dict[str, Any]:
    return _job(store, job_id)


@endpoints.post("/fine_tuning/jobs/{job_id}/cancel", response_model=FineTuningJob, response_model_exclude_unset=True)
async def cancel_job(job_id: str, store: JobsDep, worker: WorkerDep) -> dict[str, Any]:
    _job(store, job_id)  # 404 for an unknown id
    cancelled = worker.cancel(job_id)
    if cancelled is None:
        finishing = worker.finishing(job_id)
        why = "is finishing: its model is being put into service" if finishing else f"has already ended ({_job(store, job_id)['status']})"
        raise APIError(400, f"job {job_id} {why}", param="fine_tuning_job_id")
    return cancelled


@endpoints.get("/fine_tuning/jobs/{job_id}/events", response_model=JobEventList)
async def job_events(job_id: str, store: JobsDep, after: str | None = None, limit: int = Query(default=20, ge=1, le=1000)) -> dict[str, Any]:
    _job(store, job_id)
    return _page(*store.events(job_id, after=after, limit=limit))


@endpoints.get("/fine_tuning/jobs/{job_id}/checkpoints", response_model=CheckpointList)
async def job_checkpoints(job_id: str, store: JobsDep, limit: int = Query(default=10, ge=1, le=100)) -> dict[str, Any]:
    _job(store, job_id)
    points = store.checkpoints(job_id)
    return _page(points[:limit], len(points) > limit)
