"""Starting the viewer: bind the socket first (so `--port 0` can print the port it got), say
the address, open the browser, serve until interrupted."""

from __future__ import annotations

import ipaddress
import socket
import threading
import webbrowser
from collections.abc import Callable
from pathlib import Path

from testbed.errors import UserError
from testbed.view.app import Viewer, build_app

DEFAULT_PORT = 8765


def default_paths() -> list[Path]:
    """What `testbed view` alone shows: runs/ and the run store (its shards are run
    directories; its trainings in progress, runs still training), where they exist."""
    from testbed.store.run_store import RunStore

    paths = [Path("runs")] if Path("runs").is_dir() else []
    store = RunStore(None).root
    if store.is_dir() and not any(store.absolute().is_relative_to(p.absolute()) for p in paths):
        paths.append(store)
    return paths


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UserError(f"--port {port}: cannot listen on {host} ({exc.strerror or exc})") from None
    sock.listen(64)
    return sock


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(viewer: Viewer):
    import uvicorn

    config = uvicorn.Config(build_app(viewer), log_level="warning", access_log=False, lifespan="off")
    return uvicorn.Server(config)


def serve(paths: list[Path], host: str = "127.0.0.1", port: int = DEFAULT_PORT, browser: bool = True, panels: str | None = None,
          say: Callable[[str], None] = print, warn: Callable[[str], None] = print) -> None:
    """Serve `paths` (default: runs/ and the run store) until interrupted; frames show the
    panels `panels` ('a,b,c', default: render's default grid)."""
    from testbed.render.figure import parse_panels

    names = parse_panels(panels) if panels else None  # an unknown panel is refused before anything starts
    if not paths:
        paths = default_paths()
        if not paths:
            raise UserError("testbed view: give run, report or study directories (there is no runs/ here, and no run store)")
    viewer = Viewer(paths, panels=names)
    if not is_loopback(host):
        warn(f"warning: --host {host}: the viewer is reachable from other machines; it serves the files of {', '.join(map(str, paths))} to anyone who connects")
    sock = bind(host, port)
    url = address(sock)
    say(f"testbed view: {url} (Ctrl-C stops)")
    if browser:
        threading.Timer(0.5, webbrowser.open, (url,)).start()
    try:
        _server(viewer).run(sockets=[sock])
    finally:
        viewer.close()
        sock.close()


class Background:
    """The viewer served from a thread of this process (tests and the benchmark): `url`, `stop()`."""

    def __init__(self, paths: list[Path], host: str = "127.0.0.1", port: int = 0, **viewer_options):
        self.viewer = Viewer([Path(p) for p in paths], **viewer_options)
        self.sock = bind(host, port)
        self.url = address(self.sock)
        self.server = _server(self.viewer)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.should_exit = True
        self.viewer.close()
        self.thread.join(timeout=10)
        self.sock.close()
