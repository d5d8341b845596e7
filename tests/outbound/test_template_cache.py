"""Compiled templates are kept in ``[mailgate] cache_dir`` between starts, one folder per environment."""

from __future__ import annotations

from mailgate.outbound import templating
from mailgate.outbound.templating import Templates

HOSTILE = '<script>alert("x")</script>'
SOURCE = (
    "{% block subject %}Ticket {{ ticket.number }}{% endblock %}"
    "{% block text %}Dear {{ ticket.subject }}{% endblock %}"
    "{% block html %}<p>Dear {{ ticket.subject }}</p>{% endblock %}"
)


def _render(directory, cache):
    context = templating.sample_context()
    context["ticket"] = {**context["ticket"], "subject": HOSTILE}
    return Templates([directory, templating.SHIPPED_DIR], cache).render("resolved", "en", context)


def test_a_second_start_renders_from_the_cache_exactly_what_the_first_compiled(tmp_path):
    override, cache = tmp_path / "templates", tmp_path / "cache"
    (override / "en").mkdir(parents=True)
    (override / "en" / "resolved.j2").write_text(SOURCE)

    first = _render(override, cache)
    assert list((cache / "templates" / "text").iterdir()) and list((cache / "templates" / "html").iterdir())
    again = _render(override, cache)

    assert again == first
    assert HOSTILE in again.text  # the text part is not HTML: nothing to escape
    assert HOSTILE not in again.html and "&lt;script&gt;" in again.html  # the HTML environment's code escapes


def test_an_edited_template_is_compiled_anew(tmp_path):
    override, cache = tmp_path / "templates", tmp_path / "cache"
    (override / "en").mkdir(parents=True)
    path = override / "en" / "resolved.j2"
    path.write_text(SOURCE)
    _render(override, cache)
    path.write_text(SOURCE.replace("Dear", "Hello"))
    assert _render(override, cache).text.startswith("Hello ")


def test_every_shipped_template_checks_the_same_from_the_cache(tmp_path):
    from mailgate.outbound.plugin import import_kind_registrations

    import_kind_registrations()  # the kinds the plugins declare, as serve knows them before its check
    cache = tmp_path / "cache"
    assert Templates([templating.SHIPPED_DIR], cache).check() == []
    assert Templates([templating.SHIPPED_DIR], cache).check() == []
    assert len(list((cache / "templates" / "text").iterdir())) >= len(Templates([templating.SHIPPED_DIR]).files())


def test_a_template_is_chosen_once_per_snapshot_for_each_kind_locale_and_queue(tmp_path, monkeypatch):
    """Choosing tries every missing candidate; the choice cannot change until a reload builds a new snapshot."""
    override = tmp_path / "templates"
    (override / "queues" / "billing" / "en").mkdir(parents=True)
    (override / "queues" / "billing" / "en" / "resolved.j2").write_text(SOURCE.replace("Dear", "Billing:"))
    templates = Templates([override, templating.SHIPPED_DIR])
    chosen: list[list[str]] = []
    select = templates.text_env.select_template
    monkeypatch.setattr(templates.text_env, "select_template", lambda names: chosen.append(names) or select(names))
    context = templating.sample_context()

    first = [templates.render("resolved", "en", context, queue=q) for q in ("", "billing", "", "billing")]

    assert len(chosen) == 2, "one choice for each (kind, locale, queue)"
    assert first[0] == first[2] and first[1] == first[3]
    assert "Billing:" in first[1].text and "<p>Billing:" in first[1].html and "Billing:" not in first[0].text
