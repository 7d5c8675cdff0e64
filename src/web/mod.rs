//! The opt-in local web view (`[http] enabled = true`): a page with the live annotated picture,
//! the current state and stats; `/metrics` (Prometheus text format) and `/healthz`.
//!
//! | path | what |
//! |---|---|
//! | `/` | the page: the annotated frame, refreshed at most `http.max_fps` times a second, and the state |
//! | `/frame.jpg` | the latest annotated frame (JPEG, kept in memory only) |
//! | `/state.json` | faces in view with their emotions, and the counters |
//! | `/metrics` | Prometheus text format 0.0.4 |
//! | `/healthz` | `ok` while the frame worker is alive (no token needed: it tells nothing) |
//!
//! Privacy: off by default; nothing listens unless enabled. Frames are encoded only while someone
//! is looking (a `/frame.jpg` request in the last few seconds), at most `max_fps` times a second,
//! and held in memory, never written to disk. A listen address other than loopback needs a token
//! (`Authorization: Bearer TOKEN`, or `?token=TOKEN` in the page's address).
//!
//! A plain HTTP/1.1 server on std's `TcpListener`: one short-lived thread per connection, at
//! most [`MAX_CONNECTIONS`] at a time, `Connection: close`.

pub mod prom;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use image::RgbImage;

use crate::vision::annotate::{self, Annotation};

/// At most this many connections are served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 16;
/// Frames are encoded while a `/frame.jpg` request came within this many seconds.
const WATCH_WINDOW_MS: u64 = 5_000;

const PAGE: &str = include_str!("page.html");

/// What the server needs from the daemon.
pub struct Sources {
    pub view: Arc<LiveView>,
    /// The Prometheus exposition, rendered on request.
    pub metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// The current state and stats, as JSON.
    pub state: Box<dyn Fn() -> serde_json::Value + Send + Sync>,
    /// Whether the frame worker is alive (for `/healthz`).
    pub healthy: Box<dyn Fn() -> bool + Send + Sync>,
}

/// The latest annotated frame, encoded only while someone watches and at a capped rate.
pub struct LiveView {
    min_interval: Duration,
    jpeg_quality: u8,
    last_watch_ms: AtomicU64,
    last_encode: Mutex<Option<Instant>>,
    jpeg: Mutex<Option<Arc<Vec<u8>>>>,
    /// The state payload of the latest drawn frame (the faces shown).
    state: Mutex<Option<serde_json::Value>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl LiveView {
    pub fn new(max_fps: f32, jpeg_quality: u8) -> Self {
        LiveView {
            min_interval: Duration::from_secs_f32(1.0 / max_fps.max(0.01)),
            jpeg_quality: jpeg_quality.clamp(1, 100),
            last_watch_ms: AtomicU64::new(0),
            last_encode: Mutex::new(None),
            jpeg: Mutex::new(None),
            state: Mutex::new(None),
        }
    }

    /// True when a viewer is connected and the rate cap allows another frame now. The frame
    /// worker calls this before drawing, so an unwatched view costs one atomic load per frame.
    pub fn wants_frame(&self) -> bool {
        let watched =
            now_ms().saturating_sub(self.last_watch_ms.load(Ordering::Relaxed)) < WATCH_WINDOW_MS;
        if !watched {
            return false;
        }
        let last = self.last_encode.lock().unwrap_or_else(|e| e.into_inner());
        last.is_none_or(|t| t.elapsed() >= self.min_interval)
    }

    /// Draws the faces on a copy of `frame`, encodes it and makes it the latest frame, with
    /// `state` (what it shows) beside it.
    pub fn publish(
        &self,
        frame: &RgbImage,
        faces: &[Annotation],
        state: Option<serde_json::Value>,
    ) -> Result<()> {
        *self.last_encode.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let mut img = frame.clone();
        annotate::draw(&mut img, faces);
        let mut jpeg = Vec::with_capacity(64 * 1024);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, self.jpeg_quality)
            .encode_image(&img)
            .context("encoding the view's JPEG")?;
        *self.jpeg.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(jpeg));
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(())
    }

    /// The state shown with the latest frame (`null` before the first).
    pub fn state(&self) -> serde_json::Value {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.clone().unwrap_or(serde_json::Value::Null)
    }

    pub fn max_fps(&self) -> f64 {
        1.0 / self.min_interval.as_secs_f64()
    }

    fn latest(&self) -> Option<Arc<Vec<u8>>> {
        self.last_watch_ms.store(now_ms(), Ordering::Relaxed);
        self.jpeg.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A running server; dropping it does not stop it, [`Server::stop`] does.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Stops accepting and joins the accept thread (connections in flight finish on their own).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds `listen` and serves `sources` on a background thread. `token`, when set, is required
/// on every path but `/healthz`.
pub fn start(listen: &str, token: Option<String>, sources: Sources) -> Result<Server> {
    let listener =
        TcpListener::bind(listen).with_context(|| format!("http.listen: cannot bind {listen}"))?;
    let addr = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new((sources, token.filter(|t| !t.is_empty())));
    let active = Arc::new(AtomicUsize::new(0));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = conn else { continue };
                if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    continue; // dropped: closed
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (shared, active) = (shared.clone(), active.clone());
                let spawned =
                    std::thread::Builder::new()
                        .name("http-conn".into())
                        .spawn(move || {
                            if let Err(e) = handle(stream, &shared.0, shared.1.as_deref()) {
                                log::debug!("http: {e:#}");
                            }
                            active.fetch_sub(1, Ordering::SeqCst);
                        });
                if spawned.is_err() {
                    log::warn!("http: cannot start a connection thread");
                }
            }
        })
        .context("starting the http thread")?;
    log::info!("http: web view on http://{addr}/");
    Ok(Server {
        addr,
        stop,
        thread: Some(thread),
    })
}

/// A parsed request: path, query string and the bearer token if any.
struct Request {
    method: String,
    path: String,
    query: String,
    bearer: Option<String>,
}

fn read_request(stream: &TcpStream) -> Result<Request> {
    let mut reader = BufReader::new(stream.take(16 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut bearer = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("authorization") {
                bearer = v
                    .trim()
                    .strip_prefix("Bearer ")
                    .map(|t| t.trim().to_string());
            }
        }
    }
    Ok(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        bearer,
    })
}

/// Compares without an early exit, so the time taken does not reveal the common prefix.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn authorized(req: &Request, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    let from_query = req
        .query
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="));
    [req.bearer.as_deref(), from_query]
        .into_iter()
        .flatten()
        .any(|t| same(t, token))
}

fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> Result<()> {
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    stream.write_all(body)?;
    stream.flush()?;
    Ok(())
}

fn handle(mut stream: TcpStream, src: &Sources, token: Option<&str>) -> Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let req = read_request(&stream)?;
    if req.method != "GET" && req.method != "HEAD" {
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            "text/plain",
            b"GET only\n",
        );
    }
    if req.path == "/healthz" {
        return if (src.healthy)() {
            respond(&mut stream, "200 OK", "text/plain", b"ok\n")
        } else {
            respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"stalled\n",
            )
        };
    }
    if !authorized(&req, token) {
        return respond(
            &mut stream,
            "401 Unauthorized",
            "text/plain",
            b"token required\n",
        );
    }
    match req.path.as_str() {
        "/" => respond(
            &mut stream,
            "200 OK",
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
        ),
        "/frame.jpg" => match src.view.latest() {
            Some(jpeg) => respond(&mut stream, "200 OK", "image/jpeg", &jpeg),
            None => respond(
                &mut stream,
                "503 Service Unavailable",
                "text/plain",
                b"no frame yet\n",
            ),
        },
        "/state.json" => {
            let body = serde_json::to_vec(&(src.state)())?;
            respond(&mut stream, "200 OK", "application/json", &body)
        }
        "/metrics" => {
            let body = (src.metrics)();
            respond(
                &mut stream,
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                body.as_bytes(),
            )
        }
        _ => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n"),
    }
}

/// Whether `listen` (host:port) binds only the loopback interface.
pub fn is_loopback(listen: &str) -> bool {
    match listen.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_loopback(),
        Err(_) => listen
            .rsplit_once(':')
            .is_some_and(|(host, _)| host == "localhost"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1:8090"));
        assert!(is_loopback("[::1]:8090"));
        assert!(is_loopback("localhost:8090"));
        assert!(!is_loopback("0.0.0.0:8090"));
        assert!(!is_loopback("192.168.1.5:80"));
        assert!(!is_loopback("[::]:8090"));
        assert!(!is_loopback("camera.local:8090"));
    }

    #[test]
    fn token_from_header_or_query() {
        let req = |q: &str, b: Option<&str>| Request {
            method: "GET".into(),
            path: "/".into(),
            query: q.into(),
            bearer: b.map(String::from),
        };
        assert!(authorized(&req("", None), None));
        assert!(!authorized(&req("", None), Some("s3cret")));
        assert!(authorized(&req("a=1&token=s3cret", None), Some("s3cret")));
        assert!(!authorized(&req("token=s3cre", None), Some("s3cret")));
        assert!(authorized(&req("", Some("s3cret")), Some("s3cret")));
        assert!(!authorized(&req("", Some("wrong!")), Some("s3cret")));
    }

    #[test]
    fn view_encodes_only_while_watched_and_at_the_capped_rate() {
        // 0.01 fps: one frame per 100 s, so "not again" cannot depend on the test's speed
        let view = LiveView::new(0.01, 80);
        assert!(!view.wants_frame(), "nobody watching");
        assert!(view.latest().is_none());
        assert!(view.wants_frame(), "a viewer asked for a frame");
        let img = RgbImage::from_pixel(64, 48, image::Rgb([10, 20, 30]));
        view.publish(&img, &[], None).unwrap();
        assert!(!view.wants_frame(), "rate cap: not again right away");
        let jpeg = view.latest().unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
        let back = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((back.width(), back.height()), (64, 48));
    }
}
