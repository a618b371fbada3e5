//! Minimal HTTP/1.1 message reading shared by the client and the servers.

use std::io::{self, BufRead, Read};

/// Start line and headers (names lowercased, order and duplicates kept).
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
    /// The bytes of each value in `headers` (same order), exactly as received.
    pub raw_values: Vec<Vec<u8>>,
}

impl Head {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The bytes of the first value of header `name` (any case).
pub fn first_header_bytes<'a>(
    headers: &[(String, String)],
    raw_values: &'a [Vec<u8>],
    name: &str,
) -> Option<&'a [u8]> {
    let i = headers
        .iter()
        .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
    raw_values.get(i).map(Vec::as_slice)
}

/// The first value of header `name` (any case) in a lower-cased header list.
pub fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Every value of header `name` (any case), in order.
pub fn all_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

const MAX_HEAD: usize = 256 * 1024;

fn read_line(r: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    Ok(read_line_bytes(r, budget)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

fn read_line_bytes(r: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let n = r.take(*budget as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "head too long"));
    }
    *budget -= n;
    while buf.last() == Some(&b'\n') || buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(buf))
}

/// Reads a head; `Ok(None)` on a clean EOF before any byte.
pub(crate) fn read_head(r: &mut impl BufRead) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let start = loop {
        match read_line(r, &mut budget)? {
            None => return Ok(None),
            Some(l) if l.is_empty() => continue, // tolerate stray CRLF between messages
            Some(l) => break l,
        }
    };
    let mut headers = Vec::new();
    let mut raw_values = Vec::new();
    loop {
        let line = read_line_bytes(r, &mut budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in headers"))?;
        if line.is_empty() {
            break;
        }
        let colon = line
            .iter()
            .position(|b| *b == b':')
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad header line"))?;
        let (name, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default().trim_ascii();
        headers.push((
            String::from_utf8_lossy(name).trim().to_ascii_lowercase(),
            String::from_utf8_lossy(value).into_owned(),
        ));
        raw_values.push(value.to_vec());
    }
    Ok(Some(Head {
        start,
        headers,
        raw_values,
    }))
}

/// Reads a body framed by `transfer-encoding: chunked` or `content-length`; when
/// neither is present, reads to EOF if `to_eof` (responses), else the body is empty.
pub(crate) fn read_body(r: &mut impl BufRead, head: &Head, to_eof: bool) -> io::Result<Vec<u8>> {
    let chunked = head
        .headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        let mut budget = MAX_HEAD;
        loop {
            let line = read_line(r, &mut budget)?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunks"))?;
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
            if size == 0 {
                // trailers until the empty line
                while let Some(l) = read_line(r, &mut budget)? {
                    if l.is_empty() {
                        break;
                    }
                }
                return Ok(body);
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r, &mut budget)?; // CRLF after the chunk
        }
    }
    if let Some(len) = head.get("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad content-length"))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        return Ok(body);
    }
    let mut body = Vec::new();
    if to_eof {
        r.read_to_end(&mut body)?;
    }
    Ok(body)
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}
