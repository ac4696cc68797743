//! The remote cache tier against an S3 server on loopback (moto's `moto_server`, which
//! `.ci/run` installs from PyPI). Without one, the test says so on stderr and returns.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{Dir, events, output_digests, stderr, stdout, with_event};

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skip_loudly(why: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "\n*** REMOTE CACHE TEST SKIPPED: {why}. Install an S3 server with `pip install 'moto[server]'` (what .ci/run does) or name one in CEDM_TEST_MOTO. ***\n"
    );
}

/// Start moto on a free loopback port.
fn start() -> Result<Server, String> {
    let exe = std::env::var("CEDM_TEST_MOTO").unwrap_or_else(|_| "moto_server".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {exe}: {e}"))?;
    let server = Server { child, port };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t0.elapsed() > Duration::from_secs(60) {
            return Err(format!("{exe} did not listen on port {port} within 60 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(server)
}

/// An HTTP request with a made-up SigV4 header (moto does not check signatures, but refuses
/// anonymous object writes); the status code.
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n\
         x-amz-date: 20260101T000000Z\r\nx-amz-content-sha256: UNSIGNED-PAYLOAD\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn sweep() -> &'static str {
    "name: rem
sweep:
  C: [2, 3]
nodes:
  base: {kind: toy/value, params: {value: 1}}
  scaled: {kind: toy/add, inputs: {a: base}, params: {k: \"${C}\"}}
  total: {kind: toy/add, inputs: {a: scaled, b: base}}
"
}

#[test]
fn push_pull_and_a_corrupted_remote_object() {
    let server = match start() {
        Ok(s) => s,
        Err(why) => return skip_loudly(&why),
    };
    let port = server.port;
    assert_eq!(http(port, "PUT", "/cedm", b""), 200, "creating the bucket");
    let remote = "s3://cedm/team";
    let with_s3 = |d: &Dir, args: &[&str]| {
        d.cedm()
            .env("CEDM_REMOTE", remote)
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .args(args)
            .output()
            .unwrap()
    };

    // A laptop computes and pushes.
    let a = Dir::new();
    a.write("exp.yaml", sweep());
    assert!(a.run(&["run", "exp.yaml"]).status.success());
    let o = with_s3(&a, &["cache", "push", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pushed 5 records"), "{}", stdout(&o));
    // Pushing again sends nothing; concurrent pushers write the same objects.
    let o = with_s3(&a, &["cache", "push"]);
    assert!(
        stdout(&o).contains("pushed 0 records") && stdout(&o).contains("5 already there"),
        "{}",
        stdout(&o)
    );

    // A cluster pulls what the experiment needs: every node is then a cache hit, same bytes.
    let b = Dir::new();
    b.write("exp.yaml", sweep());
    let o = with_s3(&b, &["cache", "pull", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("pulled 5 records"), "{}", stdout(&o));
    let o = b.run(&["run", "exp.yaml", "--json"]);
    assert!(
        with_event(&events(&o), "started").is_empty(),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        output_digests(&b, "exp.yaml"),
        output_digests(&a, "exp.yaml")
    );
    assert!(b.run(&["cache", "verify"]).status.success());

    // A corrupted remote object is refused: its record is not written, the node reruns.
    let ls = a.run(&["cache", "ls", "exp.yaml", "--json"]);
    let recs: Vec<serde_json::Value> = serde_json::from_str(&stdout(&ls)).unwrap();
    let total = recs
        .iter()
        .find(|r| r["meta"]["instance"] == "total[C=3]")
        .expect("total[C=3]");
    let hex = total["outputs"]["value.txt"]["digest"].as_str().unwrap();
    let path = format!("/cedm/team/objects/{}/{hex}", &hex[..2]);
    assert_eq!(http(port, "PUT", &path, b"666\n"), 200);
    let c = Dir::new();
    c.write("exp.yaml", sweep());
    let o = with_s3(&c, &["run", "exp.yaml", "--pull", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("does not match its digest"), "{out}");
    assert_eq!(with_event(&events(&o), "started"), ["total[C=3]"], "{out}");
    assert_eq!(
        output_digests(&c, "exp.yaml"),
        output_digests(&a, "exp.yaml")
    );
    drop(server);
}
