"""Reading report.html in tests: its tables, row attributes and links (stdlib html.parser)."""
from html.parser import HTMLParser


class Page(HTMLParser):
    """Tables of a report: {table id: [[cell text, ...] per body row]}, row attributes and
    every img src / a href."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.row_attrs, self.links = {}, {}, []
        self._table = self._row = self._cell = None
        self._in_body = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table], self.row_attrs[self._table] = [], []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
            self.row_attrs[self._table].append(a)
        elif tag == "td" and self._row is not None:
            self._cell = ""
        elif tag == "img":
            self.links.append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(folder):
    page = Page((folder / "report.html").read_text())
    for link in page.links:  # relative links only (no server, no internet), all resolving
        assert "://" not in link and (folder / link).is_file(), link
    return page
