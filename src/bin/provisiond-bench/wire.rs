//! A minimal HTTP/1.1 keep-alive client and sink, so the load generator and
//! the sink cost as little CPU as possible and the server gets the machine
//! (what wrk does for a benchmark, in-process).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Instant,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// One keep-alive connection posting JSON bodies.
pub struct Conn {
    stream: TcpStream,
    host: String,
    path: String,
    token: String,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(address: &str, path: &str, token: &str) -> std::io::Result<Self> {
        let host = address.trim_start_matches("http://").to_owned();
        let stream = TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream, host, path: path.to_owned(), token: token.to_owned(), buf: Vec::with_capacity(4096) })
    }

    /// POSTs `body`; returns the response status.
    pub async fn post(&mut self, body: &str) -> std::io::Result<u16> {
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            self.path,
            self.host,
            self.token,
            body.len(),
            body
        );
        self.stream.write_all(request.as_bytes()).await?;
        read_response(&mut self.stream, &mut self.buf).await
    }
}

/// Reads one response (status line, headers, Content-Length body).
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length = content_length(head);
            let total = end + 4 + length;
            while buf.len() < total {
                read_more(stream, buf).await?;
            }
            buf.drain(..total);
            return Ok(status);
        }
        read_more(stream, buf).await?;
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok()).flatten()
        })
        .unwrap_or(0)
}

/// What the sink saw: the first arrival time of each event number.
pub struct Arrivals {
    pub at: Mutex<Vec<Option<Instant>>>,
    pub total: AtomicUsize,
    pub duplicates: AtomicUsize,
    /// When each request for the rate-limited handler (`/limited`) arrived.
    pub limited: Mutex<Vec<Instant>>,
    /// While true the sink keeps `/hook` requests waiting for their answer,
    /// as an endpoint that has stopped answering would.
    held: tokio::sync::watch::Sender<bool>,
}

impl Arrivals {
    pub fn new(n: usize, held: bool) -> Self {
        Self {
            at: Mutex::new(vec![None; n]),
            total: AtomicUsize::new(0),
            duplicates: AtomicUsize::new(0),
            limited: Mutex::new(Vec::new()),
            held: tokio::sync::watch::Sender::new(held),
        }
    }

    /// The sink answers again, the requests it held first.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    async fn answerable(&self) {
        let _ = self.held.subscribe().wait_for(|held| !held).await;
    }

    fn record(&self, body: &[u8]) {
        let now = Instant::now();
        let Some(n) = event_number(body) else { return };
        let mut at = self.at.lock().unwrap();
        match at.get_mut(n) {
            Some(slot @ None) => {
                *slot = Some(now);
                self.total.fetch_add(1, Ordering::Relaxed);
            }
            Some(Some(_)) => {
                self.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            None => {}
        }
    }
}

/// `"n":123` in a body.
fn event_number(body: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("\"n\":")? + 4..];
    rest[..rest.find(|c: char| !c.is_ascii_digit())?].parse().ok()
}

/// A sink on 127.0.0.1 that answers every request `204 No Content`, at once
/// unless held, and records the event numbers of `/hook` bodies when they
/// arrive (and when `/limited` requests do). Returns its address.
pub async fn start_sink(arrivals: Arc<Arrivals>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let arrivals = arrivals.clone();
            tokio::spawn(async move {
                let _ = serve(stream, arrivals).await;
            });
        }
    });
    address
}

async fn serve(mut stream: TcpStream, arrivals: Arc<Arrivals>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(8192);
    loop {
        let end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end;
            }
            read_more(&mut stream, &mut buf).await?;
        };
        let head = std::str::from_utf8(&buf[..end]).unwrap_or("").to_owned();
        let total = end + 4 + content_length(&head);
        while buf.len() < total {
            read_more(&mut stream, &mut buf).await?;
        }
        if head.contains(" /hook ") {
            arrivals.record(&buf[end + 4..total]);
            arrivals.answerable().await;
        } else if head.contains(" /limited ") {
            arrivals.limited.lock().unwrap().push(Instant::now());
        }
        buf.drain(..total);
        stream.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await?;
    }
}
