"""Digi's outgoing email: the SMTP sender and the texts of the verification and reset emails."""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from urllib.parse import quote

import aiosmtplib

from digi_core.config import Settings, SmtpSecurity

log = logging.getLogger("digi.mail")

SEND_TIMEOUT_SECONDS = 15.0


class MailError(Exception):
    """An email could not be sent; the message names the SMTP server and the reason.

    Not a :class:`~digi_core.errors.DigiError`: the caller decides what the user sees.
    """


class Mailer:
    """Sends plain-text emails through the SMTP server in the settings.

    Without ``SMTP_HOST`` (the embedded default has no mail server) nothing is sent: the whole
    email (recipient, subject, body) is logged at WARNING on the ``digi.mail`` logger, so an
    operator can copy a verification or reset link from the log.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: str, subject: str, text: str) -> None:
        """Send one email to ``to``; raise :class:`MailError` when the server does not take it."""
        settings = self.settings
        if settings.smtp_host is None:
            log.warning(
                "SMTP_HOST is not set, so this email was not sent:\nTo: %s\nSubject: %s\n\n%s",
                to,
                subject,
                text,
            )
            return

        message = self._message(to, subject, text)
        server = f"{settings.smtp_host}:{settings.smtp_port}"
        password = settings.smtp_password
        try:
            refused, _ = await aiosmtplib.send(
                message,
                hostname=settings.smtp_host,
                port=settings.smtp_port,
                username=settings.smtp_username,
                password=password.get_secret_value() if password is not None else None,
                use_tls=settings.smtp_security == SmtpSecurity.TLS,
                # False, not None: aiosmtplib would otherwise upgrade whenever the server offers it.
                start_tls=settings.smtp_security == SmtpSecurity.STARTTLS,
                timeout=SEND_TIMEOUT_SECONDS,
            )
        except (aiosmtplib.SMTPException, OSError) as error:
            raise MailError(f"SMTP server {server} did not take the email: {error}") from error
        if refused:
            reasons = "; ".join(f"{address}: {reply}" for address, reply in refused.items())
            raise MailError(f"SMTP server {server} refused the recipient: {reasons}")
        log.info("sent %r to %s through %s", subject, to, server)

    def _message(self, to: str, subject: str, text: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = to
        message["Subject"] = subject
        message["Date"] = formatdate(localtime=True)
        # make_msgid() would otherwise ask DNS for this machine's name on every email.
        sender_domain = parseaddr(self.settings.smtp_from)[1].rpartition("@")[2]
        message["Message-ID"] = make_msgid(domain=sender_domain or "localhost")
        message.set_content(text)
        return message


def verification_email(base_url: str, token: str, *, valid_hours: int) -> tuple[str, str]:
    """The subject and text of the email that confirms a user's address."""
    link = f"{base_url.rstrip('/')}/auth/verify-email?token={quote(token, safe='')}"
    text = (
        "Welcome to Digi.\n"
        "\n"
        "Confirm your email address by opening this link:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link is valid for {_hours(valid_hours)}.\n"
        "\n"
        "If you did not create a Digi account, ignore this email: "
        "nothing happens without the link.\n"
    )
    return "Confirm your email address for Digi", text


def password_reset_email(base_url: str, token: str, *, valid_hours: int) -> tuple[str, str]:
    """The subject and text of the email that lets a user choose a new password."""
    link = f"{base_url.rstrip('/')}/auth/reset-password?token={quote(token, safe='')}"
    text = (
        "Someone asked to reset the password of your Digi account.\n"
        "\n"
        "Choose a new password by opening this link:\n"
        "\n"
        f"{link}\n"
        "\n"
        f"The link is valid for {_hours(valid_hours)}.\n"
        "\n"
        "If you did not ask for this, ignore this email: your password stays as it is.\n"
    )
    return "Reset your Digi password", text


def _hours(count: int) -> str:
    return "1 hour" if count == 1 else f"{count} hours"
