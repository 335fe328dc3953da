"""A page as the standard library's HTML parser reads it: elements, attributes and text.

Tests check the document a parser builds, not substrings of the renderer's output.
"""

from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """The elements (tag, attributes, text inside) and the whole text of a page."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        # The page's title is the first; the others are the SVG bars' tooltips.
        self._in_title = tag == "title" and len(self.tags("title")) == 1

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_title:
            self.title += data

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attributes for tag, attributes in self.elements if tag == name]

    @property
    def all_text(self) -> str:
        return "".join(self.text)
