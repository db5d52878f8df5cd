"""The job launcher: a small process of its own that starts the gateway's jobs and reaps them.

The gateway runs this file (standard library only, ``python -I -S launcherd.py NICENESS``)
with one end of a ``SOCK_SEQPACKET`` socket pair as descriptor 3. One message is one JSON object:

* gateway → launcher: ``{"id": n, "argv": [...], "cwd": "/abs", "env": {...}}`` and either
  the write ends of the job's stdout and stderr pipes attached (``SCM_RIGHTS``), or, with
  ``"collect": {"stderr": bytes, "grace": seconds}`` and nothing attached, stdout to
  /dev/null and stderr read here;
* launcher → gateway: ``{"id": n, "pid": p}`` once the job runs, or
  ``{"id": n, "errno": e, "error": "text"}`` when it cannot start; later
  ``{"pid": p, "status": s, "group": alive}`` once the job's command has exited: the raw wait
  status, and whether something of its process group is still alive (dying). For a job whose
  stderr is read here, ``"stderr": "<the last bytes, as latin-1>"`` comes with that report
  when the pipe has ended by then, else in ``{"job": n, "stderr": ...}`` (``n`` the request's
  id: the pid may name another job by then) once it ends, or once ``grace`` seconds have
  passed after the exit (a helper that left the group may hold the pipe: it is closed on
  it).

When a job's command exits, the launcher kills its process group (helpers it left behind)
before it reaps the command, while the group's number cannot have been reused; the gateway
never signals a job after its exit report. A request the launcher cannot read whole is
answered with an error as far as its id can be read.

A job is the leader of a new process group (not a session: with autogroup scheduling a new
session is a new scheduling group, and starting it could stall for milliseconds on a busy
machine), runs in its directory with exactly its environment, stdin from /dev/null,
descriptors 0-2 only, and every signal at its default. A bare program name is looked up on
the job's ``PATH``.

Waiting for a child to call exec, reaping it and reading its stderr is this process's work,
never the gateway's event loop's. When the gateway closes its end (it stops, or died), every
job still running has its process group killed and the launcher exits.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import shutil
import signal
import socket
import sys
import time

CONTROL_FD = 3
MAX_MESSAGE = 1 << 20
_FDS_SPACE = socket.CMSG_SPACE(2 * 4)
_DEFAULT_SIGNALS = tuple(sorted(set(signal.valid_signals())
                                - {signal.SIGKILL, signal.SIGSTOP}))


def _received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder, signed=True)
                       for i in range(0, usable, 4))
    return fds


def _start(request: dict[str, object], stdio: tuple[int, int, int]) -> int:
    argv = [str(arg) for arg in request["argv"]]  # type: ignore[attr-defined]
    environment = {str(k): str(v) for k, v in request["env"].items()}  # type: ignore[attr-defined]
    os.chdir(str(request["cwd"]))
    try:
        program = argv[0]
        if "/" not in program:
            found = shutil.which(program, path=environment.get("PATH", os.defpath))
            if found is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
            program = found
        return os.posix_spawn(
            program, argv, environment,
            file_actions=[(os.POSIX_SPAWN_DUP2, fd, target)
                          for target, fd in enumerate(stdio)],
            setpgroup=0, setsigdef=_DEFAULT_SIGNALS)
    finally:
        os.chdir("/")


_READS_PER_TURN = 16
"""Reads of 64 KiB from one stderr pipe before the launcher serves anything else."""


class _Stderr:
    """The read end of a job's stderr pipe, and the end of what came through it."""

    def __init__(self, number: int, fd: int, limit: int, grace: float) -> None:
        self.number = number
        """The id of the request that started the job."""
        self.fd = fd
        self.limit = limit
        self.grace = grace
        self.tail = bytearray()
        self.open = True
        self.deadline: float | None = None
        """Once the command has exited: when the pipe is closed on whoever still holds it."""

    def drain(self) -> None:
        """Read what is there, a bounded amount at a time (what is left keeps the pipe
        readable); on end of file, close."""
        for _ in range(_READS_PER_TURN):
            if not self.open:
                return
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if not data:
                self.close()
                return
            self.tail += data
            if len(self.tail) > self.limit:
                del self.tail[: len(self.tail) - self.limit]

    def close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.fd)

    def text(self) -> str:
        return self.tail.decode("latin-1")


_ID = re.compile(rb'\{"id":(\d+),')


class Launcher:
    """Starts the jobs the gateway asks for and reports on them over ``control``."""

    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.null = (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC),
                     os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
        self.running: dict[int, _Stderr | None] = {}
        """Jobs not yet reaped, with their stderr when it is read here."""
        self.ending: dict[int, _Stderr] = {}
        """Reaped jobs whose stderr (read here) has not ended yet, by request id."""
        self.poller = select.poll()
        self.wake: int | None = None
        self.by_fd: dict[int, _Stderr] = {}
        """The stderr pipes read here, by descriptor."""

    def send(self, message: dict[str, object]) -> None:
        self.control.send(json.dumps(message, separators=(",", ":")).encode())

    def serve(self) -> None:
        """Until the gateway closes its end of ``control``."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        os.set_blocking(wake_read, False)
        signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.wake = wake_read
        self.poller.register(self.control, select.POLLIN)
        self.poller.register(wake_read, select.POLLIN)
        os.chdir("/")
        try:
            while True:
                for fd, _ in self.poller.poll(self._poll_timeout()):
                    if fd == wake_read:
                        try:
                            while os.read(wake_read, 512):
                                pass
                        except BlockingIOError:
                            pass
                        self.reap()
                    elif fd in self.by_fd:
                        self._stderr_readable(fd)
                    elif not self.receive():
                        return  # the gateway closed its end
                self._expire()
        finally:
            self.kill_all()

    def receive(self) -> bool:
        """Take one request; False once the gateway has closed its end."""
        try:
            data, ancillary, flags, _ = self.control.recvmsg(
                MAX_MESSAGE, _FDS_SPACE, socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        if not data:
            return False
        pipes = _received_fds(ancillary)
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                self._refuse_cut(data, flags)
            else:
                self.handle(data, pipes)
        finally:
            for fd in pipes:
                os.close(fd)
        return True

    def handle(self, data: bytes, pipes: list[int]) -> None:
        """Start the job ``data`` asks for."""
        try:
            request = json.loads(data)
            number = request["id"]
        except (ValueError, KeyError, TypeError):
            print("runnergw launcher: unreadable request ignored", file=sys.stderr, flush=True)
            return
        stderr: _Stderr | None = None
        write_end: int | None = None
        try:
            collect = request.get("collect")
            if collect is not None and not pipes:
                limit, grace = int(collect["stderr"]), float(collect["grace"])
                if not 0 <= grace < 1e6 or limit < 0:
                    raise ValueError("collect: a stderr size and a grace in seconds")
                read_end, write_end = os.pipe()
                os.set_blocking(read_end, False)
                stderr = _Stderr(int(number), read_end, limit, grace)
                stdio = (self.null[0], self.null[1], write_end)
            elif collect is None and len(pipes) == 2:
                stdio = (self.null[0], pipes[0], pipes[1])
            else:
                raise OSError(errno.EINVAL, "a job needs its stdout and stderr pipes, or "
                                            "its stderr read here")
            pid = _start(request, stdio)
        except OSError as e:
            self._failed(number, e.errno or errno.EIO, e.strerror or str(e), stderr)
        except (LookupError, TypeError, AttributeError, ValueError) as e:
            self._failed(number, errno.EINVAL, f"bad request: {e}", stderr)
        else:
            self.running[pid] = stderr
            if stderr is not None:
                self.by_fd[stderr.fd] = stderr
                self.poller.register(stderr.fd, select.POLLIN)
            self.send({"id": number, "pid": pid})
        finally:
            if write_end is not None:
                os.close(write_end)

    def _failed(self, number: int, code: int, text: str, stderr: _Stderr | None) -> None:
        if stderr is not None:
            stderr.close()
        self.send({"id": number, "errno": code, "error": text})

    def _stderr_readable(self, fd: int) -> None:
        stderr = self.by_fd[fd]
        stderr.drain()
        if not stderr.open:
            self._forget(stderr)
            if self.ending.pop(stderr.number, None) is not None:  # its command has exited
                self.send({"job": stderr.number, "stderr": stderr.text()})

    def _forget(self, stderr: _Stderr) -> None:
        self.by_fd.pop(stderr.fd, None)
        try:
            self.poller.unregister(stderr.fd)
        except KeyError:
            pass

    def reap(self) -> None:
        """Report every job whose command has exited, killing what it left in its group
        first."""
        while self.running:
            try:
                # Not reaped yet: while the command is a zombie, its pid (the group's number)
                # cannot name another process, so the group can be killed safely.
                exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if exited is None or exited.si_pid == 0:
                return
            pid = exited.si_pid
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            _, status = os.waitpid(pid, 0)
            stderr = self.running.pop(pid, None)
            try:
                os.killpg(pid, 0)
                alive = True  # a helper still dying holds the group
            except OSError:
                alive = False
            report: dict[str, object] = {"pid": pid, "status": status, "group": alive}
            if stderr is not None:
                stderr.drain()  # the command is gone: its end of the pipe mostly is too
                if stderr.open:
                    stderr.deadline = time.monotonic() + stderr.grace
                    self.ending[stderr.number] = stderr
                else:
                    self._forget(stderr)
                    report["stderr"] = stderr.text()
            self.send(report)

    def _poll_timeout(self) -> int | None:
        deadlines = [s.deadline for s in self.ending.values() if s.deadline is not None]
        if not deadlines:
            return None
        return max(0, int((min(deadlines) - time.monotonic()) * 1000) + 1)

    def _expire(self) -> None:
        """Close the stderr pipes held open past their grace (by a helper that left)."""
        if not self.ending:
            return
        now = time.monotonic()
        for number, stderr in list(self.ending.items()):
            if stderr.deadline is not None and stderr.deadline <= now:
                stderr.drain()
                self._forget(stderr)
                stderr.close()
                del self.ending[number]
                self.send({"job": number, "stderr": stderr.text()})

    def _refuse_cut(self, data: bytes, flags: int) -> None:
        """Answer a request that did not arrive whole: its descriptors did not fit (this
        process is out of descriptors), or the request itself (the gateway sends none that
        large)."""
        found = _ID.match(data)
        if found is None:
            print("runnergw launcher: unreadable request ignored", file=sys.stderr, flush=True)
            return
        if flags & socket.MSG_TRUNC:
            code, text = errno.E2BIG, "request too large"
        else:
            code, text = errno.EMFILE, "the job launcher is out of descriptors"
        self.send({"id": int(found.group(1)), "errno": code, "error": text})

    def kill_all(self) -> None:
        for pid in self.running:
            for kill, target in ((os.killpg, pid), (os.kill, pid)):
                try:
                    kill(target, signal.SIGKILL)
                    break
                except OSError:
                    continue


def serve(control: socket.socket, niceness: int = 0) -> None:
    """Start jobs as asked and report on them until the gateway closes ``control``.

    This process and its jobs run ``niceness`` nicer than the gateway.
    """
    if niceness:
        os.nice(niceness)
    # Signals meant for the gateway reach this process too (Ctrl-C in the terminal of
    # ``twistd -n``, a HUP to reload, a USR1 to reopen the audit file sent to every process
    # of the service, the TERM a service manager sends every process of the service): the
    # gateway decides when its jobs end, and closes the socket to end this one. Jobs get
    # every signal back at its default.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT,
                   signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_IGN)
    Launcher(control).serve()


def main() -> None:
    control = socket.socket(fileno=CONTROL_FD)
    os.set_inheritable(CONTROL_FD, False)
    control.setblocking(True)
    try:
        serve(control, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the gateway is gone; its jobs were killed on the way out


if __name__ == "__main__":
    main()
