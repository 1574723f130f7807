"""The seed's preheat worker: claim pending preheat jobs from the manager and run them.

A job runs as a download request through the seed's own guarded runner (blocklist, limits,
its P2P engine), as ``dfget URL [-r] --include/--exclude --hf-revision`` would: the files
land in the seed's store as the tasks peers will register, are announced to the scheduler,
and later peers get them from the mesh. Output goes to a temporary directory removed
afterwards (the store keeps the pieces). Per-file progress is reported while the job runs
(at most every ``REPORT_INTERVAL`` seconds) and the final state at the end
(``docs/manager.md``, "Preheat").
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from damselfly.backends.option_specs import options_catalog
from damselfly.core.errors import DamselflyError
from damselfly.daemon.servers.local_api import DownloadRunner
from damselfly.download.request import DownloadRequest
from damselfly.protocol.manager import PreheatFile, PreheatJob, PreheatReport
from damselfly.transport.control_plane import ControlPlane
from damselfly.transport.manager_client import ManagerError, ManagerLink

log = logging.getLogger(__name__)
CLAIM_INTERVAL = 1.0  # seconds between claims while there is nothing to do
REPORT_INTERVAL = 1.0


class FileProgress:
    """A ``DownloadObserver`` keeping each file's progress for the report."""

    def __init__(self) -> None:
        self.files: dict[str, PreheatFile] = {}

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        self.files[name] = PreheatFile(
            url=name, length=total_bytes, completed_length=held_bytes, state="running"
        )

    def bytes_received(self, name: str, length: int) -> None:
        done = self.files[name]
        self.files[name] = done.model_copy(
            update={"completed_length": done.completed_length + length}
        )

    def file_finished(self, name: str) -> None:
        done = self.files[name]
        final = done.length if done.length is not None else done.completed_length
        self.files[name] = done.model_copy(update={"state": "succeeded", "completed_length": final})

    def file_failed(self, name: str, error: BaseException) -> None:
        done = self.files.get(name) or PreheatFile(url=name)
        self.files[name] = done.model_copy(update={"state": "failed", "error": str(error)[:2048]})


class PreheatWorker:
    def __init__(self, link: ManagerLink, runner: DownloadRunner, plane: ControlPlane) -> None:
        self._link = link
        self._runner = runner
        self._plane = plane
        self.jobs_done = 0

    async def run(self) -> None:
        while True:
            job = await self._claim()
            if job is None:
                await asyncio.sleep(CLAIM_INTERVAL)
                continue
            await self.execute(job)

    async def _claim(self) -> PreheatJob | None:
        member_id = self._link.member_id
        if member_id is None:
            return None
        try:
            status, payload, _ = await self._link.client.call(
                "POST", "/preheat/claim", body={"member_id": member_id}
            )
        except ManagerError as exc:
            log.warning("preheat claim failed: %s", exc)
            return None
        return PreheatJob.model_validate(payload) if status == 200 and payload else None

    async def execute(self, job: PreheatJob) -> None:
        progress = FileProgress()
        reporter = asyncio.create_task(self._report_while_running(job, progress))
        state, error = "succeeded", ""
        try:
            with tempfile.TemporaryDirectory(prefix="damselfly-preheat-") as scratch:
                await self._runner.run(request_for(job, Path(scratch)), progress)
        except DamselflyError as exc:
            state, error = "failed", str(exc)[:2048]
            log.warning("preheat job %d (%s) failed: %s", job.id, job.url, exc)
        finally:
            reporter.cancel()
        await self._report(job, progress, state, error)
        self.jobs_done += 1

    async def _report_while_running(self, job: PreheatJob, progress: FileProgress) -> None:
        while True:
            await self._report(job, progress, "running", "")
            await asyncio.sleep(REPORT_INTERVAL)

    async def _report(
        self, job: PreheatJob, progress: FileProgress, state: str, error: str
    ) -> None:
        member_id = self._link.member_id or job.member_id or 0
        report = PreheatReport.model_validate(
            {"member_id": member_id, "files": list(progress.files.values()), "state": state,
             "error": error}
        )  # fmt: skip
        try:
            await self._link.client.call(
                "POST", f"/preheat/{job.id}/report", body=report.model_dump(mode="json")
            )
        except ManagerError as exc:
            log.warning("preheat report of job %d failed: %s", job.id, exc)


def request_for(
    job: PreheatJob, scratch: Path, env: Mapping[str, str] | None = None
) -> DownloadRequest:
    """The job as dfget would send it: ``-r`` for repos, ``--hf-revision`` /
    ``--ms-revision`` for the revision, the rest of the hub's options from the seed's own
    environment (its endpoint and token)."""
    flags = {}
    if job.revision:
        flags = {f"{_REVISION_FLAGS.get(job.url.partition(':')[0], 'hf')}_revision": job.revision}
    source = options_catalog().resolve(job.url, flags, os.environ if env is None else env)
    return DownloadRequest(
        url=job.url,
        output=str(scratch / "out"),
        recursive=job.kind == "repo",
        include=tuple(job.include),
        exclude=tuple(job.exclude),
        source=source,
    )


_REVISION_FLAGS = {"hf": "hf", "modelscope": "ms"}
