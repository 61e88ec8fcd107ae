-- wrk script: POST {"url": ...} to the target, cycling through the URLs in
-- the file named by $URLS (one per line); links and images are left out of
-- the answer unless $INCLUDE_LINKS=1.
-- Usage: URLS=urls.txt wrk -s loadtest/post_urls.lua http://127.0.0.1:8080/analyze
local urls = {}
for line in io.lines(os.getenv("URLS")) do
  if line ~= "" then urls[#urls + 1] = line end
end
assert(#urls > 0, "no URLs in $URLS")
local include = os.getenv("INCLUDE_LINKS") == "1" and "true" or "false"
local i = 0
request = function()
  i = i % #urls + 1
  local body = '{"url":"' .. urls[i] .. '","include_links":' .. include .. ',"include_images":false}'
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
