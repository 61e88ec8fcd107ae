#!/usr/bin/env python3
"""An independent count of links, headings and images in HTML pages, with
Python's standard html.parser (a different tokenizer from tl's), under the
conventions of DESIGN.md: `<a>` with an `href`; h1-h6; `<img>`; nothing
inside script, style, template, noscript, svg, math, iframe, textarea,
title, xmp, noembed or noframes (raw text or not rendered).

Usage: count_tags.py FILE...   prints one JSON object per file."""
import html.parser
import json
import sys

HIDDEN = {"script", "style", "template", "noscript", "svg", "math", "iframe",
          "textarea", "title", "xmp", "noembed", "noframes"}


class Counter(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.hidden = []  # stack of open hidden elements
        self.counts = {"links": 0, "images": 0, **{f"h{i}": 0 for i in range(1, 7)}}

    def handle_starttag(self, tag, attrs):
        if self.hidden:
            if tag == self.hidden[-1] and tag in ("svg", "math"):
                self.hidden.append(tag)  # nested svg/math
            return
        if tag in HIDDEN:
            self.hidden.append(tag)
            if tag in ("script", "style", "textarea", "title", "xmp", "iframe", "noembed", "noframes",
                       "noscript", "template"):
                # html.parser only treats script/style as CDATA; make the
                # rest raw text too, as the HTML standard's tokenizer does.
                self.set_cdata_mode(tag)
            return
        if tag == "a" and any(name == "href" for name, _ in attrs):
            self.counts["links"] += 1
        elif tag == "img":
            self.counts["images"] += 1
        elif tag in self.counts:
            self.counts[tag] += 1

    def handle_startendtag(self, tag, attrs):
        if tag in ("svg", "math") and not self.hidden:
            return  # <svg/> is empty
        self.handle_starttag(tag, attrs)
        if self.hidden and tag == self.hidden[-1] and tag in ("svg", "math"):
            self.hidden.pop()

    def handle_endtag(self, tag):
        if self.hidden and tag == self.hidden[-1]:
            self.hidden.pop()


for path in sys.argv[1:]:
    raw = open(path, "rb").read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("windows-1252", errors="replace")
    c = Counter()
    c.feed(text)
    c.close()
    print(json.dumps({"file": path, **c.counts}))
