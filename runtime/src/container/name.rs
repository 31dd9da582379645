//! Container names: what LXC accepts, minus what is dangerous on a file system.

/// The longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Why a container name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid container name {shown}: {why}")]
pub struct NameError {
    /// The name, quoted and escaped for display.
    pub shown: String,
    /// What is wrong with it.
    pub why: String,
}

/// Checks a container name: 1 to 64 bytes, no `/`, no NUL or other control
/// characters, no white space, not `.` or `..` and no `..` inside, not starting with `-`.
pub fn validate(name: &str) -> Result<(), NameError> {
    let err = |why: &str| NameError {
        shown: format!("{name:?}"),
        why: why.to_string(),
    };
    if name.is_empty() {
        return Err(err("it is empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(err(&format!(
            "it is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            name.len()
        )));
    }
    if name.contains('/') {
        return Err(err("it contains `/`"));
    }
    if name.contains('\0') {
        return Err(err("it contains a NUL byte"));
    }
    if name.contains("..") || name == "." {
        return Err(err("it is or contains `..` or is `.`"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(err("it contains white space or control characters"));
    }
    if name.starts_with('-') {
        return Err(err("it starts with `-`, which reads as an option"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["stretch", "c1", "web.example", "a_b-c", &"x".repeat(64)] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_dangerous_names() {
        let cases = [
            ("", "empty"),
            ("a/b", "`/`"),
            ("..", "`..`"),
            (".", "`..`"),
            ("a..b", "`..`"),
            ("a\0b", "NUL"),
            ("a b", "white space"),
            ("a\nb", "white space"),
            ("-n", "starts with"),
        ];
        for (name, why) in cases {
            let e = validate(name).unwrap_err();
            assert!(e.to_string().contains(why), "{name:?}: {e}");
        }
        let long = "x".repeat(65);
        assert!(validate(&long)
            .unwrap_err()
            .to_string()
            .contains("65 bytes"));
    }
}
