"""Receivers for the alert tests, started on 127.0.0.1 by the test and stopped after it: an HTTP
server that records ``json://`` posts and an SMTP server (aiosmtpd) that records ``mailto://`` mail."""
import socket

import pytest


@pytest.fixture
def json_receiver():
    from pipelines.alerts.receiver import JsonReceiver

    with JsonReceiver() as receiver:
        yield receiver


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        import email

        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_receiver():
    """(mailbox, port): every message the server accepted, parsed; any login is accepted."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port, auth_require_tls=False,
                            authenticator=lambda *a: AuthResult(success=True))
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def closed_port():
    """A port nothing listens on (bound, then released): a receiver that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def alert_lake(lake, tmp_path):
    """A lake with one small dataset ``d`` (two batches)."""
    for i in (1, 2):
        path = tmp_path / f"b{i}.csv"
        path.write_text("x,y\n" + "".join(f"{i * 10 + k},{k}\n" for k in range(5)))
        lake.ingest("d", path)
    return lake
