//! `/` from a directory (oc.nginx 3.0–3.2's `root /var/webModules; index index.html`), for
//! deployments that do not run the `website` service. GET and HEAD only; files stream in
//! 64 KiB frames; any path that is not a plain descendant of the directory is 404.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use tokio::io::AsyncReadExt;

use crate::respond::{self, Body, BoxError};

const CHUNK: usize = 64 * 1024;

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// `dir` joined with the request path, or `None` for anything but normal components.
fn resolve(dir: &Path, path: &str) -> Option<PathBuf> {
    let mut out = dir.to_path_buf();
    for c in Path::new(path.trim_start_matches('/')).components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

/// Serves one request from `dir`; `path` is the request's path as nginx normalizes it
/// (decoded, `.` and `..` resolved), so the file is the one nginx's `root` would serve.
pub(super) async fn serve<B>(dir: &Path, req: &Request<B>, path: &str) -> Response<Body> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond::text(StatusCode::METHOD_NOT_ALLOWED, "405 Not Allowed\n");
    }
    let Some(mut path) = resolve(dir, path) else {
        return respond::not_found();
    };
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path.push("index.html");
    }
    let Ok(file) = tokio::fs::File::open(&path).await else {
        return respond::not_found();
    };
    let len = match file.metadata().await {
        Ok(m) if m.is_file() => m.len(),
        _ => return respond::not_found(),
    };
    let body = if req.method() == Method::HEAD {
        respond::empty()
    } else {
        let stream = futures_util::stream::unfold(Some(file), |state| async move {
            let mut file = state?;
            let mut buf = vec![0u8; CHUNK];
            match file.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(buf))), Some(file)))
                }
                Err(e) => Some((Err(BoxError::from(e)), None)),
            }
        });
        BodyExt::boxed(StreamBody::new(stream))
    };
    let mut res = Response::new(body);
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    crate::headers::clean_response(h, StatusCode::OK);
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        let dir = Path::new("/srv");
        assert_eq!(
            resolve(dir, "/a/b.html"),
            Some(PathBuf::from("/srv/a/b.html"))
        );
        assert_eq!(resolve(dir, "/"), Some(PathBuf::from("/srv")));
        assert_eq!(resolve(dir, "/../etc/passwd"), None);
        assert_eq!(resolve(dir, "/a/../../x"), None);
    }
}
