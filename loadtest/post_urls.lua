-- wrk script: POST {"url": ...} to the target, cycling through the URLs in
-- the file named by $URLS (one per line).
-- Usage: URLS=urls.txt wrk -s loadtest/post_urls.lua http://127.0.0.1:8080/analyze
local urls = {}
for line in io.lines(os.getenv("URLS")) do
  if line ~= "" then urls[#urls + 1] = line end
end
assert(#urls > 0, "no URLs in $URLS")
local i = 0
request = function()
  i = i % #urls + 1
  local body = '{"url":"' .. urls[i] .. '","include_links":false,"include_images":false}'
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
