"""A real Dovecot IMAP server in a temporary directory, for tests of the IMAP pull source.

Dovecot speaks the protocol; ``doveadm`` changes state behind the clients' backs (new folders,
UIDVALIDITY resets, kicked sessions). Started as root — CI and the development machines — it
runs in privileged mode: logins as ``dovenull``, internal services as ``dovecot``, mail as
``nobody``. Started as any other user it runs rootless, everything as that user.

Both listeners are on 127.0.0.1: ``port`` is plain IMAP that also offers STARTTLS, ``tls_port``
is implicit TLS. The certificate comes from a throw-away trustme CA; ``ca_file`` is its PEM.

``Dovecot(oauth2=True)`` also offers SASL XOAUTH2 and OAUTHBEARER, checked against a local
introspection endpoint (``oauth``, a ``tests.oauthfake.IntrospectionFake``): a user logs in with a
token the test granted them. Passwords work as before; the plain server has no OAuth at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from tests.oauthfake import IntrospectionFake

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1

_APPENDUID = re.compile(rb"\[APPENDUID (\d+) (\d+)\]")
# Characters that would break a passwd-file line or a doveadm argument.
_FORBIDDEN = re.compile(r"[:\s\x00-\x1f]")


def available() -> bool:
    return DOVECOT.exists() and DOVEADM.exists()


class DovecotError(RuntimeError):
    """Dovecot or doveadm did not do what the helper asked; the message carries their output."""


@dataclass(frozen=True)
class ImapUser:
    name: str
    password: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class _Accounts:
    """Who Dovecot runs as: privileged mode under root, everything as the caller otherwise."""

    internal_user: str
    internal_group: str
    login_user: str
    mail_uid: int
    mail_gid: int

    @property
    def rootless(self) -> bool:
        return os.geteuid() != 0

    @classmethod
    def for_caller(cls) -> _Accounts:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return cls("dovecot", "dovecot", "dovenull", nobody.pw_uid, nobody.pw_gid)
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(os.getegid()).gr_name
        return cls(me.pw_name, group, me.pw_name, os.geteuid(), os.getegid())


class Dovecot:
    """A Dovecot started in a temp dir on 127.0.0.1, plain IMAP port + implicit-TLS port."""

    host: str
    port: int
    tls_port: int
    ca_file: str
    oauth: IntrospectionFake | None

    def __init__(self, *, oauth2: bool = False) -> None:
        if not available():
            raise DovecotError(f"{DOVECOT} or {DOVEADM} is missing (apt-get install dovecot-imapd)")
        self.host = HOST
        self._accounts = _Accounts.for_caller()
        # Under /tmp, not pytest's tmp_path: the unprivileged Dovecot users must reach it.
        self.directory = Path(tempfile.mkdtemp(prefix="ingestd-dovecot-", dir="/tmp"))
        self.directory.chmod(0o755)
        self._passwords: dict[str, str] = {}
        self._stamps: dict[str, int] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self.oauth = None
        try:
            if oauth2:
                self.oauth = IntrospectionFake()
            self._write_certificates()
            self._mail_root.mkdir()
            os.chown(self._mail_root, self._accounts.mail_uid, self._accounts.mail_gid)
            self._users_dir.mkdir(mode=0o755)
            self._start_on_free_ports()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start (again) on the same ports; returns once both listeners accept connections."""
        if self._process is not None and self._process.poll() is None:
            return
        log = (self.directory / "dovecot.out").open("ab")
        try:
            # A session of its own so stop() can signal every Dovecot process at once.
            self._process = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.config_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while not (_accepts(self.port) and _accepts(self.tls_port)):
            if self._process.poll() is not None:
                raise DovecotError(f"dovecot exited with {self._process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(f"dovecot did not listen within 10 s:\n{self.log()}")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop the server; it drops every client connection on the way down."""
        process, self._process = self._process, None
        if process is None:
            return
        # SIGTERM to the whole group, not the master alone: the master waits for its children,
        # and a child forked just before (still reading its config) ignores the signal, which
        # holds the master for 6 s. Such stragglers get SIGKILL after a grace second.
        _signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(1)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait(10)
        _signal_group(process.pid, signal.SIGKILL)

    def close(self) -> None:
        self.stop()
        if self.oauth is not None:
            self.oauth.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def config_file(self) -> Path:
        return self.directory / "dovecot.conf"

    def log(self) -> str:
        """Dovecot's own log plus anything it printed before the log was open."""
        parts = []
        for name in ("dovecot.out", "dovecot.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "".join(parts)

    # -- users ---------------------------------------------------------------------------------

    def add_user(self, name: str, password: str) -> None:
        """A new user with an empty INBOX (Maildir)."""
        _check_token("user name", name)
        _check_token("password", password)
        if name in self._passwords:
            raise DovecotError(f"user {name!r} exists already")
        home = self._mail_root / name
        maildir = home / "Maildir"
        for path in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
            path.mkdir(mode=0o700)
            os.chown(path, self._accounts.mail_uid, self._accounts.mail_gid)
        self._passwords[name] = password
        self._write_passwd(name)

    def set_password(self, name: str, password: str) -> None:
        """Change a password; sessions already logged in stay, new logins need the new one.

        Takes up to a second: Dovecot looks at a passwd-file at most once per wall-clock
        second, so a login in the second of the change could still see the old password.
        """
        _check_token("password", password)
        self._user_password(name)
        self._passwords[name] = password
        # Same length, same second: Dovecot compares mtime (whole seconds) and size only, so
        # the new file gets a later mtime than the old one even if that is a second ahead.
        self._write_passwd(name, min_mtime=self._stamps[name] + 1)
        next_second = int(time.time()) + 1
        time.sleep(max(0.0, next_second - time.time()) + 0.01)

    def password(self, name: str) -> str:
        return self._user_password(name)

    # -- mailboxes -----------------------------------------------------------------------------

    def create_folder(self, user: str, folder: str) -> None:
        self._doveadm("mailbox", "create", "-u", user, folder)

    def append(
        self,
        user: str,
        raw: bytes,
        folder: str = "INBOX",
        *,
        flags: tuple[str, ...] = (),
        internal_date: datetime | None = None,
    ) -> int:
        """Store a message through IMAP APPEND and return its UID (from UIDPLUS's APPENDUID).

        imaplib turns bare CR or LF into CRLF, as IMAP requires; a CRLF message comes back
        byte for byte from ``UID FETCH n BODY.PEEK[]``. ``internal_date`` needs a time zone.
        """
        with self.login(user) as client:
            date = imaplib.Time2Internaldate(internal_date) if internal_date else None
            flag_list = f"({' '.join(flags)})" if flags else None
            status, data = client.append(_quote(folder), flag_list, date, raw)
            if status != "OK":
                raise DovecotError(f"APPEND to {folder!r} for {user!r}: {status} {data!r}")
            match = _APPENDUID.search(data[0] or b"")
            if match is None:
                raise DovecotError(f"APPEND answered without APPENDUID: {data!r}")
            return int(match.group(2))

    def uids(self, user: str, folder: str = "INBOX") -> list[int]:
        return sorted(self.flags(user, folder))

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, set[str]]:
        """uid -> stored flags (``\\Seen`` and friends, keywords too), read without changing them.

        ``\\Recent`` is left out: it belongs to whichever session saw the message first, and
        that may be this very doveadm call.
        """
        rows = self._doveadm_tab("fetch", "-u", user, "uid flags", "mailbox", folder, "all")
        return {int(row["uid"]): set(row["flags"].split()) - {"\\Recent"} for row in rows}

    def status(self, user: str, folder: str = "INBOX") -> dict[str, int]:
        """``messages``, ``uidnext`` and ``uidvalidity`` of a folder."""
        rows = self._doveadm_tab(
            "mailbox", "status", "-u", user, "messages uidnext uidvalidity", folder
        )
        if len(rows) != 1:
            raise DovecotError(f"mailbox status of {folder!r} gave {rows!r}")
        return {key: int(value) for key, value in rows[0].items() if key != "mailbox"}

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        return self.status(user, folder)["uidvalidity"]

    def set_uidvalidity(self, user: str, folder: str, value: int) -> None:
        """Change UIDVALIDITY in place; the UIDs stay, so every client checkpoint is void."""
        self._doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)

    # -- sessions ------------------------------------------------------------------------------

    def kick(self, user: str) -> None:
        """Drop every open IMAP connection of ``user`` (the server closes them)."""
        self._doveadm("kick", user)

    def sessions(self, user: str) -> int:
        """How many IMAP connections ``user`` has open, as Dovecot's anvil counts them."""
        rows = self._doveadm_tab("who", user)
        return sum(int(row["#"]) for row in rows if row["username"] == user)

    def login(self, user: str, *, tls: bool = False) -> imaplib.IMAP4:
        """An imaplib client logged in as ``user`` (implicit TLS with ``tls=True``)."""
        client: imaplib.IMAP4
        if tls:
            client = imaplib.IMAP4_SSL(
                self.host, self.tls_port, ssl_context=self.ssl_context(), timeout=10
            )
        else:
            client = imaplib.IMAP4(self.host, self.port, timeout=10)
        try:
            client.login(user, self._user_password(user))
        except BaseException:
            with contextlib.suppress(OSError):
                client.shutdown()
            raise
        return client

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts only this server's CA."""
        return ssl.create_default_context(cafile=self.ca_file)

    # -- internals -----------------------------------------------------------------------------

    @property
    def _users_dir(self) -> Path:
        return self.directory / "users"

    @property
    def _mail_root(self) -> Path:
        return self.directory / "mail"

    def _user_password(self, name: str) -> str:
        try:
            return self._passwords[name]
        except KeyError:
            raise DovecotError(f"no user {name!r}") from None

    def _start_on_free_ports(self) -> None:
        # A port picked by binding 0 can be taken before Dovecot binds it; try a fresh pair.
        for attempt in range(3):
            self.port, self.tls_port = _free_port(), _free_port()
            self._write_config()
            try:
                self.start()
                return
            except DovecotError:
                if attempt == 2 or "Address already in use" not in self.log():
                    raise

    def _write_certificates(self) -> None:
        # Imported here so a checkout without the test extra can still import conftest.
        import trustme

        tls = self.directory / "tls"
        tls.mkdir()
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        ca.cert_pem.write_to_path(str(tls / "ca.pem"))
        cert.cert_chain_pems[0].write_to_path(str(tls / "server.pem"))
        for extra in cert.cert_chain_pems[1:]:
            extra.write_to_path(str(tls / "server.pem"), append=True)
        cert.private_key_pem.write_to_path(str(tls / "server.key"))
        self.ca_file = str(tls / "ca.pem")

    def _write_passwd(self, name: str, min_mtime: int = 0) -> None:
        # One passwd-file per user: Dovecot reads a file it has not seen at once, whereas a
        # change to a file it has read waits for its once-a-second check (see set_password).
        accounts = self._accounts
        path = self._users_dir / name
        path.write_text(
            f"{name}:{{PLAIN}}{self._passwords[name]}:{accounts.mail_uid}:{accounts.mail_gid}::"
            f"{self._mail_root / name}::\n"
        )
        path.chmod(0o644)
        stamp = max(int(path.stat().st_mtime), min_mtime)
        os.utime(path, (stamp, stamp))
        self._stamps[name] = stamp

    def _write_config(self) -> None:
        d = self.directory
        accounts = self._accounts
        chroot = "  chroot =\n" if accounts.rootless else ""
        oauth_mechanisms = oauth_passdb = password_mechanisms = ""
        if self.oauth is not None:
            oauth_mechanisms = " xoauth2 oauthbearer"
            # First, and for the token mechanisms only: a password login must never reach the
            # introspection endpoint, nor a token the passwd-file.
            oauth_passdb = (f"passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n"
                            f"  args = {self._write_oauth2_config()}\n}}\n")
            password_mechanisms = "  mechanisms = plain login\n"
        self.config_file.write_text(f"""\
protocols = imap
listen = {HOST}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
ssl = yes
ssl_cert = <{d}/tls/server.pem
ssl_key = <{d}/tls/server.key
disable_plaintext_auth = no
auth_mechanisms = plain login{oauth_mechanisms}
# The default 2 s pause after a failed login would make every negative test slow.
auth_failure_delay = 0
default_internal_user = {accounts.internal_user}
default_internal_group = {accounts.internal_group}
default_login_user = {accounts.login_user}
first_valid_uid = {accounts.mail_uid}
last_valid_uid = {accounts.mail_uid}
mail_location = maildir:~/Maildir
# Test mail is thrown away; fsync only slows the suite down.
mail_fsync = never
# No stats service to talk to: a login process caught mid-handshake by SIGTERM
# would otherwise hold the shutdown for its 5 s stats timeout.
stats_writer_socket_path =
namespace inbox {{
  inbox = yes
  separator = /
}}
{oauth_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users/%u
{password_mechanisms}}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d}/users/%u
}}
protocol imap {{
  # Reconnect tests open many sessions for one user from one address.
  mail_max_userip_connections = 100
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.tls_port}
    ssl = yes
  }}
}}
service anvil {{
{chroot}  # No growing delay for 127.0.0.1 after failed logins: negative tests share the address.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
""")

    def _write_oauth2_config(self) -> Path:
        assert self.oauth is not None
        path = self.directory / "oauth2.conf.ext"
        # No auth cache is configured, so every login asks the endpoint: a revoke takes
        # effect at the next login.
        path.write_text(
            f"introspection_mode = post\n"
            f"introspection_url = {self.oauth.url}\n"
            f"username_attribute = username\n"
            f"active_attribute = active\n"
            f"active_value = true\n"
        )
        path.chmod(0o644)
        return path

    def _doveadm(self, *args: str) -> str:
        command = [str(DOVEADM), "-c", str(self.config_file), *args]
        result = subprocess.run(command, capture_output=True, timeout=30, check=False)
        if result.returncode != 0:
            raise DovecotError(
                f"{' '.join(args)} exited with {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()}"
            )
        return result.stdout.decode()

    def _doveadm_tab(self, *args: str) -> list[dict[str, str]]:
        # Tab format: one header line naming the fields, then one line per row.
        lines = self._doveadm("-f", "tab", *args).splitlines()
        if not lines:
            return []
        header = lines[0].split("\t")
        return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


def _die_with_parent() -> None:
    # A test run killed hard must not leave a Dovecot listening behind it.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _check_token(what: str, value: str) -> None:
    if not value or _FORBIDDEN.search(value):
        raise ValueError(f"{what} must be non-empty without colons, spaces or controls: {value!r}")


def _quote(folder: str) -> str:
    escaped = folder.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
