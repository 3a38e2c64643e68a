"""Two fixes for the HTML book's pages, found by tests/book/test_browser.py (a clean browser console).

1. Each page carried the inline scripts of sphinx-thebe and sphinx-togglebutton twice. With
   Sphinx 7.4 an inline script that an extension adds once the builder exists is registered
   both as ``_JavaScript(None, body=...)`` and ``_JavaScript('', body=...)``, which Sphinx's own
   de-duplication sees as different, so the browser reported
   ``Uncaught SyntaxError: Identifier 'THEBE_JS_URL' has already been declared``. Here every
   page keeps the first of scripts with the same file and attributes.
2. pydata-sphinx-theme (under sphinx-book-theme) starts from ``default_mode = ""``, which its
   JavaScript rejects with ``console.error("Got invalid theme mode: . Resetting to auto.")``
   in a browser that never chose a mode. ``auto`` (follow the system's light/dark setting) is
   what it resets to anyway; it is an ``html_context`` entry, which jupyter-book 1.x fills itself.

Loaded through ``sphinx.local_extensions`` in ``_config.yml``.
"""
from __future__ import annotations


def _set_default_mode(app, config) -> None:
    # pydata-sphinx-theme reads the mode from the template context, not from the theme options
    context = dict(config.html_context or {})
    context.setdefault("default_mode", "auto")
    config.html_context = context


def _drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        attributes = getattr(js, "attributes", {})
        key = (str(getattr(js, "filename", js) or ""), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("config-inited", _set_default_mode)
    app.connect("html-page-context", _drop_repeated_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
