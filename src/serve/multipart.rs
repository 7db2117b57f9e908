//! `multipart/form-data` bodies, as `curl -F image=@digit.png` and Python's
//! `requests.post(url, files=…)` send them (RFC 7578): the form's file parts, each a picture.
//!
//! The body has already been read whole within `--max-body`; parsing here only slices it, and
//! refuses before anything is decoded: a missing or malformed boundary, a part without its
//! end, a part's headers past [`MAX_PART_HEADER_BYTES`], and more parts than a request may
//! carry items.

use axum::body::Bytes;
use memchr::memmem;

/// Far more than the few headers a browser, curl or requests writes for one part.
pub const MAX_PART_HEADER_BYTES: usize = 8 << 10;
/// RFC 2046: a boundary has 1 to 70 characters.
const MAX_BOUNDARY_LEN: usize = 70;

/// One file of the form: its bytes, and a name for messages (the field's, with the file's).
#[derive(Debug)]
pub struct FilePart {
    pub name: String,
    pub bytes: Bytes,
}

/// Why a form was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum FormError {
    /// Not a well-formed form, and why.
    Malformed(String),
    /// More parts than `max_parts`.
    TooMany,
}

/// The boundary a `multipart/form-data` Content-Type declares (`boundary=…`, quoted or not), or
/// why there is none.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let value = content_type
        .split(';')
        .skip(1)
        .filter_map(|param| param.split_once('='))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .ok_or("multipart/form-data without a boundary= parameter")?;
    if value.is_empty() || value.len() > MAX_BOUNDARY_LEN {
        return Err(format!(
            "the boundary must have 1 to {MAX_BOUNDARY_LEN} characters"
        ));
    }
    Ok(value)
}

/// The file parts of a form body, in order (parts without a file name, plain text fields,
/// are read past). At most `max_parts` parts of any kind.
pub fn file_parts(
    body: &Bytes,
    boundary: &str,
    max_parts: usize,
) -> Result<Vec<FilePart>, FormError> {
    let delimiter = format!("--{boundary}");
    let next_delimiter = format!("\r\n--{boundary}");
    let finder = memmem::Finder::new(next_delimiter.as_bytes());
    // The first delimiter opens the body, or ends a preamble line.
    let mut at = if body.starts_with(delimiter.as_bytes()) {
        delimiter.len()
    } else {
        finder
            .find(body)
            .map(|i| i + next_delimiter.len())
            .ok_or_else(|| malformed("the body holds no part delimited by the boundary"))?
    };
    let mut files = Vec::new();
    let mut parts = 0;
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(files); // the closing delimiter; an epilogue may follow
        }
        let Some(after_line) = rest.strip_prefix(b"\r\n") else {
            return Err(malformed("a delimiter is not followed by a line break"));
        };
        parts += 1;
        if parts > max_parts {
            return Err(FormError::TooMany);
        }
        let headers_start = at + 2;
        let header_end = memmem::find(
            &after_line[..after_line.len().min(MAX_PART_HEADER_BYTES + 4)],
            b"\r\n\r\n",
        )
        .ok_or_else(|| {
            malformed(&format!(
                "part {parts}: its headers do not end within {MAX_PART_HEADER_BYTES} bytes"
            ))
        })?;
        let headers = std::str::from_utf8(&after_line[..header_end])
            .map_err(|_| malformed(&format!("part {parts}: its headers are not UTF-8")))?;
        let content_start = headers_start + header_end + 4;
        let content_len = finder
            .find(&body[content_start..])
            .ok_or_else(|| malformed(&format!("part {parts} does not end with the boundary")))?;
        let part = PartHeaders::parse(headers);
        if part.is_file() {
            files.push(FilePart {
                name: part.describe(parts),
                bytes: body.slice(content_start..content_start + content_len),
            });
        }
        at = content_start + content_len + next_delimiter.len();
    }
}

fn malformed(why: &str) -> FormError {
    FormError::Malformed(why.to_owned())
}

/// What a part's headers say of it.
#[derive(Debug, Default)]
struct PartHeaders {
    field: Option<String>,
    file_name: Option<String>,
    content_type: Option<String>,
}

impl PartHeaders {
    fn parse(headers: &str) -> Self {
        let mut part = Self::default();
        for line in headers.split("\r\n") {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-disposition") {
                part.field = parameter(value, "name");
                part.file_name = parameter(value, "filename");
            } else if name.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(value.trim().to_ascii_lowercase());
            }
        }
        part
    }

    /// A file part: one with a file name, or whose content is declared a picture.
    fn is_file(&self) -> bool {
        self.file_name.is_some()
            || self
                .content_type
                .as_deref()
                .is_some_and(|t| t.starts_with("image/"))
    }

    /// `form field "image" (digit.png)`, for messages.
    fn describe(&self, index: usize) -> String {
        let field = self.field.as_deref().map_or_else(
            || format!("form part {index}"),
            |f| format!("form field {f:?}"),
        );
        match &self.file_name {
            Some(file) if !file.is_empty() => format!("{field} ({file})"),
            _ => field,
        }
    }
}

/// A parameter of a Content-Disposition value (`form-data; name="image"; filename="a.png"`),
/// quoted (with `\"` escapes) or not.
fn parameter(value: &str, key: &str) -> Option<String> {
    let mut rest = value;
    while let Some(semicolon) = rest.find(';') {
        rest = rest[semicolon + 1..].trim_start();
        let (name, after) = rest.split_once('=')?;
        let (text, remainder) = match after.strip_prefix('"') {
            Some(quoted) => unquote(quoted)?,
            None => {
                let end = after.find(';').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            }
        };
        if name.trim().eq_ignore_ascii_case(key) {
            return Some(text);
        }
        rest = remainder;
    }
    None
}

/// A quoted string's text (after its opening quote) and what follows its closing quote.
fn unquote(quoted: &str) -> Option<(String, &str)> {
    let mut text = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((text, &quoted[i + 1..])),
            '\\' => text.push(chars.next()?.1),
            c => text.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(parts: &[(&str, &[u8])]) -> Bytes {
        let mut body = b"preamble to ignore\r\n".to_vec();
        for (headers, content) in parts {
            body.extend_from_slice(b"--XyZ\r\n");
            body.extend_from_slice(headers.as_bytes());
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(content);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--XyZ--\r\nepilogue");
        Bytes::from(body)
    }

    #[test]
    fn the_boundary_is_read_quoted_or_not_and_must_be_there() {
        let ok = |t: &str| boundary(t).unwrap();
        assert_eq!(ok("multipart/form-data; boundary=abc"), "abc");
        assert_eq!(
            ok("multipart/form-data; charset=x; BOUNDARY=\"a b\""),
            "a b"
        );
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary("multipart/form-data; boundary=").is_err());
        assert!(boundary(&format!("multipart/form-data; boundary={}", "b".repeat(71))).is_err());
    }

    #[test]
    fn file_parts_are_kept_in_order_and_text_fields_read_past() {
        // Content holding CR LF and most of a delimiter must come back whole.
        let picture: &[u8] = b"\x89PNG\r\n--Xy\r\n--XZ\r\n\x00";
        let body = form(&[
            ("Content-Disposition: form-data; name=\"note\"", b"hello"),
            (
                "Content-Disposition: form-data; name=\"image\"; filename=\"a \\\"1\\\".png\"\r\nContent-Type: image/png",
                picture,
            ),
            ("content-disposition: form-data; name=second\r\ncontent-type: IMAGE/JPEG", b"jpg"),
        ]);
        let files = file_parts(&body, "XyZ", 8).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].name, "form field \"image\" (a \"1\".png)");
        assert_eq!(&files[0].bytes[..], picture);
        assert_eq!(files[1].name, "form field \"second\"");
        assert_eq!(&files[1].bytes[..], b"jpg");
    }

    #[test]
    fn broken_forms_are_refused_with_the_reason() {
        let refused =
            |body: &[u8], max: usize| file_parts(&Bytes::copy_from_slice(body), "XyZ", max);
        let why = |r: Result<Vec<FilePart>, FormError>| match r {
            Err(FormError::Malformed(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(why(refused(b"no delimiter at all", 8)).contains("no part"));
        assert!(why(refused(b"--XyZ\r\nContent-Type: a\r\n\r\nno end", 8)).contains("does not end"));
        assert!(why(refused(b"--XyZ junk", 8)).contains("line break"));
        let endless = [b"--XyZ\r\nX: ".as_slice(), &vec![b'a'; 9000]].concat();
        assert!(why(refused(&endless, 8)).contains("headers do not end"));
        let text_field: (&str, &[u8]) = ("Content-Disposition: form-data; name=\"a\"", b"1");
        let body = form(&[text_field; 3]);
        assert_eq!(file_parts(&body, "XyZ", 2).unwrap_err(), FormError::TooMany);
        assert!(file_parts(&body, "XyZ", 3).unwrap().is_empty());
    }
}
