"""One escaping helper per medium, for values that come from data (cell values, column names,
file names, batch ids, model names) and reach a terminal, a markdown artifact or an HTML page.

- :func:`terminal`: a Rich :class:`~rich.text.Text` (never read as Rich markup or emoji
  codes), with control characters shown as ``\\x1b``-style escapes so a value cannot move the
  cursor, recolour the terminal or open a hyperlink.
- :func:`markdown`: inline markdown text that renders as the value itself: HTML is escaped,
  markdown punctuation is backslash-escaped (so a backtick cannot close a code span around it and
  a ``|`` cannot split a table cell), and line breaks become spaces. Use it instead of wrapping a
  value in backticks: backslash escapes do not work inside a code span.
- :func:`html`: text content or a quoted attribute value of an HTML page.

Anything interpolated into one of these media goes through its helper, and only through it.
"""
from __future__ import annotations

import html as _html
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.text import Text

# C0 controls (but tab and newline), DEL, and the C1 controls, which terminals also obey
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# ASCII punctuation that CommonMark/GFM can read as syntax; any of it may be backslash-escaped
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~])")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _visible_control(match: re.Match) -> str:
    return f"\\x{ord(match.group()):02x}"


def terminal(value: Any, style: str = "") -> "Text":
    """``value`` as Rich text that prints exactly as its characters.

    Parameters
    ----------
    value : Any
        Converted with ``str``.
    style : str, optional
        A Rich style for the whole text (from code, never from data).

    Returns
    -------
    rich.text.Text
        Printable in a table cell, a title or on its own; markup such as ``[/]`` or
        ``[link=...]`` and emoji codes such as ``:warning:`` stay literal, and control
        characters (ESC, BEL, CR, ...) appear as ``\\x1b``, ``\\x07``, ``\\x0d``.
    """
    from rich.text import Text

    return Text(_CONTROL.sub(_visible_control, _text(value)), style=style)


def markdown(value: Any) -> str:
    """``value`` as inline markdown that renders as the value itself.

    Parameters
    ----------
    value : Any
        Converted with ``str``.

    Returns
    -------
    str
        ``&``, ``<``, ``>`` and quotes as HTML entities, markdown punctuation backslash-escaped,
        line breaks as one space: safe in a heading, a paragraph or a table cell, not inside a
        code span.
    """
    text = _CONTROL.sub(_visible_control, _LINE_BREAKS.sub(" ", _text(value)))
    escaped = _MARKDOWN_PUNCTUATION.sub(r"\\\1", text)
    # after the backslashes: '&' is not markdown punctuation, and '<'/'>' became '\<' '\>'
    return escaped.replace("&", "&amp;").replace("\\<", "&lt;").replace("\\>", "&gt;").replace('"', "&quot;")


def html(value: Any) -> str:
    """``value`` as HTML text content or a quoted attribute value (``&<>"'`` as entities)."""
    return _html.escape(_text(value), quote=True)
