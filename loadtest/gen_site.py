#!/usr/bin/env python3
"""Writes a generated site of N pages into DIR for the crawl benchmark.

Usage: gen_site.py DIR N [WORDS]

index.html links to /p/1.../p/10; page i links to its ten children
(10i+1...10i+10, a tree five clicks deep for 20,000 pages), its parent, the
next page, and three pages picked at random (seeded: every run writes the
same site). Each page has its own title and description and WORDS words of
text (default 1,500, ~10 KB). Deterministic; writes only inside DIR.
"""
import os
import random
import sys

out, n = sys.argv[1], int(sys.argv[2])
words = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
rng = random.Random(42)
vocab = ("crawl page site link index search engine title meta description canonical sitemap robots "
         "audit content heading paragraph anchor image table list number letter word text server "
         "request response header status redirect cache fetch parse analyse report issue check").split()
os.makedirs(os.path.join(out, "p"), exist_ok=True)


def page(i, links):
    text = " ".join(rng.choice(vocab) for _ in range(words))
    anchors = "".join(f'<li><a href="{href}">Page {label}</a></li>' for href, label in links)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Benchmark page {i} of the '
            f'generated site</title><meta name="description" content="Page {i} of {n}: generated text and '
            f'links for the crawl benchmark of pagelens."><meta name="viewport" content="width=device-width">'
            f'</head><body><h1>Page {i}</h1><p>{text}</p><ul>{anchors}</ul></body></html>')


def href(j):
    return ("/", "home") if j == 0 else (f"/p/{j}.html", str(j))


for i in range(n):
    children = [href(c) for c in range(10 * i + 1, min(10 * i + 11, n))]
    extra = [href(i // 10), href((i + 1) % n)] + [href(rng.randrange(n)) for _ in range(3)]
    path = os.path.join(out, "index.html") if i == 0 else os.path.join(out, "p", f"{i}.html")
    with open(path, "w") as f:
        f.write(page(i, children + extra))
