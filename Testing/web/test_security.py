"""Who may reach ``semiseg serve``: loopback by default; beyond it only with the access token.

The process tests start the real server. Binding to 0.0.0.0 is done only for a moment and every
request goes to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import http.client
import subprocess
import sys
import time

import pytest

from semiseg_web import security

from webtesting import ROOT, ServerProcess, free_port, server_environment, synthetic_volume

TOKEN = "test-token-0123456789abcdef"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True),
                                                ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                                ("::", False), ("192.168.1.20", False), ("server.example", False)])
def test_loopback_addresses(host, loopback):
    assert security.isLoopback(host) is loopback


def test_a_token_is_required_beyond_loopback(tmp_path):
    assert security.resolveToken("127.0.0.1", environ={}) == (None, False)
    with pytest.raises(security.TokenRequired, match="refusing to serve patient images on 0.0.0.0"):
        security.resolveToken("0.0.0.0", environ={})
    assert security.resolveToken("0.0.0.0", TOKEN, environ={}) == (TOKEN, False)
    tokenFile = tmp_path / "token"
    tokenFile.write_text(TOKEN + "\n")
    assert security.resolveToken("0.0.0.0", tokenFile=str(tokenFile), environ={}) == (TOKEN, False)
    assert security.resolveToken("0.0.0.0", environ={"SEMISEG_TOKEN": TOKEN}) == (TOKEN, False)
    token, generated = security.resolveToken("0.0.0.0", generate=True, environ={})
    assert generated and len(token) >= 40 and token != security.generateToken()
    with pytest.raises(ValueError, match="at least 16"):
        security.resolveToken("0.0.0.0", "short", environ={})
    with pytest.raises(ValueError, match="cannot read"):
        security.resolveToken("0.0.0.0", tokenFile=str(tmp_path / "missing"), environ={})


def _request(port, path="/index.html", headers=None, method="GET"):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _middleware_app(token, loopbackOnly):
    from aiohttp import web

    async def hello(_request):
        return web.Response(text="hello")

    app = web.Application(middlewares=[security.accessMiddleware(token, loopbackOnly)])
    app.router.add_get("/index.html", hello)
    app.router.add_get("/ws", hello)
    return app


def _serve_app(app, check):
    """Run an aiohttp app on a free local port, call ``check(port)`` from a thread, stop."""
    from aiohttp import web

    async def main():
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        try:
            await asyncio.get_running_loop().run_in_executor(None, check, port)
        finally:
            await runner.cleanup()

    asyncio.run(main())


def test_the_middleware_checks_token_host_and_origin():
    def check(port):
        assert _request(port)[0] == 401
        assert _request(port, headers={"Authorization": "Bearer wrong-token-0123456789"})[0] == 401
        assert _request(port, f"/index.html?token={TOKEN}x")[0] == 401
        assert _request(port, headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        status, headers, _ = _request(port, f"/index.html?a=1&token={TOKEN}")
        assert status == 302 and headers["Location"] == "/index.html?a=1"  # the token leaves the address bar
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert _request(port, headers={"Cookie": f"{security.COOKIE}={TOKEN}"})[0] == 200
        foreign = {"Cookie": f"{security.COOKIE}={TOKEN}", "Upgrade": "websocket", "Origin": "http://evil.example"}
        assert _request(port, "/ws", headers=foreign)[0] == 403

    _serve_app(_middleware_app(TOKEN, loopbackOnly=False), check)

    def checkLoopback(port):
        assert _request(port)[0] == 200
        assert _request(port, headers={"Host": f"localhost:{port}"})[0] == 200
        assert _request(port, headers={"Host": f"rebound.example:{port}"})[0] == 403  # DNS rebinding
        same = {"Upgrade": "websocket", "Origin": f"http://127.0.0.1:{port}"}
        assert _request(port, "/ws", headers=same)[0] == 200
        assert _request(port, "/ws", headers={**same, "Origin": "http://evil.example"})[0] == 403
        # Any request that asks to upgrade meets the Origin rule, whatever the spelling of its value.
        for upgrade in ({"Upgrade": "websocket\xa0"}, {"Upgrade": "WebSocket "}, {"Upgrade": "h2c"},
                        {"Connection": "keep-alive, Upgrade"}):
            assert _request(port, "/ws", headers={**upgrade, "Origin": "http://evil.example"})[0] == 403, upgrade
            assert _request(port, "/ws", headers={**upgrade, "Origin": f"http://127.0.0.1:{port}"})[0] == 200, upgrade
        assert _request(port, "/ws", headers={"Origin": "http://evil.example"})[0] == 200  # no upgrade asked

    _serve_app(_middleware_app(None, loopbackOnly=True), checkLoopback)


@pytest.mark.parametrize(("headers", "upgrade"), [
    ({"Upgrade": "websocket"}, True), ({"Upgrade": "websocket\xa0"}, True), ({"Upgrade": ""}, True),
    ({"Connection": "Upgrade"}, True), ({"Connection": "keep-alive, upgrade "}, True),
    ({"Connection": "keep-alive"}, False), ({}, False)])
def test_what_asks_to_upgrade(headers, upgrade):
    assert security.asksToUpgrade(headers) is upgrade


def test_serving_beyond_loopback_without_a_token_refuses_to_start():
    port = free_port()
    start = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "semiseg", "serve", "--host", "0.0.0.0", "--port", str(port)],
                            cwd=str(ROOT), env=server_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "refusing to serve patient images on 0.0.0.0" in result.stderr
    assert "--generate-token" in result.stderr
    assert "ready at" not in result.stdout
    with pytest.raises(OSError):  # nothing listens: it refused before binding
        _request(port)
    assert time.monotonic() - start < 60


def test_beyond_loopback_every_request_needs_the_token(tmp_path):
    with ServerProcess(["--host", "0.0.0.0", "--generate-token", "--cache-dir", tmp_path / "cache",
                        "--out", tmp_path / "out"]) as server:
        assert "?token=" in server.url
        deadline = time.monotonic() + 10
        lines_printed = lambda: "was generated" in server.output() and "plain HTTP" in server.output()  # noqa: E731
        while not lines_printed() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "was generated" in server.output() and "plain HTTP" in server.output()
        token = server.url.split("?token=", 1)[1]
        for path in ("/", "/index.html", "/ws"):
            assert _request(server.port, path)[0] == 401, path
        assert _request(server.port, headers={"Authorization": "Bearer not-the-token-0123456789"})[0] == 401
        status, _, body = _request(server.port, headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and b"<html" in body.lower()
        status, headers, _ = _request(server.port, f"/?token={token}")
        assert status == 302 and "token" not in headers["Location"]
        cookie = headers["Set-Cookie"].split(";", 1)[0]
        assert _request(server.port, headers={"Cookie": cookie})[0] == 200


def test_on_loopback_the_volumes_of_the_command_line_are_opened(tmp_path, chromium_path):
    from cdp import Browser

    volume = synthetic_volume(tmp_path / "disc.nrrd")
    with ServerProcess([volume, "--segments", "disc,ring", "--cache-dir", tmp_path / "cache", "--out", tmp_path /
    "out"]) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/"
        assert _request(server.port, "/index.html")[0] == 200
        assert _request(server.port, "/index.html", headers={"Host": f"attacker.example:{server.port}"})[0] == 403
        with Browser(chromium_path) as browser:
            browser.navigate(server.url)
            browser.wait_for(
                "(document.querySelector('#volume-name') || {}).innerText === 'disc'",
                timeout=60,
                what="the volume given on the command line",
            )
            assert browser.wait_for("document.querySelectorAll('#segments .v-chip').length") == 2
            assert browser.text("#segments").split() == ["disc", "ring"]
            assert "of 0-7" in browser.text("#current-slice")
