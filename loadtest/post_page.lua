-- wrk script: POST the file named by $PAGE as text/html.
-- Usage: PAGE=page.html wrk -s loadtest/post_page.lua URL
local f = assert(io.open(os.getenv("PAGE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "text/html"
