"""JSON lines between pytest and its helper processes (:mod:`.forkparent`, :mod:`.htmlworker`).

A helper serves its owner, the process that started it (requests on the helper's stdin,
replies on a descriptor the owner passed), until its stdin closes. Under pytest-xdist the
controller starts one warm parent and one HTML helper for all of its local workers, each
with a listening Unix socket: every worker connects and sends its requests and reads its
replies on its own connection, and is served as the owner is. One warm parent per session
instead of one per worker imports the steps' libraries once, and one HTML helper nbconvert
once: about 1.8 s of CPU per worker, which a 2-core machine gives back to the trials.

Standard library only: the helpers import this before anything else.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

#: how many workers may wait to be accepted at once (more simply wait a little longer)
BACKLOG = 64


class Peer:
    """One side that sends requests to a helper: its owner, or a connected worker."""

    def __init__(self, read_fd: int, write_fd: int, owner: bool) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd
        self.owner = owner
        self.buffer = b""

    def reply(self, message: dict[str, Any]) -> None:
        """Send ``message``; a worker that has gone away is not waiting for it."""
        data = (json.dumps(message) + "\n").encode()
        try:
            while data:
                data = data[os.write(self.write_fd, data) :]
        except OSError:
            pass


class Server:
    """The helper's side: its owner on stdin and ``reply_fd``, and the workers on ``listen_fd``."""

    def __init__(self, reply_fd: int, listen_fd: int | None = None) -> None:
        self.owner = Peer(0, reply_fd, owner=True)
        self.listener = socket.socket(fileno=listen_fd) if listen_fd is not None else None
        self.selector = selectors.DefaultSelector()
        self.peers: dict[int, Peer] = {0: self.owner}

    def fds(self) -> list[int]:
        """Every descriptor the loop holds: a forked child closes them all."""
        fds = [self.owner.write_fd, self.selector.fileno(), *(p.read_fd for p in self.peers.values() if not p.owner)]
        return fds + ([self.listener.fileno()] if self.listener is not None else [])

    def serve(self, handle: Callable[[Peer, dict[str, Any]], None], gone: Callable[[Peer], None]) -> None:
        """``handle`` each request in the order it arrives, until the owner's stdin closes (the owner
        is done or has died); ``gone`` is told of each worker that closed its connection."""
        self.selector.register(0, selectors.EVENT_READ)
        if self.listener is not None:
            self.selector.register(self.listener, selectors.EVENT_READ)
        while True:
            for key, _ in self.selector.select():
                if self.listener is not None and key.fileobj is self.listener:
                    try:
                        connection, _ = self.listener.accept()
                    except OSError:
                        continue
                    connection.setblocking(True)
                    fd = connection.detach()
                    self.peers[fd] = Peer(fd, fd, owner=False)
                    self.selector.register(fd, selectors.EVENT_READ)
                    continue
                peer = self.peers[int(key.fd)]
                try:
                    chunk = os.read(peer.read_fd, 1 << 16)
                except OSError:
                    chunk = b""
                if not chunk:
                    if peer.owner:
                        return
                    self.selector.unregister(peer.read_fd)
                    del self.peers[peer.read_fd]
                    os.close(peer.read_fd)
                    gone(peer)
                    continue
                peer.buffer += chunk
                while b"\n" in peer.buffer:
                    line, peer.buffer = peer.buffer.split(b"\n", 1)
                    try:
                        request = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(request, dict):
                        handle(peer, request)


def listening_socket(path: str) -> socket.socket:
    """A Unix socket bound to ``path`` (in a folder only this user can enter) and listening: made by
    the owner before the helper starts, so a worker can connect before the helper first accepts."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(BACKLOG)
    except BaseException:
        listener.close()
        raise
    return listener


def connect(path: str, timeout: float = 5.0) -> socket.socket:
    """A blocking connection to a helper's socket (``OSError`` when there is none to connect to)."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(path)
    except BaseException:
        connection.close()
        raise
    connection.settimeout(None)
    return connection


def send(fd: int, message: dict[str, Any]) -> None:
    """Write ``message`` as one line to ``fd`` (``OSError`` when the helper is gone)."""
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


class Replies:
    """The reading side of a helper's replies on ``fd``: one JSON line at a time, with a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def next(self, deadline: float) -> dict[str, Any] | None:
        """The next reply; ``None`` when the deadline passed. ``EOFError`` when the helper is gone."""
        import select

        while b"\n" not in self.buffer:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise EOFError
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return dict(json.loads(line))
