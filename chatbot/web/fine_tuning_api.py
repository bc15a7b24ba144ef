"""OpenAI's files and fine-tuning API, served by ``chatbot serve``: ``/v1/files`` and ``/v1/fine_tuning/jobs``.

Any OpenAI client can upload a JSONL file, create a job, follow its events and use the model it
makes, which is trained here with the local trainer and served at once by the same server. The
handlers are plain functions, which FastAPI runs in its thread pool: the database and the files
never block the event loop. Limits (chatbot/defaults.py): the size of one upload and of all stored
files, the hyperparameters' ranges, epochs × rows of a job, and the base models this server offers.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from chatbot.defaults import MAX_EXAMPLES_SEEN, MAX_STORED_FILE_BYTES, MAX_UPLOAD_BYTES
from chatbot.jobs.store import FileTooLarge, JobStore, new_id
from chatbot.jobs.worker import JobWorker
from chatbot.skills import DEFAULT_KIND, KIND_NAMES
from chatbot.web.dependencies import StateDep
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
    return await run_in_threadpool(_store_upload, store, file)


def _store_upload(store: JobStore, file: UploadFile) -> dict[str, Any]:
    """Copy the upload (spooled by the multipart parser) into the store in chunks, within the limits."""
    room = MAX_STORED_FILE_BYTES - store.stored_bytes()
    if room <= 0:
        raise APIError(413, f"the server stores at most {MAX_STORED_FILE_BYTES:,} bytes of files: delete some first", param="file")
    if not file.file.read(1 << 16).strip():
        raise APIError(400, "the file is empty", param="file")
    file.file.seek(0)
    try:
        return store.add_file(file.filename or "upload.jsonl", "fine-tune", file.file, limit=min(MAX_UPLOAD_BYTES, room))
    except FileTooLarge as exc:
        raise APIError(413, f"{exc}: the limit is {MAX_UPLOAD_BYTES:,} bytes a file, {MAX_STORED_FILE_BYTES:,} in all", param="file") from None


@endpoints.get("/files", response_model=FileList)
def list_files(store: JobsDep, purpose: str | None = None) -> dict[str, Any]:
    return _page(store.files(purpose), False)


@endpoints.get("/files/{file_id}", response_model=FileObject)
def retrieve_file(file_id: str, store: JobsDep) -> dict[str, Any]:
    return _file(store, file_id)


@endpoints.get("/files/{file_id}/content", response_class=FileResponse,
               responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
                                "description": "the file's bytes"}})
def file_content(file_id: str, store: JobsDep) -> FileResponse:
    found = _file(store, file_id)
    return FileResponse(store.file_path(file_id), media_type="application/octet-stream", filename=found["filename"])


@endpoints.delete("/files/{file_id}", response_model=FileDeleted)
def delete_file(file_id: str, store: JobsDep) -> FileDeleted:
    """Delete a file; refused (409) while a job that has not ended uses it. A finished job's model keeps its own copy."""
    _file(store, file_id)
    if using := store.jobs_using(file_id):
        raise APIError(409, f"file {file_id} is used by fine-tuning job {using[0]}, which has not ended: cancel it or wait", param="file_id",
                       code="file_in_use")
    store.delete_file(file_id)
    return FileDeleted(id=file_id, object="file", deleted=True)


# A job is answered as stored (response_model_exclude_unset): the fields it has, none added; a job made here has them all.
@endpoints.post("/fine_tuning/jobs", response_model=FineTuningJob, response_model_exclude_unset=True)
def create_job(body: CreateJob, store: JobsDep, worker: WorkerDep, state: StateDep) -> FineTuningJob:
    """Create a job: it is validated, queued and run by the server's worker, one job at a time."""
    if body.model not in state.base_models:
        raise APIError(400, f"model '{body.model}' is not a base model this server fine-tunes: use one of {', '.join(state.base_models)}",
                       param="model", code="model_not_available")
    _file(store, body.training_file, "training_file")
    if body.validation_file:
        _file(store, body.validation_file, "validation_file")
    kind = (body.metadata or {}).get("kind", DEFAULT_KIND)
    if kind not in KIND_NAMES:
        raise APIError(400, f"metadata.kind '{kind}' is not one of {', '.join(KIND_NAMES)}", param="metadata")
    hyper = body.hyperparameters
    if hyper is None and body.method and body.method.supervised:
        hyper = body.method.supervised.hyperparameters
    hyper = hyper or JobHyperparameters()
    rows = store.rows(body.training_file) if isinstance(hyper.n_epochs, int) else 0
    if isinstance(hyper.n_epochs, int) and hyper.n_epochs * rows > MAX_EXAMPLES_SEEN:
        raise APIError(400, f"hyperparameters.n_epochs: {hyper.n_epochs} epochs over {rows:,} rows is more than "
                       f"{MAX_EXAMPLES_SEEN:,} examples seen, the most one job may train on", param="hyperparameters.n_epochs")
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
def list_jobs(store: JobsDep, after: str | None = None, limit: int = Query(default=20, ge=1, le=100)) -> dict[str, Any]:
    return _page(*store.jobs(after=after, limit=limit))


@endpoints.get("/fine_tuning/jobs/{job_id}", response_model=FineTuningJob, response_model_exclude_unset=True)
def retrieve_job(job_id: str, store: JobsDep) -> dict[str, Any]:
    return _job(store, job_id)


@endpoints.post("/fine_tuning/jobs/{job_id}/cancel", response_model=FineTuningJob, response_model_exclude_unset=True)
def cancel_job(job_id: str, store: JobsDep, worker: WorkerDep) -> dict[str, Any]:
    _job(store, job_id)  # 404 for an unknown id
    cancelled = worker.cancel(job_id)
    if cancelled is None:
        finishing = worker.finishing(job_id)
        why = "is finishing: its model is being put into service" if finishing else f"has already ended ({_job(store, job_id)['status']})"
        raise APIError(400, f"job {job_id} {why}", param="fine_tuning_job_id")
    return cancelled


@endpoints.get("/fine_tuning/jobs/{job_id}/events", response_model=JobEventList)
def job_events(job_id: str, store: JobsDep, after: str | None = None, limit: int = Query(default=20, ge=1, le=1000)) -> dict[str, Any]:
    _job(store, job_id)
    return _page(*store.events(job_id, after=after, limit=limit))


@endpoints.get("/fine_tuning/jobs/{job_id}/checkpoints", response_model=CheckpointList)
def job_checkpoints(job_id: str, store: JobsDep, limit: int = Query(default=10, ge=1, le=100)) -> dict[str, Any]:
    _job(store, job_id)
    points = store.checkpoints(job_id)
    return _page(points[:limit], len(points) > limit)
