"""`radwatch dashboards push` reads its token from a file or the environment, never argv.

A loopback HTTP listener answers the three Grafana API calls the push makes (list folders,
create folder, save dashboard) and records each request's Authorization header, so the
test sees what the real grafana-client library sends over a real socket.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboards.build import as_dicts
from monitor.cli import main

TOKEN = "glsa_test_0123456789abcdef"


@pytest.fixture
def grafana() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    seen: list[tuple[str, str, str | None]] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, doc: object) -> None:
            body = json.dumps(doc).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            seen.append(("GET", self.path, self.headers.get("Authorization")))
            self._answer([])

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(("POST", self.path, self.headers.get("Authorization")))
            if self.path.startswith("/api/folders"):
                self._answer({"uid": "radwatch-folder", "title": "radwatch"})
            else:
                self._answer({"uid": "d", "url": "/d/d", "status": "success"})

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_token_flag_is_refused_with_one_line(grafana, capsys, monkeypatch) -> None:
    url, seen = grafana
    monkeypatch.setenv("RADWATCH_GRAFANA_TOKEN", TOKEN)
    for argv in (["--token", "abc"], ["--token=abc"], ["--token"]):
        assert main(["dashboards", "push", "--url", url, *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "RADWATCH_GRAFANA_TOKEN_FILE" in err and "abc" not in err
    assert seen == []  # refused before any call


def test_token_from_file_is_sent_as_bearer(grafana, capsys, monkeypatch, tmp_path) -> None:
    url, seen = grafana
    path = tmp_path / "grafana-token"
    path.write_text(TOKEN + "\n")
    monkeypatch.setenv("RADWATCH_GRAFANA_TOKEN_FILE", str(path))
    monkeypatch.setenv("RADWATCH_GRAFANA_TOKEN", "the-file-wins-over-this")
    assert main(["dashboards", "push", "--url", url]) == 0
    assert len(capsys.readouterr().out.splitlines()) == len(as_dicts())
    assert seen and {auth for _, _, auth in seen} == {f"Bearer {TOKEN}"}
    assert [m for m, p, _ in seen if p.startswith("/api/dashboards")].count("POST") == len(
        as_dicts()
    )


def test_token_from_environment_and_missing_token(grafana, capsys, monkeypatch) -> None:
    url, seen = grafana
    monkeypatch.delenv("RADWATCH_GRAFANA_TOKEN_FILE", raising=False)
    monkeypatch.delenv("RADWATCH_GRAFANA_TOKEN", raising=False)
    assert main(["dashboards", "push", "--url", url]) == 2
    assert "no Grafana token" in capsys.readouterr().err
    assert seen == []
    monkeypatch.setenv("RADWATCH_GRAFANA_TOKEN", TOKEN)
    assert main(["dashboards", "push", "--url", url]) == 0
    assert {auth for _, _, auth in seen} == {f"Bearer {TOKEN}"}
