//! Real third-party clients: Python's http.client and curl.

use std::process::Command;

use crate::util::{config, start};

#[test]
fn python_http_client_keeps_alive_and_reads_every_answer() {
    let server = start(config());
    let script = r#"
import http.client, json, sys
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
sock = None
for _ in range(5):
    conn.request("GET", "/livez")
    r = conn.getresponse()
    assert (r.status, r.read()) == (200, b"ok")
    sock = sock or conn.sock
    assert conn.sock is sock, "connection was not reused"
conn.request("HEAD", "/health")
r = conn.getresponse()
assert r.status == 200 and r.read() == b"" and int(r.getheader("Content-Length")) > 0
conn.request("POST", "/livez", body=b"{}")
r = conn.getresponse()
assert r.status == 405 and r.getheader("Allow") == "GET, HEAD"
assert json.loads(r.read())["code"] == "method-not-allowed"
conn.request("POST", "/echo", body=b"x" * 5000, headers={"Content-Type": "text/plain"})
r = conn.getresponse()
assert (r.status, r.read()) == (200, b"x" * 5000)
conn.request("POST", "/echo", body=iter([b"abc", b"def"]), encode_chunked=True)
r = conn.getresponse()
assert (r.status, r.read()) == (200, b"abcdef")
assert conn.sock is sock
print("PASS")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &server.local_addr().port().to_string()])
        .output()
        .expect("python3 is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("PASS"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn curl_reuses_the_connection_and_gets_problem_json() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("curl not installed; skipping the curl test");
        return;
    }
    let server = start(config());
    let base = format!("http://{}", server.local_addr());
    let out = Command::new("curl")
        .args(["-sv", "--max-time", "10", &format!("{base}/livez"), &format!("{base}/nope")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("ok{"), "{stdout}");
    assert!(stdout.contains("\"code\":\"not-found\""), "{stdout}");
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    assert!(stderr.contains("application/problem+json"), "{stderr}");
}
