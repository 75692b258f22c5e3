"""A real Dovecot IMAP server for the tests, run as the current user on its own port.

Debian's `dovecot-imapd` (`make mailserver` installs it). Dovecot normally starts as root and
drops privileges; here it gets a configuration of its own in a temporary directory (runtime,
state, log and a Maildir all under it), runs in the foreground as whoever runs the tests, serves
plain IMAP on 127.0.0.1 only (never the system's port 143) and knows one user from a passwd-file.
Under root (containers, CI) it runs as the package's unprivileged `dovecot` user instead, as
Dovecot will not serve logins or mail as root.
Mail goes in through IMAP APPEND, the same protocol the poller reads it back with.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"  # /usr/sbin is often not on a user's PATH

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
instance_name = parley-tests-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
auth_mechanisms = plain
# Answer a failed login at once (the default waits 2 s to slow guessing).
auth_failure_delay = 0
disable_plaintext_auth = no
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
mail_location = maildir:{root}/mail/%u
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # No growing delay for logins from 127.0.0.1 after the wrong-password tests (auth penalty).
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _account() -> pwd.struct_passwd:
    """Who runs the server: the current user, or under root the package's unprivileged `dovecot`
    user (Dovecot refuses to serve logins or mail as root)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    try:
        return pwd.getpwnam("dovecot")
    except KeyError:
        return pwd.getpwnam("nobody")


def available() -> bool:
    return os.access(DOVECOT, os.X_OK)


class Dovecot:
    """`with Dovecot(port) as server:` a running server; `server.client()` a logged-in IMAPClient."""

    user = "desk@parley.test"
    password = "imap secret 1"  # noqa: S105 - a throwaway test server's password

    def __init__(self, port: int, startup_seconds: float = 20) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.startup_seconds = startup_seconds
        self.process: subprocess.Popen | None = None
        self.console = None
        self._tmp = tempfile.TemporaryDirectory(prefix="parley-dovecot-")
        self.root = Path(self._tmp.name)

    def __enter__(self) -> Dovecot:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Dovecot:
        account = _account()
        uid, gid = account.pw_uid, account.pw_gid
        home = self.root / "home"
        for sub in ("run", "state", "mail", "home"):
            (self.root / sub).mkdir()
        (self.root / "passwd").write_text(f"{self.user}:{{PLAIN}}{self.password}:{uid}:{gid}::{home}::\n")
        self.config = self.root / "dovecot.conf"
        self.config.write_text(
            CONFIG.format(
                root=self.root,
                port=self.port,
                uid=uid,
                gid=gid,
                user=account.pw_name,
                group=grp.getgrgid(gid).gr_name,
            )
        )
        as_other = {}
        if account.pw_uid != os.geteuid():
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, uid, gid)
            as_other = {"user": uid, "group": gid, "extra_groups": []}
        self.console = open(self.root / "console.log", "wb")  # noqa: SIM115 - closed in _cleanup()
        self.process = subprocess.Popen(  # noqa: S603 - our own binary and config
            [DOVECOT, "-F", "-c", str(self.config)],
            stdout=self.console,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its children (auth, imap-login, imap) go with its group
            **as_other,
        )
        deadline = time.monotonic() + self.startup_seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.read_log("console.log") + self.read_log()
                self._cleanup()
                raise RuntimeError(f"dovecot exited early:\n{output}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(100).startswith(b"* OK"):  # the greeting: imap-login is up
                        return self
            except OSError:
                time.sleep(0.05)
        log = self.read_log()
        self.stop()
        raise RuntimeError(
            f"dovecot did not greet on port {self.port} within {self.startup_seconds} s:\n{log}"
        )

    def read_log(self, name: str = "dovecot.log") -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # the master stops its children and exits
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process is not None:
            try:  # anything of its session the master left behind
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._cleanup()

    def _cleanup(self) -> None:
        if self.console is not None:
            self.console.close()
        self._tmp.cleanup()

    # --- Driving it as a mail client would ---------------------------------------------------------

    def client(self):
        from imapclient import IMAPClient

        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def deliver(self, message, folder: str = "INBOX") -> int:
        """APPEND a message (bytes or an email.message.Message); returns its UID in the folder."""
        raw = message if isinstance(message, bytes) else message.as_bytes()
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw)
        # APPENDUID (RFC 4315): b"[APPENDUID <uidvalidity> <uid>] Append completed."
        return int(response.split(b"]")[0].split()[-1])

    def flags(self, folder: str = "INBOX") -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            return client.get_flags(client.search("ALL"))

    def uidvalidity(self, folder: str = "INBOX") -> int:
        with self.client() as client:
            return client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"]

    def recreate(self, folder: str) -> None:
        """Delete the folder and make it again, empty: the server gives it a new UIDVALIDITY and
        starts its UIDs again at 1, as after a restore from backup or a server migration."""
        with self.client() as client:
            client.delete_folder(folder)
            client.create_folder(folder)
