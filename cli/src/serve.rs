//! `--serve ADDR`: the latest reading in Prometheus text format on `/metrics`, from a plain
//! `std::net::TcpListener` on one thread (a scrape every few seconds needs no HTTP framework).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Fail;

pub struct MetricsServer {
    addr: SocketAddr,
    body: Arc<Mutex<String>>,
}

impl MetricsServer {
    /// Binds at once (so a bad or busy address fails before monitoring starts) and serves on a thread.
    pub fn start(addr: &str) -> Result<Self, Fail> {
        let listener =
            TcpListener::bind(addr).map_err(|e| Fail::new(format!("--serve: cannot listen on '{addr}': {e}")))?;
        let local = listener.local_addr().map_err(|e| Fail::new(format!("--serve: {e}")))?;
        let body = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&body);
        std::thread::Builder::new()
            .name("memwarden-metrics".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let _ = answer(stream, &shared);
                }
            })
            .map_err(|e| Fail::new(format!("--serve: cannot start the server thread: {e}")))?;
        Ok(MetricsServer { addr: local, body })
    }

    /// The address actually bound (port 0 becomes the port chosen by the system).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn publish(&self, text: String) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }
}

fn answer(stream: TcpStream, body: &Mutex<String>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Drain the headers; the request has no body we care about.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let (status, ctype, text) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            body.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        ),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "memwarden serves /metrics only\n".to_owned()),
        _ => ("405 Method Not Allowed", "text/plain", "GET /metrics\n".to_owned()),
    };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        text.len()
    )?;
    if method != "HEAD" {
        out.write_all(text.as_bytes())?;
    }
    out.flush()
}
