"""Email through a real SMTP server on loopback (aiosmtpd), and the log when there is none."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digi_core.config import Settings, load_settings
from digi_core.mail import Mailer, MailError, password_reset_email, verification_email
from tests.conftest import TEST_SECRET

SMTP_USERNAME = "digi-mailer"
SMTP_PASSWORD = "correct horse battery staple"


class Collector:
    """An aiosmtpd handler that keeps every envelope it is given."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.logins: list[LoginPassword] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        self.logins.append(auth_data)
        success = auth_data == (SMTP_USERNAME.encode(), SMTP_PASSWORD.encode())
        # handled=False: aiosmtpd then answers a failure with 535 itself.
        return AuthResult(success=success, handled=False)

    def message(self) -> EmailMessage:
        [envelope] = self.envelopes
        assert isinstance(envelope.content, bytes)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


def free_port() -> int:
    # aiosmtpd's Controller connects to its own port once started, so port 0 does not work.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_smtp(collector: Collector, **smtp_options: Any) -> Iterator[int]:
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port, **smtp_options)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@pytest.fixture
def collector() -> Collector:
    return Collector()


@pytest.fixture
def smtp_port(collector: Collector) -> Iterator[int]:
    """A plain SMTP server on loopback that accepts any mail."""
    yield from start_smtp(collector)


@pytest.fixture
def auth_smtp_port(collector: Collector) -> Iterator[int]:
    """An SMTP server that offers AUTH over plain text (it is loopback) and checks the login."""
    yield from start_smtp(collector, auth_require_tls=False, authenticator=collector.authenticate)


def mail_settings(data_dir: Path, **overrides: Any) -> Settings:
    return load_settings(DIGI_SECRET=TEST_SECRET, DIGI_DATA_DIR=data_dir, **overrides)


async def test_sends_a_verification_email(
    clean_env: Path, collector: Collector, smtp_port: int
) -> None:
    settings = mail_settings(
        clean_env / "data",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp_port,
        SMTP_SECURITY="none",
        SMTP_FROM="Digi <digi@example.test>",
    )
    subject, text = verification_email(settings.base_url, "tok/en+1", valid_hours=24)

    await Mailer(settings).send("ada@example.test", subject, text)

    [envelope] = collector.envelopes
    assert envelope.mail_from == "digi@example.test"
    assert envelope.rcpt_tos == ["ada@example.test"]
    message = collector.message()
    assert message["Subject"] == "Confirm your email address for Digi"
    assert message["From"] == "Digi <digi@example.test>"
    assert message["To"] == "ada@example.test"
    assert message["Date"] and message["Message-ID"].endswith("@example.test>")
    body = message.get_content()
    assert "http://localhost:4000/auth/verify-email?token=tok%2Fen%2B1" in body
    assert "24 hours" in body


async def test_logs_in_when_a_username_is_set(
    clean_env: Path, collector: Collector, auth_smtp_port: int
) -> None:
    settings = mail_settings(
        clean_env / "data",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=auth_smtp_port,
        SMTP_SECURITY="none",
        SMTP_USERNAME=SMTP_USERNAME,
        SMTP_PASSWORD=SMTP_PASSWORD,
    )
    subject, text = password_reset_email("https://digi.example.test/", "abc", valid_hours=1)

    await Mailer(settings).send("ada@example.test", subject, text)

    assert collector.logins == [(SMTP_USERNAME.encode(), SMTP_PASSWORD.encode())]
    message = collector.message()
    assert message["Subject"] == "Reset your Digi password"
    body = message.get_content()
    assert "https://digi.example.test/auth/reset-password?token=abc" in body.splitlines()
    assert "The link is valid for 1 hour." in body.splitlines()


async def test_a_wrong_password_raises_mail_error(
    clean_env: Path, collector: Collector, auth_smtp_port: int
) -> None:
    settings = mail_settings(
        clean_env / "data",
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=auth_smtp_port,
        SMTP_SECURITY="none",
        SMTP_USERNAME=SMTP_USERNAME,
        SMTP_PASSWORD="wrong",
    )
    with pytest.raises(MailError, match=f"127.0.0.1:{auth_smtp_port}"):
        await Mailer(settings).send("ada@example.test", "hello", "text")
    assert collector.envelopes == []


async def test_an_unreachable_server_raises_mail_error(clean_env: Path) -> None:
    port = free_port()
    settings = mail_settings(
        clean_env / "data", SMTP_HOST="127.0.0.1", SMTP_PORT=port, SMTP_SECURITY="none"
    )
    with pytest.raises(MailError, match=f"127.0.0.1:{port}"):
        await Mailer(settings).send("ada@example.test", "hello", "text")


async def test_without_smtp_host_the_email_goes_to_the_log(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = mail_settings(clean_env / "data")
    subject, text = verification_email(settings.base_url, "secret-token", valid_hours=24)

    with caplog.at_level(logging.WARNING, logger="digi.mail"):
        await Mailer(settings).send("ada@example.test", subject, text)

    [record] = [record for record in caplog.records if record.name == "digi.mail"]
    assert record.levelno == logging.WARNING
    logged = record.getMessage()
    assert "ada@example.test" in logged and subject in logged
    assert "/auth/verify-email?token=secret-token" in logged
