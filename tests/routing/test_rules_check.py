"""`mailgate rules check`: every problem in every rule file, with file, line and what is wrong."""

from __future__ import annotations

import tomllib

import pytest
import tomli_w

from mailgate.config import load_config
from mailgate.errors import ConfigError
from mailgate.routing.ruleset import check_directory, vocabulary
from tests.helpers import ROOT, mailgate
from tests.rulekit import rules_config, write_rules

GOOD = """\
[[rule]]
name = "billing"
queue = "billing"
match = { subject = { contains = "invoice" } }
"""


def problems(tmp_path, make_config, **files):
    directory = write_rules(tmp_path / "rules", **files)
    config = load_config(rules_config(make_config, directory))
    return [(p.file.rsplit("/", 1)[-1], p.line, p.message) for p in check_directory(directory, vocabulary(config))[1]]


def only(found):
    assert len(found) == 1, found
    return found[0]


def test_a_syntax_error_names_file_and_line(tmp_path, make_config):
    name, line, message = only(problems(tmp_path, make_config, bad=GOOD + '\n[[rule]]\nname = "x\nqueue = "b"\n'))
    assert (name, line) == ("bad.toml", 7)
    assert message.startswith("syntax error:")


def test_a_bad_regex_names_the_line_of_the_pattern(tmp_path, make_config):
    text = (
        GOOD
        + """
[[rule]]
name = "broken"
priority = "high"
[rule.match]
subject = { contains = "ok" }
body = { regex = '(unclosed' }
"""
    )
    name, line, message = only(problems(tmp_path, make_config, **{"10-x": text}))
    assert (name, line) == ("10-x.toml", 11)
    assert "rule 'broken'" in message and "bad regex '(unclosed'" in message


def test_an_unknown_queue_or_agent_names_the_line_of_the_key(tmp_path, make_config):
    text = (
        GOOD
        + """
[[rule]]
name = "to-nowhere"
tags = ["a"]
queue = "nowhere"
assign = "mallory@example.com"
match = {}
"""
    )
    found = problems(tmp_path, make_config, x=text)
    assert [(line, message.split(":")[1].strip()) for _, line, message in found] == [(9, "queue"), (10, "assign")]
    assert "unknown queue 'nowhere'" in found[0][2] and "unknown agent 'mallory@example.com'" in found[1][2]


@pytest.mark.parametrize(
    "rule, line, wanted",
    [
        ('name = "r"\nqueu = "billing"\nmatch = {}', 4, "unknown key 'queu'"),
        ('name = "r"\nqueue = "billing"\nmatch = { subjet = "x" }', 5, "unknown match field 'subjet'"),
        ('name = "r"\nqueue = "billing"\nmatch = { subject = { contain = "x" } }', 5, "unknown operator 'contain'"),
        ('name = "r"\npriority = 3\nmatch = {}', 4, "priority: expected a non-empty string, got 3"),
        ('name = "r"\npriority = "asap"\nmatch = {}', 4, "expected one of low, normal, high, urgent"),
        ('name = "r"\ntags = "vip"\nmatch = {}', 4, "tags: expected a list of tags"),
        ('name = "r"\nstop = "yes"\nmatch = {}', 4, "stop: expected true or false"),
        ('name = "r"\nqueue = "billing"\nmatch = { size = { gt = "lots" } }', 5, "expected a size"),
        ('name = "r"\nqueue = "billing"\nmatch = { spam_score = { gt = "5" } }', 5, "expected a number"),
        ('name = "r"\nqueue = "billing"\nmatch = { attachment = "yes" }', 5, "expected true or false"),
        ('name = "r"\nqueue = "billing"\nmatch = { any = [] }', 5, "non-empty list"),
        (
            'name = "r"\nqueue = "billing"\nmatch = { subject = { contains = "a", regex = "b" } }',
            5,
            "exactly one operator",
        ),
        ('name = "r"\nqueue = "billing"', 2, "needs a match table"),
        ('queue = "billing"\nmatch = {}', 2, "needs a name"),
        ('name = "r"\nmatch = {}', 2, "has no action"),
        ('name = "r"\ntemplate = "../../etc/passwd"\nmatch = {}', 4, "expected a template name"),
        ('name = "r"\nqueue = "spam"\nspam = false\nmatch = {}', 4, "is the spam queue"),
    ],
)
def test_every_kind_of_mistake_is_reported_at_its_line(tmp_path, make_config, rule, line, wanted):
    name, found_line, message = only(problems(tmp_path, make_config, x=f"# a comment\n[[rule]]\n{rule}\n"))
    assert (name, found_line) == ("x.toml", line)
    assert wanted in message


def test_rule_names_are_unique_across_files(tmp_path, make_config):
    name, line, message = only(problems(tmp_path, make_config, a=GOOD, b="\n\n" + GOOD))
    assert (name, line) == ("b.toml", 4)
    assert "name already used by a rule in" in message and "a.toml" in message


def test_every_problem_of_every_file_is_reported(tmp_path, make_config):
    b = GOOD.replace('name = "billing"', 'name = "b"').replace('queue = "billing"', "queue = 12") + "\nfoo = 1\n"
    found = problems(tmp_path, make_config, a="[[rule]\n", b=b, c=GOOD.replace('name = "billing"', 'name = "c"'))
    assert [(name, line) for name, line, _ in found] == [("a.toml", 1), ("b.toml", 6), ("b.toml", 3)]
    assert "unknown key 'foo'" in found[1][2] and "queue: expected a non-empty string" in found[2][2]


def test_queues_known_are_the_declared_ones_the_default_and_spam(tmp_path, make_config):
    for queue in ("billing", "support", "spam"):
        assert problems(tmp_path, make_config, x=GOOD.replace('queue = "billing"', f'queue = "{queue}"')) == []


def test_the_command_prints_file_and_line_and_exits_1(tmp_path, make_config):
    directory = write_rules(tmp_path / "rules", good=GOOD, bad="[[rule]]\nname = 'b'\nqueue = 'nowhere'\nmatch = {}\n")
    result = mailgate(rules_config(make_config, directory), "rules", "check")
    assert result.returncode == 1
    assert result.stdout.decode().splitlines() == [
        f"{directory / 'bad.toml'}:3: rule 'b': queue: unknown queue 'nowhere' (known: billing, other, sales, "
        "spam, support, tech, vip; declare it in [[queues]] of the config)".replace("billing,", "billing, hit,")
    ]


def test_the_command_says_ok_and_exits_0(tmp_path, make_config):
    directory = write_rules(tmp_path / "rules", good=GOOD)
    result = mailgate(rules_config(make_config, directory), "rules", "check")
    assert (result.returncode, result.stdout.decode().strip()) == (0, f"ok: 1 rules in 1 files ({directory})")


def test_a_bad_rule_file_stops_the_start_with_a_config_error(tmp_path, make_config, harness_factory):
    directory = write_rules(tmp_path / "rules", bad="[[rule]]\nname = 'b'\nqueue = 'nowhere'\nmatch = {}\n")
    config = rules_config(make_config, directory)
    with pytest.raises(ConfigError, match=r"bad\.toml:3: .*unknown queue 'nowhere'"):
        harness_factory(config)
    result = mailgate(config, "serve")
    assert result.returncode == 78
    assert "bad.toml:3:" in result.stderr.decode()


def test_a_missing_rules_dir_in_the_config_is_a_config_error(tmp_path, make_config):
    result = mailgate(make_config(rules={"dir": str(tmp_path / "nope")}), "rules", "check")
    assert result.returncode == 78
    assert "rules.dir: no such directory" in result.stderr.decode()


def test_the_shipped_example_rules_pass_against_the_example_config(tmp_path):
    config = tomllib.loads((ROOT / "config.example.toml").read_text())
    config["mailgate"]["data_dir"] = str(tmp_path / "data")
    config["rules"]["dir"] = str(ROOT / "rules")
    path = tmp_path / "config.toml"
    path.write_text(tomli_w.dumps(config))
    result = mailgate(path, "rules", "check")
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert result.stdout.decode().startswith("ok: ")


def test_a_rule_file_holds_only_rule_tables(tmp_path, make_config):
    name, line, message = only(problems(tmp_path, make_config, x='# rules\nqueue = "billing"\n\n' + GOOD))
    assert (name, line) == ("x.toml", 2)
    assert "unknown top-level key 'queue'" in message
