//! Just enough HTTP/1.1 for the harness's servers (the Lambda Runtime API, the OTLP
//! collector): keep-alive requests with a `content-length` or a chunked body, and responses
//! with a `content-length`.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A request as read: header names lowercased, the body de-chunked.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of the header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The next request on the connection; `None` when the client closed it (or sent something
/// that is not HTTP/1.1).
pub(crate) async fn read_request<R: AsyncBufReadExt + Unpin>(read: &mut R) -> Option<Request> {
    let mut request_line = String::new();
    if read.read_line(&mut request_line).await.ok()? == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            read.read_line(&mut size).await.ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            read.read_exact(&mut chunk).await.ok()?;
            if size == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        let length = match request.header("content-length") {
            Some(length) => length.parse().ok()?,
            None => 0,
        };
        request.body.resize(length, 0);
        read.read_exact(&mut request.body).await.ok()?;
    }
    Some(request)
}

/// Writes a response with `status` (`200 OK`), `headers` and `body`.
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    write: &mut W,
    status: &str,
    headers: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    // One write: a response sent as two small segments waits for the first one's (delayed)
    // acknowledgement before the second goes, tens of milliseconds on loopback.
    let mut response = head.into_bytes();
    response.extend_from_slice(body);
    write.write_all(&response).await
}
