"""``mailgate doctor``: what goes wrong in a first deployment, found before a customer finds it.

Each check is a small function that returns a :class:`Check`: what it looked
at, whether it is fine, and, when it is not, the one thing to do about it.
The checks read and probe (connect, stat, ``SELECT``) but never change
anything, so the command is safe on a live installation.

Permissions are judged for the *service user* (``--user``, default the user
running the command), from the mode bits, owner and groups of each file and
of every directory above it: an admin runs the doctor as root, but the
daemon and the MTA's pipe run as ``mailgate``, and root can read everything.
"""

from __future__ import annotations

import grp
import os
import pwd
import smtplib
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mailgate.config import Config

STALE_SPOOL = 300.0  # an incoming mail older than this means no worker is taking mail
PROBE_TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ServiceUser:
    """Who the daemon runs as: the identity the permission checks are made for."""

    name: str
    uid: int
    gids: frozenset[int]

    @classmethod
    def named(cls, name: str | None) -> ServiceUser:
        entry = pwd.getpwnam(name) if name else pwd.getpwuid(os.getuid())
        gids = {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem}
        return cls(entry.pw_name, entry.pw_uid, frozenset(gids))

    def may(self, path: Path, mode: str) -> bool:
        """True when this user may ``r``/``w``/``x`` ``path`` and reach it through its directories."""
        path = path.absolute()
        return all(self._allows(parent, "x") for parent in path.parents) and self._allows(path, mode)

    def _allows(self, path: Path, mode: str) -> bool:
        if self.uid == 0:
            return True
        try:
            st = path.stat()
        except OSError:
            return False
        bits = {"r": stat.S_IROTH, "w": stat.S_IWOTH, "x": stat.S_IXOTH}[mode]
        if st.st_uid == self.uid:
            bits <<= 6
        elif st.st_gid in self.gids:
            bits <<= 3
        return bool(st.st_mode & bits)


def check_config(path: Path, user: ServiceUser) -> Check:
    if not path.exists():
        return Check("config", False, f"{path} does not exist", "create it from config.example.toml")
    if not user.may(path, "r"):
        return Check(
            "config", False, f"{path} is not readable by {user.name}", f"chgrp {user.name} {path} && chmod 0640 {path}"
        )
    return Check("config", True, f"{path} readable by {user.name}")


def check_data_dir(config: Config, user: ServiceUser) -> Check:
    folders = [config.data_dir, config.spool_dir, *(config.spool_dir / s for s in ("tmp", "incoming", "work"))]
    for folder in folders:
        if folder.exists() and not (user.may(folder, "w") and user.may(folder, "x")):
            return Check(
                "data_dir",
                False,
                f"{folder} is not writable by {user.name}",
                f"chown -R {user.name}: {config.data_dir}",
            )
    if not config.data_dir.exists():
        parent = config.data_dir.parent
        if not user.may(parent, "w"):
            return Check(
                "data_dir",
                False,
                f"{config.data_dir} does not exist and {user.name} cannot create it",
                f"install -d -o {user.name} -g {user.name} -m 0750 {config.data_dir}",
            )
        return Check("data_dir", True, f"{config.data_dir} will be created by {user.name} on first start")
    return Check("data_dir", True, f"{config.data_dir} and its spool writable by {user.name}")


def check_database(config: Config) -> Check:
    from mailgate.storage import db

    if config.db_url.startswith("sqlite:///") and not Path(config.db_url.removeprefix("sqlite:///")).exists():
        return Check("database", True, f"{config.db_url} does not exist yet; `mailgate serve` creates it")
    engine = db.make_engine(config.db_url)
    try:
        have, want = db.current_heads(engine), db.script_heads(engine)
    except Exception as exc:  # any driver error: the point is that it cannot be used
        first = str(exc).splitlines()[0] if str(exc) else ""
        return Check(
            "database",
            False,
            f"cannot reach {_safe_url(config.db_url)}: {type(exc).__name__}: {first}",
            "check [mailgate] database_url and that the server is up",
        )
    finally:
        engine.dispose()
    if not have:
        return Check("database", True, f"{_safe_url(config.db_url)} is empty; `mailgate serve` creates the schema")
    if have != want:
        return Check(
            "database",
            False,
            f"schema at {', '.join(sorted(have))}, code wants {', '.join(sorted(want))}",
            "mailgate db upgrade",
        )
    return Check("database", True, f"{_safe_url(config.db_url)} reachable, schema at head")


def check_sqlite_files(config: Config, user: ServiceUser) -> Check | None:
    """SQLite writes beside its file: the folder, the ``-wal`` and the ``-shm`` must all be writable."""
    if not config.db_url.startswith("sqlite:///"):
        return None
    path = Path(config.db_url.removeprefix("sqlite:///"))
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        if candidate.exists() and not user.may(candidate, "w"):
            return Check(
                "sqlite_files",
                False,
                f"{candidate} is not writable by {user.name} "
                "(SQLite then fails with 'attempt to write a readonly database')",
                f"chown {user.name}: {candidate} && chmod 0640 {candidate}",
            )
    if path.parent.exists() and not user.may(path.parent, "w"):
        return Check(
            "sqlite_files",
            False,
            f"{path.parent} is not writable by {user.name}: SQLite cannot create its -wal and -shm files",
            f"chown {user.name}: {path.parent}",
        )
    return Check("sqlite_files", True, f"{path} and its -wal/-shm files writable by {user.name}")


def check_templates(config: Config) -> Check:
    from mailgate.outbound import settings as outbound_settings
    from mailgate.outbound import templating
    from mailgate.outbound.plugin import import_kind_registrations

    import_kind_registrations()
    settings = outbound_settings.parse(config, templating.SHIPPED_DIR)
    templates = templating.Templates(settings.template_dirs)
    problems = templates.check()
    if problems:
        first = problems[0]
        return Check("templates", False, f"{len(problems)} problem(s), first: {first}", "mailgate templates check")
    return Check("templates", True, f"{len(templates.files())} templates render")


def check_rules(config: Config) -> Check:
    from mailgate.routing.plugin import parse_rules_settings
    from mailgate.routing.ruleset import check_directory, vocabulary
    from mailgate.routing.spam import parse_settings

    directory = parse_rules_settings(config).directory
    ruleset, problems = check_directory(directory, vocabulary(config, parse_settings(config).queue))
    if problems:
        return Check("rules", False, f"{len(problems)} problem(s), first: {problems[0]}", "mailgate rules check")
    return Check("rules", True, f"{len(ruleset.rules)} rules in {directory}")


def check_secret(config: Config, user: ServiceUser) -> Check:
    from mailgate.storage.keys import configured_file, key_path

    path = key_path(config)
    if not path.exists():
        if configured_file(config) is None:  # the default: one key for every daemon, in the database
            return Check("secret", True, "the signing key is kept in the database (made on first start)")
        return Check("secret", True, f"{path} will be created (mode 0600) on first start")
    mode = path.stat().st_mode
    if mode & 0o077:
        return Check(
            "secret", False, f"{path} is readable by others (mode {stat.S_IMODE(mode):04o})", f"chmod 0600 {path}"
        )
    if not user.may(path, "r"):
        return Check("secret", False, f"{path} is not readable by {user.name}", f"chown {user.name}: {path}")
    if len(path.read_bytes().strip()) < 16:
        return Check("secret", False, f"{path} holds fewer than 16 bytes", f"remove {path}; it is made anew")
    return Check("secret", True, f"{path} present and private")


def check_door(config: Config) -> Check | None:
    if not config.smtp.enabled:
        return None
    where = f"{config.smtp.host}:{config.smtp.port}"
    try:
        with smtplib.SMTP(config.smtp.host, config.smtp.port, timeout=PROBE_TIMEOUT) as client:
            code, _ = client.noop()
    except (OSError, smtplib.SMTPException) as exc:
        return Check(
            "smtp_door",
            False,
            f"nothing answers SMTP on {where}: {exc}",
            "start the daemon: systemctl start mailgate (or mailgate serve)",
        )
    if code != 250:
        return Check("smtp_door", False, f"{where} answered NOOP with {code}", "look at the daemon's log")
    return Check("smtp_door", True, f"the SMTP door answers on {where}")


def check_worker(config: Config, now: Callable[[], float] = time.time) -> Check:
    """Mail waiting longer than :data:`STALE_SPOOL` means no daemon is processing this spool."""
    incoming = config.spool_dir / "incoming"
    try:
        names = sorted(n for n in os.listdir(incoming) if n.endswith(".eml"))
    except FileNotFoundError:
        return Check("worker", True, "the spool is empty")
    quarantined = len([n for n in _listdir(config.spool_dir / "quarantine") if n.endswith(".eml")])
    note = f"; {quarantined} quarantined (mailgate spool list)" if quarantined else ""
    if not names:
        return Check("worker", True, f"no mail waits{note}")
    age = now() - int(names[0].split("-", 1)[0]) / 1e9
    if age > STALE_SPOOL:
        return Check(
            "worker",
            False,
            f"{len(names)} mail(s) wait, the oldest for {age / 60:.0f} min: no daemon is processing this spool{note}",
            "start the daemon (the pipe door only spools: `mailgate serve` must run)",
        )
    return Check("worker", True, f"{len(names)} mail(s) wait, the oldest for {age:.0f} s{note}")


def check_smarthost(config: Config) -> Check:
    if not config.outbound.smarthost:
        return Check("smarthost", True, f"none: sent mail goes to the maildir {config.sent_dir}")
    host, _, port = config.outbound.smarthost.rpartition(":")
    try:
        with smtplib.SMTP(host, int(port), timeout=PROBE_TIMEOUT, local_hostname=config.hostname) as client:
            client.ehlo()
            tls = client.has_extn("starttls")
    except (OSError, ValueError, smtplib.SMTPException) as exc:
        return Check(
            "smarthost",
            False,
            f"cannot reach {config.outbound.smarthost}: {exc}",
            "check [outbound] smarthost and the firewall",
        )
    if config.outbound.starttls and not tls:
        return Check(
            "smarthost",
            False,
            f"{config.outbound.smarthost} does not offer STARTTLS, which is required",
            "enable TLS on the smarthost, or set [outbound] starttls = false for a loopback one",
        )
    return Check("smarthost", True, f"{config.outbound.smarthost} answers" + (" and offers STARTTLS" if tls else ""))


def run(config_path: Path, user: ServiceUser, postfix_dir: str | None = None) -> Iterator[Check]:
    """Every check, in the order an admin would fix them; stops after the config when it cannot be read."""
    from mailgate.config import load_config
    from mailgate.errors import ConfigError

    first = check_config(config_path, user)
    yield first
    if not first.ok:
        return
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        yield Check("config_valid", False, str(exc), "fix the key it names")
        return
    yield check_data_dir(config, user)
    yield check_database(config)
    for maybe in (check_sqlite_files(config, user),):
        if maybe is not None:
            yield maybe
    yield from _guarded("templates", lambda: check_templates(config))
    yield from _guarded("rules", lambda: check_rules(config))
    yield check_secret(config, user)
    door = check_door(config)
    if door is not None:
        yield door
    yield check_worker(config)
    yield check_smarthost(config)
    from mailgate.cli import doctor_postfix

    yield from doctor_postfix.checks(config, postfix_dir)


def _guarded(name: str, check: Callable[[], Check]) -> Iterator[Check]:
    """A check that raises (a config section it cannot parse) is a failed check, not a traceback."""
    try:
        yield check()
    except Exception as exc:
        yield Check(name, False, f"{type(exc).__name__}: {exc}", f"mailgate {name} check")


def _listdir(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _safe_url(url: str) -> str:
    """The database URL without its password, for output."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the database"
