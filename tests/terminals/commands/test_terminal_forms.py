"""What the SaaS sends is checked before anything runs: the form, the uploads, the command."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.terminals.commands.uploads import MultipartReceiver
from tests.helpers.clients import parse_response, raw_connect
from tests.helpers.command_gateway import decode_data_uri, descriptor, example, start_pipelines
from tests.helpers.saas import multipart_body

_MIB = 1024 * 1024
_ECHO = descriptor(
    "echo-label",
    "python3 -c 'import sys; open(sys.argv[2], \"w\").write(sys.argv[1])' <label> <result>",
    fields=[{"id": "label", "type": "text", "required": True}],
)


def _bands(ran: Path) -> dict[str, Any]:
    """A model whose one argument ``eq=<low>:<high>`` holds two fields; each run of its
    program adds its arguments as a line to ``ran``."""
    program = ("import sys; line = ' '.join(sys.argv[2:-1]); "
               "open(sys.argv[1], 'a').write(line + chr(10)); open(sys.argv[-1], 'w').write(line)")
    return descriptor(
        "bands",
        f"python3 -c {shlex.quote(program)} {shlex.quote(str(ran))} -af eq=<low>:<high> <result>",
        fields=[{"id": "low", "type": "number"}, {"id": "high", "type": "number"}],
    )


def _when_received(testcase: TestCase, count: int) -> Deferred[None]:
    """Fires once a multipart receiver has taken ``count`` body bytes."""
    original = MultipartReceiver.body_data
    reached: Deferred[None] = Deferred()

    def body_data(receiver: MultipartReceiver, data: bytes) -> None:
        original(receiver, data)
        if receiver.bytes_received >= count and not reached.called:
            reached.callback(None)

    testcase.patch(MultipartReceiver, "body_data", body_data)
    return reached


class FormTests(TestCase):
    """Refused forms: 400 ``{"detail"}``, nothing runs, no job directory stays."""

    timeout = 30

    def setUp(self) -> None:
        self.ran = Path(self.mktemp()).absolute()
        self.pipelines = start_pipelines(self, {
            "text-stats": example("text-stats"),
            "image-thumbnail": example("image-thumbnail"),
            "echo-label": _ECHO,
            "bands": _bands(self.ran),
        })
        self.count = 0

    async def refused(self, endpoint: str, form: dict[str, Any] | None,
                      files: dict[str, tuple[str, str, bytes]], status: int, detail: str,
                      **options: Any) -> None:
        answer = await self.pipelines.post(endpoint, form, files, **options)
        self.assertEqual(answer.status, status, answer.body)
        self.assertEqual(answer.json, {"detail": detail})
        self.count += 1
        record = await self.pipelines.settled(self.count)
        self.assertEqual(record["status"], status)
        self.assertNotIn("exit_code", record)

    async def test_missing_upload(self) -> None:
        await self.refused("text-stats", {"top": 3}, {}, 400,
                           "document is required: upload a file")

    async def test_number_out_of_range(self) -> None:
        document = {"document": ("a.txt", "text/plain", b"words")}
        await self.refused("text-stats", {"top": 0}, document, 400, "top must be at least 1")
        await self.refused("text-stats", {"top": "51"}, document, 400, "top must be at most 50")
        await self.refused("text-stats", {"top": "5; rm -rf /"}, document, 400,
                           "top must be a number")
        await self.refused("text-stats", {"top": 1e400}, document, 400,
                           "top must be a finite number")

    async def test_select_value_not_an_option(self) -> None:
        image = {"image": ("a.png", "image/png", b"\x89PNG\r\n\x1a\n")}
        await self.refused("image-thumbnail", {"size": 100}, image, 400,
                           "size must be one of: 64, 128, 256")
        await self.refused("image-thumbnail", {"size": "64x64 -write /tmp/x"}, image, 400,
                           "size must be one of: 64, 128, 256")

    async def test_text_that_could_be_an_option_or_holds_a_nul(self) -> None:
        await self.refused("echo-label", {"label": "--help"}, {}, 400,
                           "label must not start with '-'")
        await self.refused("echo-label", {"label": "a\0b"}, {}, 400,
                           "label must not contain a NUL character")
        await self.refused("echo-label", {}, {}, 400, "label is required")
        answer = await self.pipelines.post("echo-label", {"label": "a -b $(id) `id` 'q'"})
        self.assertEqual(answer.status, 200, answer.body)
        _, written = decode_data_uri(answer.json["outputs"]["result"])
        self.assertEqual(written, b"a -b $(id) `id` 'q'")

    async def test_an_argument_only_partly_filled_is_refused(self) -> None:
        """One band of ``eq=<low>:<high>`` left out, null or empty: 400 naming it, and the
        program never starts; both left out drop the argument with its flag."""
        detail = "high is required: it shares a command argument with other given values"
        for form in ({"low": 3}, {"low": 3, "high": None}, {"low": 3, "high": ""}):
            await self.refused("bands", form, {}, 400, detail)
        self.assertFalse(self.ran.exists())
        answer = await self.pipelines.post("bands", {"low": "", "high": None})
        self.assertEqual(answer.status, 200, answer.body)
        answer = await self.pipelines.post("bands", {"low": 3, "high": 0})
        self.assertEqual(answer.status, 200, answer.body)
        _, written = decode_data_uri(answer.json["outputs"]["result"])
        self.assertEqual(written, b"-af eq=3:0")
        self.assertEqual(self.ran.read_text(), "\n-af eq=3:0\n")

    async def test_input_form_must_be_a_json_object(self) -> None:
        document = {"document": ("a.txt", "text/plain", b"words")}
        for text, detail in (("{top: 3}", "input_form is not valid JSON"),
                             ("[" * 100000, "input_form is not valid JSON"),
                             ("[1, 2]", "input_form must be a JSON object")):
            body, content_type = multipart_body({"input_form": text}, document)
            await self.refused("text-stats", None, {}, 400, detail, body=body)

    async def test_wrong_file_type(self) -> None:
        await self.refused("text-stats", {}, {"document": ("a.png", "image/png", b"\x89PNG")}, 415,
                           "type image/png is not accepted for field document")

    async def test_malformed_multipart(self) -> None:
        good, content_type = self.pipelines.body({}, {"document": ("a.txt", "text/plain", b"x")})
        await self.refused("text-stats", None, {}, 400,
                           "malformed multipart body: no closing boundary",
                           body=good[:-30])
        headers = self.pipelines.headers("application/json")
        await self.refused("text-stats", None, {}, 400,
                           "the body must be multipart/form-data with a valid boundary",
                           headers=headers, body=b'{"top": 3}')
        await self.refused("text-stats", None, {"top": ("f.txt", "text/plain", b"3")}, 400,
                           "unexpected file field top")

    async def test_keys_that_name_no_field_never_reach_the_command(self) -> None:
        """An output id or an unknown key in ``input_form`` is ignored."""
        elsewhere = Path(self.mktemp()).absolute()
        answer = await self.pipelines.post(
            "text-stats",
            {"top": 1, "upperText": str(elsewhere), "document": "/etc/passwd", "extra": "x"},
            {"document": ("a.txt", "text/plain", b"alpha beta")})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertFalse(elsewhere.exists())
        _, upper = decode_data_uri(answer.json["outputs"]["upperText"])
        self.assertEqual(upper, b"ALPHA BETA")


class UploadSizeTests(TestCase):
    """text-stats takes a 1 MiB document; its requests are capped at 2 MiB in all."""

    timeout = 30

    def setUp(self) -> None:
        self.pipelines = start_pipelines(self, {"text-stats": example("text-stats")})

    def head(self, framing: str, *, expect: bool = False) -> bytes:
        _, content_type = self.pipelines.body()
        headers = self.pipelines.headers(content_type)
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return (f"POST /text-stats/ HTTP/1.1\r\nHost: node\r\n{lines}{framing}\r\n"
                + ("Expect: 100-continue\r\n" if expect else "") + "\r\n").encode()

    async def test_declared_length_over_the_route_cap(self) -> None:
        """Refused from Content-Length alone: no 100 Continue, no body read, no directory."""
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.head(f"Content-Length: {3 * _MIB}", expect=True))
        data = await client.wait_for(b"}")
        self.assertNotIn(b"100 Continue", data)
        response = parse_response(data)
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body),
                         {"detail": f"request body larger than {2 * _MIB} bytes"})
        record = await self.pipelines.settled(1)
        self.assertEqual(record["bytes_in"], 0)

    async def test_chunked_upload_over_max_size_is_refused_while_receiving(self) -> None:
        """The file part passes 1 MiB: 413 comes while the client is still sending."""
        body, _ = self.pipelines.body(
            {}, {"document": ("big.txt", "text/plain", b"w " * (_MIB // 2 + 4096))})
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.head("Transfer-Encoding: chunked"))
        sent = 0
        for start in range(0, len(body) - 100, 64 * 1024):
            piece = body[start:start + 64 * 1024]
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        data = await client.wait_for(b"}")
        response = parse_response(data)
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body),
                         {"detail": f"upload document is larger than {_MIB} bytes"})
        record = await self.pipelines.settled(1)
        self.assertEqual(record["status"], 413)
        self.assertLessEqual(record["bytes_in"], sent)  # the last chunk was never sent
        self.assertNotIn("exit_code", record)

    async def test_client_leaving_during_the_upload(self) -> None:
        """Half a body, then the connection drops: nothing runs, the directory goes."""
        request = self.pipelines.raw_request(
            "text-stats", {}, {"document": ("a.txt", "text/plain", b"w " * 200_000)})
        client = await raw_connect(self, self.pipelines.gateway)
        receiving = _when_received(self, len(request) // 4)
        client.send(request[:len(request) // 2])
        await receiving
        self.assertEqual(len(self.pipelines.job_directories()), 1)
        await client.close()
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "client_gone")
        self.assertNotIn("exit_code", record)
        self.assertEqual(client.data, b"")

    async def test_upload_at_max_size_is_taken(self) -> None:
        document = b"a " * (_MIB // 2)
        answer = await self.pipelines.post(
            "text-stats", {"top": 1}, {"document": ("big.txt", "text/plain", document)},
            chunked=True)
        self.assertEqual(answer.status, 200, answer.body)
        _, counts = decode_data_uri(answer.json["outputs"]["wordCounts"])
        self.assertEqual(json.loads(counts), {"words": _MIB // 2, "top": [["a", _MIB // 2]]})
        await self.pipelines.settled(1)


class SentCommandTests(TestCase):
    """The ``command`` field is recorded when it differs, and never run."""

    timeout = 30

    async def test_sent_command_is_never_executed(self) -> None:
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        marker = Path(self.mktemp()).absolute()
        files = {"document": ("a.txt", "text/plain", b"one two two")}
        for count, command in enumerate((
                f"touch {shlex.quote(str(marker))}",
                f"python3 -c 'open({str(marker)!r}, \"w\")' <document> <top>",
                "rm -rf / --no-preserve-root"), start=1):
            answer = await pipelines.post("text-stats", {"top": 1}, files, command=command)
            self.assertEqual(answer.status, 200, answer.body)
            _, counts = decode_data_uri(answer.json["outputs"]["wordCounts"])
            self.assertEqual(json.loads(counts), {"words": 3, "top": [["two", 2]]})
            record = await pipelines.settled(count)
            self.assertIs(record["command_mismatch"], True)
            self.assertFalse(marker.exists())
        same = await pipelines.post("text-stats", {"top": 1}, files,
                                    command=example("text-stats")["command"])
        self.assertEqual(same.status, 200, same.body)
        self.assertNotIn("command_mismatch", await pipelines.settled(4))


class UndeclaredKeyTests(TestCase):
    """Only declared fields fill a command: an undeclared key cannot switch a flag on."""

    timeout = 30

    async def test_undeclared_key_does_not_keep_a_bare_flag(self) -> None:
        """``--extra`` stays out of the argv although input_form says ``"extra": true``; a
        declared field of that name would have kept it."""
        command = ("python3 -c 'import json, sys; open(sys.argv[-1], \"w\")"
                   ".write(json.dumps(sys.argv[1:-1]))' --extra <result>")
        declared = descriptor("flags-declared", command, fields=[
            {"id": "extra", "type": "checkbox", "label": "extra", "required": False}])
        pipelines = start_pipelines(self, {"flags": descriptor("flags", command),
                                           "flags-declared": declared})
        undeclared = await pipelines.post("flags", {"extra": True})
        self.assertEqual(undeclared.status, 200, undeclared.body)
        self.assertEqual(json.loads(decode_data_uri(undeclared.json["outputs"]["result"])[1]), [])
        kept = await pipelines.post("flags-declared", {"extra": True})
        self.assertEqual(kept.status, 200, kept.body)
        self.assertEqual(json.loads(decode_data_uri(kept.json["outputs"]["result"])[1]),
                         ["--extra"])
        await pipelines.settled(2)
