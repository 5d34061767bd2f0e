//! A raw HTTP/1.1 client for the emulator's tests: std TcpStream, signed Latch requests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockserver_emulator::sign;

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn error_code(&self) -> Option<i64> {
        self.json()["error"]["code"].as_i64()
    }
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A keep-alive connection.
pub struct Conn {
    pub r: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        Conn { r: BufReader::new(s) }
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        self.r.get_mut()
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream().write_all(bytes).expect("write");
    }

    /// Reads one response (Content-Length or chunked body). None on EOF before a status line.
    pub fn read_response(&mut self) -> Option<Response> {
        let mut line = String::new();
        if self.r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let status: u16 = line.split(' ').nth(1)?.parse().ok()?;
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.r.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 204 || status == 100 {
            return Some(resp);
        }
        if resp.header("transfer-encoding").is_some() {
            loop {
                let mut sz = String::new();
                self.r.read_line(&mut sz).ok()?;
                let n = usize::from_str_radix(sz.trim(), 16).ok()?;
                let mut chunk = vec![0; n + 2];
                self.r.read_exact(&mut chunk).ok()?;
                if n == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..n]);
            }
        } else {
            let n: usize = resp.header("content-length")?.parse().ok()?;
            resp.body.resize(n, 0);
            self.r.read_exact(&mut resp.body).ok()?;
        }
        Some(resp)
    }

    pub fn request(&mut self, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes);
        self.read_response().expect("response")
    }

    /// A signed Latch request with form params.
    pub fn latch(&mut self, app: (&str, &str), method: &str, path: &str, params: &[(&str, &str)]) -> Response {
        self.latch_at(app, method, path, params, &sign::format_date(now_secs()))
    }

    pub fn latch_at(
        &mut self,
        app: (&str, &str),
        method: &str,
        path: &str,
        params: &[(&str, &str)],
        date: &str,
    ) -> Response {
        let body = sign::serialize_params(params);
        let sts = sign::string_to_sign(method, date, "", path, &body);
        let auth = sign::authorization_header(app.0, app.1, &sts);
        let mut headers = vec![("Authorization", auth.as_str()), ("X-11Paths-Date", date)];
        if !params.is_empty() {
            headers.push(("Content-Type", "application/x-www-form-urlencoded"));
        }
        self.request(method, path, &headers, body.as_bytes())
    }

    pub fn control(&mut self, method: &str, path: &str, json: serde_json::Value) -> Response {
        let body = if json.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(&json).expect("json")
        };
        self.request(method, path, &[("Content-Type", "application/json")], &body)
    }
}
