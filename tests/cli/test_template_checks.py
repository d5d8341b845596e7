"""Every template is compiled and test-rendered by `serve` (at start and at each reload), by
`templates check` and by `doctor`; a command that only reads does not pay for it (1-3 s of CPU)."""

from __future__ import annotations

from mailgate.app import build
from mailgate.config import load_config
from tests.helpers import mailgate

BROKEN = "{% block subject %}{{ ticket.number {% endblock %}"


def _broken_templates(make_config, tmp_path):
    override = tmp_path / "templates" / "en"
    override.mkdir(parents=True)
    (override / "acknowledgment.j2").write_text(BROKEN)
    return make_config(templates={"dir": str(tmp_path / "templates")})


def test_serve_refuses_broken_templates_but_a_read_only_command_still_answers(make_config, tmp_path):
    config = _broken_templates(make_config, tmp_path)
    assert mailgate(config, "db", "upgrade").returncode == 0

    served = mailgate(config, "serve", timeout=60)
    assert served.returncode == 78 and b"acknowledgment.j2" in served.stderr

    listed = mailgate(config, "tickets", "list")
    assert listed.returncode == 0, listed.stderr
    assert b"(none)" in listed.stdout
    checked = mailgate(config, "templates", "check")
    assert checked.returncode == 1 and b"acknowledgment.j2" in checked.stdout + checked.stderr


def test_a_runtime_built_without_the_check_still_renders_what_it_is_asked(make_config, tmp_path):
    runtime = build(load_config(make_config()), check_templates=False)
    try:
        from mailgate.outbound import templating

        rendered = runtime.services.outbound.templates.render("resolved", "en", templating.sample_context())
        assert "42" in rendered.subject + rendered.text
    finally:
        runtime.close()
