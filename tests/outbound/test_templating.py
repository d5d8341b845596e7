"""Templates: every shipped one renders in every locale; a broken one is reported with file and line,
by `mailgate templates check` and at start."""

from __future__ import annotations

import pytest

from mailgate.errors import ConfigError
from mailgate.outbound import templating
from mailgate.outbound.templating import KINDS, Templates, sample_context
from tests.helpers import mailgate

SHIPPED = Templates([templating.SHIPPED_DIR])


def test_the_shipped_templates_have_no_problem():
    assert SHIPPED.check() == []


@pytest.mark.parametrize("locale", ["en", "fr", "ru", "de", "es"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_exists_and_renders_in_every_shipped_locale(kind, locale):
    rendered = SHIPPED.render(kind, locale, sample_context(kind))
    assert rendered.template == f"{locale}/{kind}.j2"
    assert rendered.text.strip()
    assert "None" not in rendered.text


def test_an_unknown_locale_falls_back_to_english():
    assert SHIPPED.render("acknowledgment", "it", sample_context()).template == "en/acknowledgment.j2"


def test_a_queue_override_wins_then_the_locale_then_english(tmp_path):
    (tmp_path / "queues" / "vip" / "fr").mkdir(parents=True)
    (tmp_path / "queues" / "vip" / "fr" / "resolved.j2").write_text("{% block text %}VIP{% endblock %}")
    templates = Templates([tmp_path, templating.SHIPPED_DIR])
    assert templates.render("resolved", "fr", sample_context(), queue="vip").text == "VIP\n"
    assert templates.render("resolved", "fr", sample_context(), queue="other").template == "fr/resolved.j2"
    assert templates.render("resolved", "en", sample_context(), queue="vip").template == "en/resolved.j2"


def test_a_file_without_blocks_is_all_text(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "resolved.j2").write_text("{% block subject %}Done{% endblock %}Hi {{ customer.name }}.\n")
    rendered = Templates([tmp_path]).render("resolved", "en", sample_context())
    assert (rendered.subject, rendered.text, rendered.html) == ("Done", "Hi Alice.\n", "")


def problems_for(tmp_path, text, kind="acknowledgment"):
    (tmp_path / "en").mkdir(exist_ok=True)
    path = tmp_path / "en" / f"{kind}.j2"
    path.write_text(text)
    return [p for p in Templates([tmp_path, templating.SHIPPED_DIR]).check() if p.file == str(path)], path


def test_a_syntax_error_is_reported_with_file_and_line(tmp_path):
    [problem], path = problems_for(tmp_path, "{% block text %}\nline two\n{% if ticket.number %}\n{% endblock %}\n")
    assert (problem.file, problem.line) == (str(path), 4)
    assert "syntax error" in problem.message
    assert str(problem).startswith(f"{path}:4: ")


def test_an_unknown_variable_is_reported_with_file_and_line(tmp_path):
    [problem], _ = problems_for(tmp_path, "{% block text %}\nHello\n{{ custmer.name }}\n{% endblock %}\n")
    assert problem.line == 3 and "'custmer'" in problem.message


def test_an_unknown_attribute_is_reported_with_file_and_line(tmp_path):
    [problem], _ = problems_for(tmp_path, "{% block text %}\nA\nB\n{{ ticket.nubmer }}\n{% endblock %}\n")
    assert problem.line == 4 and "nubmer" in problem.message


def test_an_error_in_the_html_block_is_found_too(tmp_path):
    [problem], _ = problems_for(
        tmp_path, "{% block text %}ok{% endblock %}\n{% block html %}\n{{ 1 / 0 }}{% endblock %}\n"
    )
    assert problem.line == 3 and "ZeroDivisionError" in problem.message


def test_a_kind_may_only_use_its_own_names(tmp_path):
    [problem], _ = problems_for(tmp_path, "{% block text %}{{ alert.count }}{% endblock %}\n")
    assert "'alert'" in problem.message, "alert belongs to loop_alert, not to acknowledgment"


def test_registered_kinds_are_checked_strictly_and_others_leniently(tmp_path):
    assert problems_for(tmp_path, "{{ sla.due.local | upper }} {{ ticket.token }}", kind="some_timer")[0] == []
    templating.register_kind("strict_timer", {"sla": {"due": "tomorrow"}})
    [problem], _ = problems_for(tmp_path, "{{ sla.due }}\n{{ sla.target }}", kind="strict_timer")
    assert problem.line == 2 and "target" in problem.message


def test_every_kind_must_exist_in_english(tmp_path):
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "acknowledgment.j2").write_text("{% block text %}x{% endblock %}")
    problems = Templates([tmp_path]).check()
    assert {p.file for p in problems} == {f"en/{k}.j2" for k in KINDS if k != "acknowledgment"}
    with pytest.raises(ConfigError, match="every kind needs an English template"):
        templating.load([tmp_path])


def test_templates_check_command_and_start_report_file_and_line(make_config, tmp_path, daemon_factory):
    config = make_config()
    (tmp_path / "templates" / "fr").mkdir(parents=True)
    bad = tmp_path / "templates" / "fr" / "resolved.j2"
    bad.write_text("{% block text %}\nBonjour {{ customer.nom }}\n{% endblock %}\n")
    result = mailgate(config, "templates", "check")
    assert result.returncode == 1
    assert f"{bad}:2: UndefinedError".encode() in result.stdout
    started = mailgate(config, "serve", timeout=60)
    assert started.returncode == 78
    assert f"{bad}:2".encode() in started.stderr
    bad.write_text("{% block text %}\nBonjour {{ customer.name }}\n{% endblock %}\n")
    ok = mailgate(config, "templates", "check")
    assert ok.returncode == 0 and b"0 problem(s)" in ok.stdout


def test_a_missing_configured_template_dir_is_a_config_error(make_config):
    config = make_config(templates={"dir": "nowhere"})
    result = mailgate(config, "templates", "check")
    assert result.returncode == 78 and b"templates.dir" in result.stderr
