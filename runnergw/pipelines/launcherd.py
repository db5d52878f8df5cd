"""The job launcher: a small process of its own that starts the gateway's jobs and reaps them.

The gateway runs this file (standard library only, ``python -I -S launcherd.py NICENESS``)
with one end of a ``SOCK_SEQPACKET`` socket pair as descriptor 3. One message is one JSON object:

* gateway → launcher: ``{"id": n, "argv": [...], "cwd": "/abs", "env": {...}}`` with the
  write ends of the job's stdout and stderr pipes attached (``SCM_RIGHTS``), or of its stderr
  pipe alone (stdout goes to /dev/null then);
* launcher → gateway: ``{"id": n, "pid": p}`` once the job runs, or
  ``{"id": n, "errno": e, "error": "text"}`` when it cannot start; later
  ``{"pid": p, "status": s}`` (the raw wait status) when the job has exited and been reaped.

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
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        _send(control, {"id": number, "errno": errno.EINVAL, "error": f"bad request: {e}"})
    else:
        running.add(pid)
        _send(control, {"id": number, "pid": pid})


def _reap(control: socket.socket, running: set[int]) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        running.discard(pid)
        _send(control, {"pid": pid, "status": status})


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
    # Ctrl-C in the terminal of ``twistd -n`` reaches this process too: the gateway decides
    # when its jobs end, and closes the socket to end this one.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
                        # The gateway never sends more than fits: this is not its request.
                        print("runnergw launcher: truncated request ignored", file=sys.stderr,
                              flush=True)
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
