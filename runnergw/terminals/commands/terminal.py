"""The command terminal: run a model's CLI pipeline on the uploads, answer with signed outputs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Cooperator, TaskStopped
from twisted.logger import Logger
from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import ITerminal
from runnergw.chain.under_way import UnderWay
from runnergw.config.pipelines import ModelSettings
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream
from runnergw.jobs.failures import (
    RETRY_AFTER,
    node_failure,
    output_refusal,
    start_refusal,
    storage_refusal,
)
from runnergw.jobs.launcher import LauncherLost
from runnergw.jobs.parts import JobParts
from runnergw.jobs.process import Job, JobResult, start_job
from runnergw.jobs.slots import Admission, JobSlots, QueueFull
from runnergw.jobs.workdir import make_job_directory, remove_job_directory
from runnergw.logs import level_gate
from runnergw.metrics.jobs import note_job
from runnergw.models.form import FormError, check_form
from runnergw.models.template import TemplateError, fill_command
from runnergw.models.types import ModelDescriptor
from runnergw.terminals.commands.reply import OutputReply, Outputs
from runnergw.terminals.commands.uploads import MultipartReceiver, UploadError, UploadLimits
from runnergw.websaas.signing import ResponseSigner

__all__ = ["CommandTerminal"]

_STDERR_DETAIL = 2000
"""Characters of a failed command's stderr returned in the error detail."""
_SMALL_REPLY = 256 * 1024
"""Outputs up to this many bytes in all are answered at once rather than streamed."""


@implementer(ITerminal)
class CommandTerminal:
    """Serves ``POST /<endpoint>/`` for one model descriptor."""

    stores_body = True
    """The uploads are stored first; the request_body hooks run then (mediaLimits)."""

    log = Logger(observer=level_gate)

    def __init__(self, model: ModelDescriptor, settings: ModelSettings, jobs: JobParts, *,
                 signer: ResponseSigner, cooperator: Cooperator, max_upload: int) -> None:
        """Replies are signed by ``signer`` and streamed by ``cooperator`` (one for every
        route); ``max_upload`` caps an upload field whose descriptor gives no ``maxSize``."""
        self.model = model
        self.settings = settings
        self.jobs = jobs
        self.signer = signer
        self.cooperator = cooperator
        self.slots: JobSlots = jobs.slots.lend(model.endpoint, settings.concurrency,
                                               settings.queue_size)
        """The endpoint's job slots, shared with the routes a reload replaced (``start``)."""
        self._running: set[Job] = set()
        self.under_way = UnderWay()
        self._stopping = False
        uploads = model.upload_fields
        self.limits = UploadLimits(
            max_file_bytes={f.id: f.max_size if f.max_size is not None else max_upload
                            for f in uploads},
            accepted_types={f.id: tuple(f.accepted_types) for f in uploads},
            upload_fields=frozenset(f.id for f in uploads),
        )

    def start(self) -> None:
        """The route serves from now on (the gateway started, or a reload swapped it in):
        the endpoint's kept job slots take this descriptor's ``concurrency`` and
        ``queueSize``, and count this route's jobs with those of the routes it replaced."""
        self.slots = self.jobs.slots.serve(self.model.endpoint, self, self.slots,
                                           self.settings.concurrency, self.settings.queue_size)

    def stop(self) -> Deferred[None]:
        """End the exchanges under way (a 503 for a client still waiting, see
        ``ITerminal.stop``), kill every running job's process group at once (none starts any
        more); fires once the job launcher shared by the command routes is stopped."""
        self.retire()
        return self.jobs.stop()

    def retire(self) -> None:
        """A reload replaced this route and its exchanges are over: end what may be left
        and let no job start any more. The job launcher is left to the routes that
        replaced it (``KeptParts``)."""
        self._stopping = True
        self.under_way.end_all()
        for job in list(self._running):
            job.kill_now()
        self.jobs.slots.leave(self.model.endpoint, self)

    async def handle(self, exchange: Exchange, client: Any) -> None:
        """See ``ITerminal``: the body is only read from here, after every filter passed."""
        if exchange.upstream_path != "/":
            raise Reject(404, "Not Found")
        if exchange.method != "POST":
            raise Reject(405, "Method Not Allowed", headers=(("Allow", "POST"),))
        exchange.upstream = self.model.endpoint
        self.under_way.add(client)
        try:
            await self._handle(exchange, client)
        finally:
            self.under_way.discard(client)

    async def _handle(self, exchange: Exchange, client: Any) -> None:
        try:
            # Refused before the upload: it would only wait for a slot that is not there.
            admission = self.slots.admit()
        except QueueFull:
            raise Reject(503, "The model is busy, try again later",
                         headers=(("Retry-After", RETRY_AFTER),), reason="queue full") from None
        try:
            try:
                directory = make_job_directory(self.jobs.jobs_path)
            except OSError as e:
                raise storage_refusal(exchange, e, "job directory", self.jobs.jobs_path) from None
            try:
                await self._serve(exchange, client, directory, admission)
            finally:
                await remove_job_directory(self.jobs.reactor, directory)
        finally:
            admission.leave()

    async def _serve(self, exchange: Exchange, client: Any, directory: str,
                     admission: Admission) -> None:
        form_fields, uploads = await self._receive(exchange, client, directory)
        if client.gone:
            # The body consumer hears of the disconnect before the exchange is marked, and
            # the audit line is written as soon as this returns.
            if exchange.outcome == "ok":
                exchange.outcome = "client_gone"
                exchange.reason = "client disconnected during the request body"
            return
        values = self._check_form(exchange, form_fields, uploads)
        exchange.form = form_fields
        exchange.uploads = uploads
        if not await client.body_complete():
            return  # a filter answered (a plan's media limit)
        outputs = {
            output.id: (os.path.join(directory, f"{uuid.uuid4().hex}.{output.format}"),
                        output.format)
            for output in self.model.outputs
        }
        inputs: dict[str, object] = dict(values)
        inputs.update(uploads)
        inputs.update({output_id: path for output_id, (path, _) in outputs.items()})
        try:
            argv = fill_command(self.model.command, inputs)
        except TemplateError as e:
            raise Reject(400, e.message, reason="template refused") from None
        try:
            result = await self._run(exchange, client, argv, directory)
        finally:
            # The job is over: a client slow to read its reply does not hold the model.
            admission.leave()
        if result is None:
            return
        await self._reply(exchange, client, outputs)

    async def _receive(self, exchange: Exchange, client: IClientStream,
                       directory: str) -> tuple[dict[str, str], dict[str, str]]:
        try:
            receiver = MultipartReceiver(exchange.headers.get("content-type") or "", directory,
                                         self.limits)
        except UploadError as e:
            raise Reject(e.status, e.detail, reason="bad multipart request") from None
        client.start_body(receiver)
        try:
            received = await receiver.result
        except UploadError as e:
            raise Reject(e.status, e.detail, reason=f"upload refused: {e.detail}") from None
        except ConnectionError:
            return {}, {}
        except OSError as e:
            raise storage_refusal(exchange, e, "upload storage", self.jobs.jobs_path) from None
        uploads = {name: upload.path for name, upload in received.uploads.items()}
        return dict(received.fields), uploads

    def _check_form(self, exchange: Exchange, fields: Mapping[str, str],
                    uploads: Mapping[str, str]) -> dict[str, object]:
        sent_command = fields.get("command")
        if sent_command is not None and sent_command.strip() != self.model.command.strip():
            # Recorded, never run: the descriptor's command is the only one executed.
            exchange.notes["command_mismatch"] = True
        try:
            form = json.loads(fields.get("input_form") or "{}")
        except (ValueError, RecursionError):
            raise Reject(400, "input_form is not valid JSON") from None
        if not isinstance(form, dict):
            raise Reject(400, "input_form must be a JSON object")
        try:
            return check_form(self.model, form, uploads.keys())
        except FormError as e:
            raise Reject(400, e.message, reason="form refused") from None

    async def _run(self, exchange: Exchange, client: IClientStream, argv: list[str],
                   directory: str) -> JobResult | None:
        waiting = self.slots.acquire()
        client.when_gone(waiting.cancel)
        try:
            await waiting
        except CancelledError:
            return None  # the client left while queued: the job never starts
        released = False

        def release_slot(_: object = None) -> None:
            nonlocal released
            if not released:
                released = True
                self.slots.release()

        try:
            if client.gone:
                return None  # left while its upload was measured: nothing to start
            if self._stopping:
                raise Reject(503, "The node is stopping, try again later",
                             headers=(("Retry-After", RETRY_AFTER),), reason="stopping")
            try:
                # What a command prints is not its answer (its outputs are): stdout goes to
                # /dev/null, and only the end of stderr is kept, for the error detail.
                started = self.jobs.reactor.seconds()
                job = await start_job(self.jobs.launcher, self.jobs.reactor, argv,
                                      directory, self.jobs.environment(directory),
                                      self.settings.timeout, stdout_limit=0)
            except OSError as e:
                raise start_refusal(exchange, e, argv[0], self.jobs.jobs_path) from None
            # The slot (one GPU: one job) is the job's until its command has exited and
            # nothing of its process group is left, which for a killed job may take the
            # kill grace period. Its output pipes may be read to their end later: the next
            # job need not wait for that.
            job.exited.addCallback(release_slot)
            client.when_gone(job.cancel)
            self._running.add(job)
            job.ended.addBoth(lambda _: self._running.discard(job))
            try:
                result = await job.result
            except CancelledError:
                exchange.notes["job_killed"] = True
                note_job(exchange, self.jobs.reactor.seconds() - started, "killed")
                await job.ended  # the directory stays the job's until its processes are gone
                return None
            except LauncherLost as e:
                note_job(exchange, self.jobs.reactor.seconds() - started, "lost")
                await job.ended
                raise node_failure(exchange, e, "job", "The job was lost",
                                   self.jobs.jobs_path) from None
        finally:
            release_slot()
        exchange.notes["exit_code"] = result.exit_code
        note_job(exchange, self.jobs.reactor.seconds() - started, "timeout" if result.timed_out
                 else "ok" if result.exit_code == 0 else "failed")
        if result.timed_out:
            exchange.outcome = "timeout"
            raise Reject(408, "Command execution timed out", reason="command timed out")
        if result.exit_code != 0:
            exchange.outcome = "command_failed"
            tail = result.stderr_tail.decode("utf-8", "replace")[-_STDERR_DETAIL:]
            raise Reject(400, f"Command execution failed: {tail}",
                         reason=f"command failed (exit {result.exit_code}, "
                                f"signal {result.signal})")
        return result

    async def _reply(self, exchange: Exchange, client: Any,
                     outputs: Mapping[str, tuple[str, str]]) -> None:
        """Answer with the outputs and the signed token."""
        try:
            opened = Outputs(outputs)
        except OSError as e:
            raise output_refusal(exchange, e, self.jobs.jobs_path) from None
        if opened.size <= _SMALL_REPLY:
            try:
                body = opened.read_all()
            except OSError as e:
                raise output_refusal(exchange, e, self.jobs.jobs_path) from None
            if opened.missing:
                exchange.notes["missing_outputs"] = opened.missing
            token = self._sign(exchange, opened.hashes)
            body += b', "token": ' + json.dumps(token).encode() + b"}"
            client.send_head(200, Headers([("Content-Type", "application/json")]), len(body))
            client.write(body)
            client.finish()
            return
        client.send_head(200, Headers([("Content-Type", "application/json")]), None)
        reply = OutputReply(client, opened, self.cooperator)
        client.register_producer(reply)
        # A client that leaves (or is dropped for not reading) ends the reply even while the
        # reply is paused and no longer registered with the connection.
        client.when_gone(reply.stopProducing)
        try:
            await reply.done
        except TaskStopped:
            # Stopped by the connection going away: the transport may say so before the
            # client stream does, so the audit learns it here.
            if exchange.outcome == "ok":
                exchange.outcome = "client_gone"
                exchange.reason = "client disconnected before the response was complete"
            return
        except Exception:
            self.log.failure("Reading the outputs of request {request_id} failed",
                             request_id=exchange.request_id)
            exchange.outcome = "error"
            exchange.reason = "output unreadable"
            client.abort("output unreadable")
            return
        finally:
            if reply.missing:
                exchange.notes["missing_outputs"] = reply.missing
        token = self._sign(exchange, reply.hashes)
        client.write(b', "token": ' + json.dumps(token).encode() + b"}")
        client.finish()

    def _sign(self, exchange: Exchange, hashes: Mapping[str, str | None]) -> str:
        """The reply token, signed here on the event loop: one RSA signature (about 250 µs
        with a 2048-bit key) is what every TLS handshake costs it too, and a thread costs more.
        Handed to a thread, the signature waited for the GIL behind the busy event loop, and
        the hand-over and wake-ups cost the loop more than the signature (the pipeline bench
        served 8-29 % fewer requests a second that way, on 2 cores)."""
        identity = exchange.identity
        return self.signer.sign(
            subject=identity.subject if identity is not None else None,
            endpoint=self.model.endpoint, output_hashes=hashes)
