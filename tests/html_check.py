"""Reads an HTML document with Python's own parser (html.parser) and says, as JSON, whether its
tags nest (every element but the void ones closed, in order), which tags it has, its doctype,
the charset it declares, and its text as a reader sees it (entities resolved). Used by
tests/tests/weekly_report.rs: the weekly report's HTML read by a parser that is not ours."""

import json
import sys
from html.parser import HTMLParser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Check(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack = []
        self.problems = []
        self.tags = {}
        self.text = []
        self.doctype = None
        self.charset = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag == "meta":
            for name, value in attrs:
                if name == "charset":
                    self.charset = value
        if tag not in VOID:
            self.stack.append((tag, self.getpos()))

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] = self.tags.get(tag, 0) + 1
        if tag not in VOID:
            self.problems.append("<%s/> at %s is not a void element" % (tag, self.getpos()))

    def handle_endtag(self, tag):
        if not self.stack:
            self.problems.append("</%s> at %s closes nothing" % (tag, self.getpos()))
            return
        open_tag, at = self.stack[-1]
        if open_tag != tag:
            self.problems.append("</%s> at %s closes <%s> of %s" % (tag, self.getpos(), open_tag, at))
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def main():
    with open(sys.argv[1], "rb") as source:
        document = source.read().decode("utf-8")
    check = Check()
    check.feed(document)
    check.close()
    print(json.dumps({
        "doctype": check.doctype,
        "charset": check.charset,
        "problems": check.problems,
        "unclosed": ["<%s> of %s" % (tag, at) for tag, at in check.stack],
        "tags": check.tags,
        "text": "".join(check.text),
    }, ensure_ascii=False))


if __name__ == "__main__":
    main()
