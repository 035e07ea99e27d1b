//! Raw HTTP/1.1 clients that play the parts the scenarios need: a slow
//! client that never finishes its request, a well-behaved one, a kept-alive
//! one that goes idle, and an uploader that streams a large body without
//! holding it in memory.
//!
//! They speak bytes on a socket rather than going through an HTTP client
//! library, so nothing on the client side (pools, background tasks) shows
//! up in the server's task and heap counts.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a blocking connect may take: on loopback it is immediate unless
/// the listener's backlog is full.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

// ANCHOR: slow_client
/// The first half of a request head: the blank line that would end it never
/// comes.
pub const HALF_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n";

/// Connects and sends [`HALF_REQUEST`], blocking.
///
/// On loopback the kernel completes the handshake and queues the connection
/// in the listener's backlog whether or not the server ever accepts it, and
/// the few bytes fit in the socket buffer, so this returns at once. Being
/// blocking keeps the slow clients out of the async runtime under test: the
/// runtime only sees the server's side.
pub fn open_slow_client(server: SocketAddr) -> io::Result<std::net::TcpStream> {
    let mut stream = std::net::TcpStream::connect_timeout(&server, CONNECT_TIMEOUT)?;
    stream.write_all(HALF_REQUEST)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}
// ANCHOR_END: slow_client

/// Opens `count` slow clients (see [`open_slow_client`]).
pub fn open_slow_clients(server: SocketAddr, count: usize) -> io::Result<Vec<std::net::TcpStream>> {
    (0..count).map(|_| open_slow_client(server)).collect()
}

/// Whether the server still holds this connection open. A server that gave
/// up on it has closed it: reading then sees end-of-file or a reset. Reads
/// (and discards) whatever the server sent before closing.
pub fn is_open(mut client: &std::net::TcpStream) -> bool {
    let mut scratch = [0u8; 1024];
    loop {
        match client.read(&mut scratch) {
            Ok(0) => return false,
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

/// How many of these connections the server still holds open.
pub fn count_open(clients: &[std::net::TcpStream]) -> usize {
    clients.iter().filter(|client| is_open(client)).count()
}

/// How many of these connections are still open once the closes the server
/// already sent have arrived: waits up to `limit` (blocking the thread,
/// polling every millisecond) for the count to reach zero.
///
/// A close is delivered by the kernel, and under load it may land a moment
/// after the server's `close` returned; a single [`count_open`] right after
/// a server closed its sockets could still see a few open.
pub fn count_open_after_closes_land(clients: &[std::net::TcpStream], limit: Duration) -> usize {
    let started = std::time::Instant::now();
    loop {
        let open = count_open(clients);
        if open == 0 || started.elapsed() >= limit {
            return open;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A response as the raw clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status code from the status line.
    pub status: u16,
    /// Everything after the head.
    pub body: String,
}

fn parse_reply(raw: &[u8]) -> io::Result<Reply> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid(format!("no complete response head in {text:?}")))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid(format!("no status code in {head:?}")))?;
    Ok(Reply {
        status,
        body: body.to_string(),
    })
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A well-behaved client: sends a complete `GET` with `Connection: close`
/// and reads the whole response.
pub async fn get(server: SocketAddr, path: &str) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(server).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_reply(&raw)
}

/// A kept-alive client: sends one complete `GET /`, reads the response
/// (whose body is [`GREETING`](crate::GREETING)), and returns the still-open
/// connection without sending anything more.
pub async fn get_and_keep_alive(server: SocketAddr) -> io::Result<(Reply, TcpStream)> {
    let mut stream = TcpStream::connect(server).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    while !raw.ends_with(crate::GREETING.as_bytes()) {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(invalid(
                "connection closed before the response ended".into(),
            ));
        }
        raw.extend_from_slice(&chunk[..read]);
    }
    Ok((parse_reply(&raw)?, stream))
}

/// Waits until the server closes this connection; returns how many bytes it
/// sent first.
pub async fn wait_for_close(stream: &mut TcpStream) -> usize {
    let mut received = 0;
    let mut chunk = [0u8; 1024];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return received,
            Ok(read) => received += read,
        }
    }
}

/// Zeros streamed as an upload body, a chunk at a time: the uploader itself
/// allocates nothing per byte sent.
static UPLOAD_CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];

/// How an upload says where its body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A `Content-Length` header announces the size up front.
    ContentLength,
    /// `Transfer-Encoding: chunked`: the size is known only once the last
    /// chunk has arrived.
    Chunked,
}

/// Streams a `POST /upload` with a `body_bytes`-byte body and returns the
/// server's reply.
///
/// Sending and reading run side by side: a server that refuses the body
/// answers (and closes) while the upload is still going, and the reply must
/// still be read. Send errors after that point are expected and ignored.
pub async fn upload(server: SocketAddr, body_bytes: usize, framing: Framing) -> io::Result<Reply> {
    let stream = TcpStream::connect(server).await?;
    let (mut reader, mut writer) = stream.into_split();
    let send = async move {
        let length_header = match framing {
            Framing::ContentLength => format!("Content-Length: {body_bytes}"),
            Framing::Chunked => "Transfer-Encoding: chunked".to_string(),
        };
        let head = format!(
            "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n{length_header}\r\n\
             Connection: close\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await?;
        let mut remaining = body_bytes;
        while remaining > 0 {
            let chunk = remaining.min(UPLOAD_CHUNK.len());
            if framing == Framing::Chunked {
                writer
                    .write_all(format!("{chunk:x}\r\n").as_bytes())
                    .await?;
            }
            writer.write_all(&UPLOAD_CHUNK[..chunk]).await?;
            if framing == Framing::Chunked {
                writer.write_all(b"\r\n").await?;
            }
            remaining -= chunk;
        }
        if framing == Framing::Chunked {
            writer.write_all(b"0\r\n\r\n").await?;
        }
        io::Result::Ok(writer)
    };
    let receive = async move {
        let mut raw = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match reader.read(&mut chunk).await {
                Ok(0) => break,
                Ok(read) => raw.extend_from_slice(&chunk[..read]),
                // A refused upload ends in a reset; what came before it counts.
                Err(_) if !raw.is_empty() => break,
                Err(error) => return Err(error),
            }
        }
        Ok(raw)
    };
    let (_sent, raw) = tokio::join!(send, receive);
    parse_reply(&raw?)
}
