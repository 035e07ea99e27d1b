//! The servers and the pooled connection the scenarios talk to, all on
//! 127.0.0.1 with a port the system picks.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::BytesMut;
use deadpool::managed::{self, Metrics, RecycleResult};
use hyper::Response;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{BUFFER_TARGET, GREETING, POOL_SIZE};

/// A server task that is aborted when its handle is dropped.
#[derive(Debug)]
struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An HTTP/1 server that answers every request with [`GREETING`] and counts
/// the connections it accepts.
#[derive(Debug)]
pub struct HttpServer {
    /// Where it listens.
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    _task: ServerTask,
}

impl HttpServer {
    /// Starts the server on the current runtime.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let greet = service_fn(|_request| async {
                    Ok::<_, Infallible>(Response::new(GREETING.to_string()))
                });
                tokio::spawn(async move {
                    // A client that hangs up mid-request is not an error here.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), greet)
                        .await;
                });
            }
        });
        Ok(Self {
            addr,
            accepted,
            _task: ServerTask(task),
        })
    }

    /// The URL of its only page.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Zeros the row server sends from, so it allocates nothing per response.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// The largest response the row server sends and a connection accepts
/// (16 MiB): a bad length cannot make either side allocate without bound.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// A database stand-in: for each 4-byte big-endian request `n` it answers
/// with a 4-byte length `n` and then `n` bytes, as a query returns rows. A
/// request over [`MAX_RESPONSE_BYTES`] gets the connection closed.
#[derive(Debug)]
pub struct RowServer {
    /// Where it listens.
    pub addr: SocketAddr,
    _task: ServerTask,
}

impl RowServer {
    /// Starts the server on the current runtime.
    pub async fn start() -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_rows(stream));
            }
        });
        Ok(Self {
            addr,
            _task: ServerTask(task),
        })
    }
}

async fn serve_rows(mut stream: TcpStream) -> io::Result<()> {
    loop {
        let wanted = match stream.read_u32().await {
            Ok(wanted) => wanted as usize,
            Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(error) => return Err(error),
        };
        if wanted > MAX_RESPONSE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a request for {wanted} bytes is over the {MAX_RESPONSE_BYTES}-byte limit"),
            ));
        }
        stream.write_u32(wanted as u32).await?;
        let mut left = wanted;
        while left > 0 {
            let chunk = left.min(ZEROS.len());
            stream.write_all(&ZEROS[..chunk]).await?;
            left -= chunk;
        }
    }
}

/// The read-buffer capacity of every open connection, added up: what the
/// pool's connections hold between queries.
#[derive(Debug, Clone, Default)]
pub struct BufferGauge(Arc<AtomicUsize>);

impl BufferGauge {
    /// Bytes of read buffer the open connections hold.
    pub fn bytes(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn resize(&self, from: usize, to: usize) {
        self.0.fetch_add(to, Ordering::Relaxed);
        self.0.fetch_sub(from, Ordering::Relaxed);
    }
}

// ANCHOR: connection
/// A client connection to the [`RowServer`], shaped like a database
/// driver's: it reads each response into a read buffer it keeps, and
/// decodes from there.
#[derive(Debug)]
pub struct Connection {
    stream: TcpStream,
    read_buffer: BytesMut,
    gauge: BufferGauge,
}

impl Connection {
    /// Connects, with a read buffer of [`BUFFER_TARGET`] bytes.
    pub async fn connect(addr: SocketAddr, gauge: BufferGauge) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        gauge.resize(0, BUFFER_TARGET);
        Ok(Self {
            stream,
            read_buffer: BytesMut::with_capacity(BUFFER_TARGET),
            gauge,
        })
    }

    /// Asks for `bytes` bytes and reads the whole response into the read
    /// buffer. Clearing the buffer keeps its capacity: after a large
    /// response, the buffer stays large.
    pub async fn query(&mut self, bytes: usize) -> io::Result<usize> {
        let capacity_before = self.read_buffer.capacity();
        self.stream.write_u32(bytes as u32).await?;
        let length = self.stream.read_u32().await? as usize;
        if length > MAX_RESPONSE_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a response of {length} bytes is over the {MAX_RESPONSE_BYTES}-byte limit"),
            ));
        }
        self.read_buffer.clear();
        self.read_buffer.reserve(length);
        while self.read_buffer.len() < length {
            if self.stream.read_buf(&mut self.read_buffer).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.gauge
            .resize(capacity_before, self.read_buffer.capacity());
        Ok(self.read_buffer.len())
    }
}
// ANCHOR_END: connection

impl Connection {
    // ANCHOR: shrink_buffer
    /// Gives the read buffer back to the allocator if a response grew it
    /// past `target` bytes, and starts again with `target` bytes: what
    /// sqlx's `shrink_buffers` and tokio-postgres's `buffer_size` do.
    pub fn shrink_buffer(&mut self, target: usize) {
        let capacity_before = self.read_buffer.capacity();
        if capacity_before > target {
            self.read_buffer = BytesMut::with_capacity(target);
            self.gauge.resize(capacity_before, target);
        }
    }
    // ANCHOR_END: shrink_buffer

    /// Bytes the read buffer can hold without growing.
    pub fn buffer_capacity(&self) -> usize {
        self.read_buffer.capacity()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.gauge.resize(self.read_buffer.capacity(), 0);
    }
}

/// deadpool's manager for [`Connection`]s: how to open one, and how to check
/// one before it is handed out again.
#[derive(Debug)]
pub struct RowServerManager {
    addr: SocketAddr,
    gauge: BufferGauge,
}

impl managed::Manager for RowServerManager {
    type Type = Connection;
    type Error = io::Error;

    async fn create(&self) -> io::Result<Connection> {
        Connection::connect(self.addr, self.gauge.clone()).await
    }

    async fn recycle(&self, _connection: &mut Connection, _: &Metrics) -> RecycleResult<io::Error> {
        Ok(())
    }
}

/// A deadpool pool of [`Connection`]s.
pub type ConnectionPool = managed::Pool<RowServerManager>;

/// A pool of at most [`POOL_SIZE`] connections to `addr`, whose read
/// buffers `gauge` adds up.
pub fn connection_pool(addr: SocketAddr, gauge: BufferGauge) -> ConnectionPool {
    managed::Pool::builder(RowServerManager { addr, gauge })
        .max_size(POOL_SIZE)
        .build()
        .expect("a pool without timeouts needs no runtime and always builds")
}

/// A pool error as an `io::Error`.
pub fn pool_error(error: managed::PoolError<io::Error>) -> io::Error {
    match error {
        managed::PoolError::Backend(error) => error,
        other => io::Error::other(other.to_string()),
    }
}
