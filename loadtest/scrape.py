#!/usr/bin/env python3
"""Scrapes http://127.0.0.1:PORT/metrics every INTERVAL seconds over one
kept-alive connection until killed (a scraper that costs the client core
little, unlike a curl process per scrape). Usage: scrape.py PORT [INTERVAL]"""
import http.client
import sys
import time

port = int(sys.argv[1])
interval = float(sys.argv[2]) if len(sys.argv) > 2 else 0.1
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
while True:
    conn.request("GET", "/metrics")
    conn.getresponse().read()
    time.sleep(interval)
