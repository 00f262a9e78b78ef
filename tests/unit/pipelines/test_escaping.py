"""pipelines.escaping: each helper leaves a value from data as its literal text in its medium."""
import io
import re
from html import unescape

import pytest
from markdown_it import MarkdownIt
from rich.console import Console

from pipelines.escaping import html, markdown, terminal

HOSTILE = [
    "[/]",
    "[link=https://evil.example]click[/link]",
    "[bold red]x",
    ":warning: ok",
    "a`<img src=x onerror=alert(1)>`b",
    "pipe | star * under_score # hash",
    "back\\slash\\",
    "<script>alert('x')</script> & \"q\"",
]


def printed(renderable, terminal_codes: bool = True) -> str:
    console = Console(file=io.StringIO(), force_terminal=terminal_codes, color_system="truecolor" if terminal_codes else None, width=200)
    console.print(renderable)
    return console.file.getvalue()


@pytest.mark.parametrize("value", HOSTILE)
def test_terminal_text_prints_as_itself(value):
    assert printed(terminal(value), terminal_codes=False).rstrip("\n") == value


def test_terminal_text_opens_no_hyperlink_and_passes_no_escape_sequence():
    out = printed(terminal("[link=https://evil.example]click[/link] \x1b]8;;https://evil.example\x07x\x1b[31mred\rback"))
    assert "\x1b]8;" not in out  # OSC 8: a terminal hyperlink
    assert "\x1b[31m" not in out and "\r" not in out and "\x07" not in out
    assert "\\x1b]8;;https://evil.example\\x07" in out and "\\x0d" in out  # shown, not obeyed


def test_terminal_text_in_a_table_cell_and_title():
    from rich.table import Table

    table = Table(title=terminal("[/]x"))
    table.add_column("column")
    table.add_row(terminal("[/]"))
    out = printed(table, terminal_codes=False)
    assert out.splitlines()[0].strip() == "[/]x" and "│ [/]    │" in out


def render_markdown(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_renders_as_the_value_itself(value):
    rendered = render_markdown(f"# Ingest into {markdown(value)}\n\n| column | n |\n|---|---:|\n| {markdown(value)} | 1 |\n")
    assert "<img" not in rendered and "<script" not in rendered
    texts = [unescape(text) for _, text in re.findall(r"<(h1|td)[^>]*>(.*?)</\1>", rendered)]
    assert texts == [f"Ingest into {value}", value, "1"]  # literal text; a '|' in it added no cell


def test_markdown_line_breaks_stay_on_one_line():
    assert "\n" not in markdown("a\nb\r\nc") and render_markdown(markdown("a\n# b")).count("<h1>") == 0


def test_html_escapes_text_and_attribute_values():
    assert html("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"


def test_the_ingest_artifact_shows_a_hostile_column_name_as_text(lake, tmp_path):
    from pipelines.flows.ingest import summary_markdown

    column = "x`<img src=x onerror=alert(1)>`"
    source = tmp_path / "hostile.csv"
    source.write_text(f'amount,"{column}"\n' + "".join(f"{i}.5,{i}\n" for i in range(20)) + "1.5,oops\n")
    report = lake.ingest("hostile", source).to_dict()
    assert column in report["schema"]["columns"]  # the name reached the report as it is
    rendered = render_markdown(summary_markdown(report))
    assert "<img" not in rendered and "&lt;img src=x onerror=alert(1)&gt;" in rendered
