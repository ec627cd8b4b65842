"""``semiseg serve``: the review workflow in a browser, on trame-slicer, reusing SemiSegSlicerLib.

:class:`SemiSegWebApp` puts the parts together as trame-slicer's examples do (a Slicer application,
remote-rendered views, a layout, a UI that emits signals and a logic that connects them);
:func:`serve` checks who may connect (:mod:`.security`) before anything heavy is loaded, then runs
the server until it is stopped.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket

from .security import TokenRequired, accessMiddleware, isLoopback, resolveToken

__all__ = ["SemiSegWebApp", "serve", "defaultCacheDir"]

logger = logging.getLogger(__name__)


def defaultCacheDir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "semiseg", "web")


class SemiSegWebApp:
    """The page and its server.

    Args:
        server: a trame server (default: a new one).
        cacheDir: where job folders are made.
        outDir: where "Save labels" writes.
        segmentNames: the segments of a new volume's labels.
    """

    def __init__(self, server=None, cacheDir: str | None = None, outDir: str = "semiseg-labels",
                 segmentNames=("Segment 1",)):
        from trame.app import get_server
        from trame_slicer import module as trameSlicerModule
        from trame_slicer.core import LayoutManager, SlicerApp
        from trame_slicer.rca_view import register_rca_factories

        from .logic import SemiSegLogic, quietViewConstruction
        from .ui import SemiSegUI

        self.server = server or get_server("semiseg", client_type="vue3")
        self.server.enable_module(trameSlicerModule)
        self.server.state.trame__title = "SemiSeg review"
        self.slicerApp = SlicerApp()
        register_rca_factories(self.slicerApp.view_manager, self.server)
        self.layoutManager = LayoutManager(self.slicerApp.scene, self.slicerApp.view_manager, self.server)
        self.logic = SemiSegLogic(
            self.server, self.slicerApp, self.layoutManager, cacheDir or defaultCacheDir(), outDir, segmentNames
        )
        with quietViewConstruction():  # the page's layout builds its first views
            self.ui = SemiSegUI(self.server, self.layoutManager, self.logic.typed)
        self.logic.set_ui(self.ui)

    def shutdown(self) -> None:
        """Stop a running engine job, a study's too (and every process it started)."""
        for session in (self.logic.session, self.logic.study):
            if session.running:
                session.cancel(5.0)


def _publicUrl(host: str, port: int) -> str:
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/"


def serve(args) -> int:
    """Run ``semiseg serve`` with the parsed command line (see ``semiseg serve --help``); returns the exit code.

    Raises:
        semiseg.errors.InputError: no access token for an address beyond loopback, a bad token, or a
            missing volume; nothing has been bound then.
    """
    from semiseg.errors import InputError

    try:
        token, generated = resolveToken(args.host, args.token, args.token_file, args.generate_token)
    except TokenRequired as err:
        raise InputError(str(err)) from None
    except ValueError as err:
        raise InputError(str(err)) from None
    missing = [path for path in args.data if not os.path.exists(path)]
    if missing:
        raise InputError("no such file or folder", missing[0])
    os.environ["TRAME_ARGS"] = ""  # trame must not read `semiseg serve`'s own command line
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")  # offscreen, no X server

    segments = [name.strip() for name in (args.segments or "").split(",") if name.strip()]
    app = SemiSegWebApp(cacheDir=args.cache_dir, outDir=args.out, segmentNames=segments or ("Segment 1",))
    atexit.register(app.shutdown)
    if args.data:
        app.logic.openPaths(args.data)
    loopback = isLoopback(args.host)

    def bind(wslinkServer):
        bound = getattr(wslinkServer, "host", args.host)
        if token is None and not isLoopback(str(bound)):  # never serve beyond loopback without the token
            raise RuntimeError(f"the server was about to listen on {bound} without an access token")
        wslinkServer.app.middlewares.insert(0, accessMiddleware(token, loopbackOnly=loopback and token is None))

    def ready(**_):
        url = _publicUrl(args.host, app.server.port)
        print(f"semiseg serve: ready at {url}" + (f"?token={token}" if token else ""), flush=True)
        if generated:
            print(
                "semiseg serve: the access token above was generated for this run; anyone with it can see the "
                "images: share it only with the people who may.",
                flush=True,
            )
        if not loopback:
            print(
                "semiseg serve: listening beyond this machine over plain HTTP; put it behind TLS (a reverse proxy) or "
                "use an SSH tunnel to 127.0.0.1 instead.",
                flush=True,
            )

    app.server.controller.on_server_bind.add(bind)
    app.server.controller.on_server_ready.add(ready)
    app.server.controller.on_server_exited.add(lambda **_: app.shutdown())
    app.server.start(
        port=args.port, host=args.host, open_browser=False, show_connection_info=False, timeout=0, disable_logging=True
    )
    return 0
