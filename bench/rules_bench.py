"""How long routing one mail takes against many rules: the hook ``bench/run.py`` calls.

The rules are a realistic mix written as TOML and loaded through the real
loader (domains, addresses, keywords, regexes on the body, headers, sizes,
combinators); the mails are parsed once, outside the timing. What is timed is
what the pipeline's route step does per mail: build the facts and run
``routing.decide`` (no database: the sender lists are a separate query).
"""

from __future__ import annotations

import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

from mailgate.context import Envelope
from mailgate.mail.parse import ParsedMail, parse
from mailgate.pipeline.steps.route import decide
from mailgate.routing.facts import MailFacts
from mailgate.routing.ruleset import RuleSet, Vocabulary, load_directory
from mailgate.routing.spam import SpamSettings

_WORDS = (
    "printer",
    "invoice",
    "login",
    "password",
    "refund",
    "delivery",
    "order",
    "account",
    "crash",
    "update",
    "facture",
    "commande",
    "livraison",
    "счёт",
    "заказ",
    "доставка",
    "пароль",
    "ошибка",
)


def synthetic_rules(n_rules: int) -> str:
    """``n_rules`` rules as one rule file, cycling through the kinds of rules admins write."""
    parts = []
    for i in range(n_rules):
        word = _WORDS[i % len(_WORDS)]
        kind = i % 8
        parts.append(f'[[rule]]\nname = "rule-{i:04d}"\n')
        if kind == 0:
            parts.append(
                f'queue = "vip"\npriority = "high"\nmatch = {{ from_domain = ["customer{i}.example", '
                f'"client{i}.example"] }}\n'
            )
        elif kind == 1:
            parts.append(f'queue = "team{i}"\nmatch = {{ recipient = "team{i}@example.com" }}\n')
        elif kind == 2:
            parts.append(f'tags = ["kw{i}"]\nmatch = {{ subject = {{ contains = ["{word}{i}", "ticket-{i}"] }} }}\n')
        elif kind == 3:
            parts.append(f"tags = [\"ord{i}\"]\nmatch = {{ body = {{ regex = '\\\\border-{i}-\\\\d+\\\\b' }} }}\n")
        elif kind == 4:
            parts.append(f'tags = ["camp{i}"]\nmatch = {{ header = {{ "X-Campaign" = {{ equals = "c{i}" }} }} }}\n')
        elif kind == 5:
            parts.append(
                f'priority = "low"\nmatch = {{ any = [ {{ subject = {{ glob = "*{word}-{i}*" }} }}, '
                f'{{ from = {{ glob = "*@*.sub{i}.example" }} }} ] }}\n'
            )
        elif kind == 6:
            parts.append(
                f'tags = ["big{i}"]\nmatch = {{ all = [ {{ attachment = true }}, '
                f"{{ size = {{ gt = {1_000_000 + i} }} }} ] }}\n"
            )
        else:
            parts.append(
                f"spam = true\nmatch = {{ all = [ {{ spam_score = {{ ge = {10 + i % 5} }} }}, "
                f'{{ not = {{ from_domain = "partner{i}.example" }} }} ] }}\n'
            )
        parts.append("\n")
    return "".join(parts)


def sample_mails(n_messages: int) -> list[tuple[ParsedMail, Envelope]]:
    mails = []
    for i in range(n_messages):
        msg = EmailMessage()
        domain = f"customer{i}.example" if i % 3 == 0 else f"domain{i % 37}.example"
        msg["From"] = f"Customer {i} <user{i}@{domain}>"
        msg["To"] = "support@example.com"
        msg["Subject"] = f"Problem with my {_WORDS[i % len(_WORDS)]} (ticket-{i * 7})"
        msg["Message-ID"] = f"<bench-{i}@domain.example>"
        if i % 5 == 0:
            msg["X-Spam-Status"] = f"No, score={i % 7}.5 required=5.0"
        body = "\n".join(
            f"Line {n}: my {_WORDS[(i + n) % len(_WORDS)]} does not work since yesterday, order-{i * 11 + n}-{n}."
            for n in range(25)
        )
        msg.set_content(body)
        mails.append((parse(msg.as_bytes()), Envelope(mail_from=f"user{i}@{domain}", rcpt_tos=["support@example.com"])))
    return mails


def load_synthetic(n_rules: int) -> RuleSet:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "bench.toml").write_text(synthetic_rules(n_rules), encoding="utf-8")
        return load_directory(Path(tmp), Vocabulary())


def route_benchmark(n_rules: int = 500, n_messages: int = 200, repeat: int = 3) -> float:
    """Microseconds to route one mail against ``n_rules`` rules (best of ``repeat`` passes)."""
    ruleset = load_synthetic(n_rules)
    mails = sample_mails(n_messages)
    settings = SpamSettings()
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        for mail, envelope in mails:
            decide(ruleset, MailFacts(mail, envelope), settings, "support")
        best = min(best, time.perf_counter() - start)
    return best / max(1, n_messages) * 1e6
