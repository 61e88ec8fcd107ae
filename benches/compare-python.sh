#!/usr/bin/env bash
# SEO engine vs the Python reference (BeautifulSoup + lxml) on the same
# corpus, in the same run, one core each. Reads ../shared (absent in a
# user's clone: the script says so and stops).
set -euo pipefail
cd "$(dirname "$0")/.."
REF=../shared/reference/seo_ref.py
CORPUS=${PAGELENS_CORPUS:-../shared/corpus/pages}
if [ ! -f "$REF" ] || [ ! -d "$CORPUS" ]; then
  echo "needs $REF and $CORPUS (../shared beside the checkout)"; exit 0
fi
python3 -c 'import bs4, lxml' 2>/dev/null || pip install -q beautifulsoup4 lxml
py=$(taskset -c 1 python3 "$REF" --bench "$CORPUS" | tail -1)
rs=$(PAGELENS_CORPUS=$CORPUS taskset -c 1 cargo bench --quiet --bench seo 2>/dev/null)
echo "$rs"
echo "python reference: $py"
python3 - "$py" "$rs" <<'PY'
import json, re, sys
py = json.loads(sys.argv[1])
full = re.search(r"pagelens analyze \(full\)\s+(\d+) pages/s\s+([\d.]+) MB/s", sys.argv[2])
print(f"pagelens / python: {int(full.group(1)) / py['pages_per_s']:.0f}x pages/s, "
      f"{float(full.group(2)) / py['mb_per_s']:.0f}x MB/s")
PY
