//! A tiny HTTP server for tests to stand in for the outside world (a price URL, a webhook receiver):
//! answers each request with what `respond` says and keeps every request's body.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Respond = dyn Fn(usize, &str) -> (u16, String) + Send + Sync;

#[derive(Clone)]
pub struct Stub {
    pub url: String,
    /// Bodies of the requests received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    /// `respond(n, body)` answers the n-th request (from 0).
    pub async fn start(respond: impl Fn(usize, &str) -> (u16, String) + Send + Sync + 'static) -> Stub {
        let respond: Arc<Respond> = Arc::new(respond);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                let (respond, seen) = (respond.clone(), seen.clone());
                tokio::spawn(async move {
                    let Some((_, body)) = read_message(&mut socket).await else { return };
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(body.clone());
                        seen.len() - 1
                    };
                    let (status, reply) = respond(n, &body);
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        Stub { url, requests }
    }

    pub fn bodies(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1.1 message, a request or an answer, whose body has a `Content-Length`: its head
/// and its body. `None` if the peer closed the connection before the end of the head.
pub async fn read_message(socket: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = socket.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)))
                .unwrap_or(0);
            while data.len() < end + 4 + length {
                let n = socket.read(&mut buf).await.ok()?;
                if n == 0 {
                    break;
                }
                data.extend_from_slice(&buf[..n]);
            }
            return Some((head, String::from_utf8_lossy(&data[end + 4..]).into_owned()));
        }
    }
}
