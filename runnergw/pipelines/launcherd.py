"""The job launcher: a small process of its own that starts the gateway's jobs and reaps them.

The gateway runs this file (standard library only, ``python -I -S launcherd.py NICENESS``)
with one end of a ``SOCK_SEQPACKET`` socket pair as descriptor 3. One message is one JSON object:

* gateway → launcher: ``{"id": n, "argv": [...], "cwd": "/abs", "env": {...}}`` with the
  write ends of the job's stdout and stderr pipes attached (``SCM_RIGHTS``), or of its stderr
  pipe alone (stdout goes to /dev/null then);
* launcher → gateway: ``{"id": n, "pid": p}`` once the job runs, or
  ``{"id": n, "errno": e, "error": "text"}`` when it cannot start; later
  ``{"pid": p, "status": s, "group": alive}`` once the job's command has exited: the raw wait
  status, and whether something of its process group is still alive (dying).

When a job's command exits, the launcher kills its process group (helpers it left behind)
before it reaps the command, while the group's number cannot have been reused; the gateway
never signals a job after its exit report. A request the launcher cannot read whole is
answered with an error as far as its id can be read.

A job is the leader of a new process group (not a session: with autogroup scheduling a new
session is a new scheduling group, and starting it could stall for milliseconds on a busy
machine), runs in its directory with exactly its environment, stdin from /dev/null,
descriptors 0-2 only, and every signal at its default. A bare program name is looked up on
the job's ``PATH``.

Waiting for a child to call exec is this process's time, never the gateway's event loop's.
When the gateway closes its end (it stops, or died), every job still running has its process
group killed and the launcher exits.
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

CONTROL_FD = 3
MAX_MESSAGE = 1 << 20
_FDS_SPACE = socket.CMSG_SPACE(2 * 4)
_DEFAULT_SIGNALS = tuple(sorted(set(signal.valid_signals())
                                - {signal.SIGKILL, signal.SIGSTOP}))


def _send(control: socket.socket, message: dict[str, object]) -> None:
    control.send(json.dumps(message, separators=(",", ":")).encode())


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


def _handle(control: socket.socket, data: bytes, pipes: list[int], null: tuple[int, int],
            running: set[int]) -> None:
    """Start the job ``data`` asks for; ``null`` is /dev/null open for reading and for
    writing."""
    try:
        request = json.loads(data)
        number = request["id"]
    except (ValueError, KeyError, TypeError):
        print("runnergw launcher: unreadable request ignored", file=sys.stderr, flush=True)
        return
    try:
        if len(pipes) == 2:
            stdio = (null[0], pipes[0], pipes[1])
        elif len(pipes) == 1:
            stdio = (null[0], null[1], pipes[0])
        else:
            raise OSError(errno.EINVAL, "a job needs its stderr pipe")
        pid = _start(request, stdio)
    except OSError as e:
        _send(control, {"id": number, "errno": e.errno or errno.EIO,
                        "error": e.strerror or str(e)})
    except (LookupError, TypeError, AttributeError, ValueError) as e:
        _send(control, {"id": number, "errno": errno.EINVAL, "error": f"bad request: {e}"})
    else:
        running.add(pid)
        _send(control, {"id": number, "pid": pid})


def _reap(control: socket.socket, running: set[int]) -> None:
    """Report every job whose command has exited, killing what it left in its group first."""
    while running:
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
        running.discard(pid)
        try:
            os.killpg(pid, 0)
            alive = True  # a helper still dying holds the group
        except OSError:
            alive = False
        _send(control, {"pid": pid, "status": status, "group": alive})


_ID = re.compile(rb'\{"id":(\d+),')


def _refuse_cut(control: socket.socket, data: bytes, flags: int) -> None:
    """Answer a request that did not arrive whole: its descriptors did not fit (this process
    is out of descriptors), or the request itself (the gateway sends none that large)."""
    found = _ID.match(data)
    if found is None:
        print("runnergw launcher: unreadable request ignored", file=sys.stderr, flush=True)
        return
    if flags & socket.MSG_TRUNC:
        code, text = errno.E2BIG, "request too large"
    else:
        code, text = errno.EMFILE, "the job launcher is out of descriptors"
    _send(control, {"id": int(found.group(1)), "errno": code, "error": text})


def _kill_all(running: set[int]) -> None:
    for pid in running:
        for kill, target in ((os.killpg, pid), (os.kill, pid)):
            try:
                kill(target, signal.SIGKILL)
                break
            except OSError:
                continue


def serve(control: socket.socket, niceness: int = 0) -> None:
    """Start jobs as asked and report their exits until the gateway closes ``control``.

    This process and its jobs run ``niceness`` nicer than the gateway.
    """
    if niceness:
        os.nice(niceness)
    # Signals meant for the gateway reach this process too (Ctrl-C in the terminal of
    # ``twistd -n``, a HUP to reload, the TERM a service manager sends every process of the
    # service): the gateway decides when its jobs end, and closes the socket to end this
    # one. Jobs get every signal back at its default.
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    null = (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC),
            os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC))
    os.chdir("/")
    running: set[int] = set()
    poller = select.poll()
    poller.register(control, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    try:
        while True:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == wake_read:
                    try:
                        while os.read(wake_read, 512):
                            pass
                    except BlockingIOError:
                        pass
                    _reap(control, running)
                    continue
                try:
                    data, ancillary, flags, _ = control.recvmsg(
                        MAX_MESSAGE, _FDS_SPACE, socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    continue
                if not data:
                    return  # the gateway closed its end
                pipes = _received_fds(ancillary)
                try:
                    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                        _refuse_cut(control, data, flags)
                    else:
                        _handle(control, data, pipes, null, running)
                finally:
                    for fd in pipes:
                        os.close(fd)
    finally:
        _kill_all(running)


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
