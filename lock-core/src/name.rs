//! Lock names, validated once so every store can rely on them.

use crate::error::Error;
use std::{fmt, str::FromStr, sync::Arc};

/// The longest lock name accepted, in bytes. Every backend can store a key this long.
pub const MAX_LOCK_NAME_LEN: usize = 200;

/// The name of one lock. A store holds many locks; every call names one.
///
/// Valid names are non-empty, at most [`MAX_LOCK_NAME_LEN`] bytes, contain no
/// control characters and no leading or trailing whitespace. Backends may map a
/// name to a key (a file name, an object key) but must keep distinct names distinct.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockName(Arc<str>);

impl LockName {
    /// The name as one path segment (a file name, a znode name): every byte outside
    /// `[A-Za-z0-9_-]` escaped as `%XX`, so distinct names stay distinct, none contains
    /// a `/`, and none is `.` or `..`.
    #[must_use]
    pub fn to_path_segment(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || b"_-".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The lock whose [`to_path_segment`](Self::to_path_segment) is `segment`, if any.
    #[must_use]
    pub fn from_path_segment(segment: &str) -> Option<Self> {
        let bytes = segment.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%' {
                out.push(u8::from_str_radix(segment.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        Self::new(String::from_utf8(out).ok()?).ok()
    }

    /// Validates `name`.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        let problem = if name.is_empty() {
            Some("is empty".to_string())
        } else if name.len() > MAX_LOCK_NAME_LEN {
            Some(format!("is {} bytes long, the limit is {MAX_LOCK_NAME_LEN}", name.len()))
        } else if name.chars().any(char::is_control) {
            Some("contains a control character".to_string())
        } else if name.trim() != name {
            Some("has leading or trailing whitespace".to_string())
        } else {
            None
        };
        match problem {
            Some(why) => Err(Error::Config(format!("lock name {name:?} {why}"))),
            None => Ok(Self(name.into())),
        }
    }

    /// The name as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for LockName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl TryFrom<&str> for LockName {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_accepted() {
        for ok in ["a", "billing/nightly", "ünïcødé-lock", &"x".repeat(MAX_LOCK_NAME_LEN)] {
            assert_eq!(LockName::new(ok).expect(ok).as_str(), ok);
        }
    }

    #[test]
    fn invalid_names_say_why() {
        for (bad, why) in [
            ("", "is empty"),
            (&"x".repeat(MAX_LOCK_NAME_LEN + 1) as &str, "the limit is 200"),
            ("a\nb", "control character"),
            ("a\u{7f}", "control character"),
            (" a", "whitespace"),
        ] {
            let err = LockName::new(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
