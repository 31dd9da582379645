//! `{name}` variable substitution in scenario strings and the integer owner expressions of
//! `expect_owner` (`"{subuid_start} + {apt_uid}"`).
//!
//! Substitution rules, chosen so that ordinary shell text passes through untouched:
//! - `{ident}` (ident = `[A-Za-z_][A-Za-z0-9_]*`) is replaced by the variable's value;
//! - `{{` and `}}` are literal `{` and `}`;
//! - `${` is left alone (shell parameter expansion such as `${HOME}`);
//! - any other `{` (e.g. awk's `'{print $1}'`, brace expansion `{a,b}`) is literal.

use std::collections::BTreeMap;

/// Variables visible to a step: built-ins, the scenario's `[vars]` and earlier captures.
pub type Vars = BTreeMap<String, String>;

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Text(String),
    Var(String),
}

/// A string with `{name}` references, parsed once; rendered against [`Vars`] at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    raw: String,
    segments: Vec<Segment>,
}

/// A variable reference that no definition answers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variable {{{name}}}; define it in [vars], capture it in an earlier step, or use a built-in ({known})")]
pub struct UnknownVar {
    /// The variable's name, without braces.
    pub name: String,
    /// Comma-separated list of the names that were known, for the message.
    pub known: String,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Whether `name` is a valid variable (or capture) name.
pub fn is_ident(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char)
}

impl Template {
    /// Parses `raw`; never fails (text that is not a reference is literal).
    pub fn parse(raw: &str) -> Self {
        let mut segments = Vec::new();
        let mut text = String::new();
        let chars: Vec<char> = raw.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == '{' && chars.get(i + 1) == Some(&'{') {
                text.push('{');
                i += 2;
                continue;
            }
            if c == '}' && chars.get(i + 1) == Some(&'}') {
                text.push('}');
                i += 2;
                continue;
            }
            if c == '{' && (i == 0 || chars[i - 1] != '$') {
                // Look for `ident}`.
                let mut j = i + 1;
                while j < chars.len() && is_ident_char(chars[j]) {
                    j += 1;
                }
                if j > i + 1 && is_ident_start(chars[i + 1]) && chars.get(j) == Some(&'}') {
                    if !text.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut text)));
                    }
                    segments.push(Segment::Var(chars[i + 1..j].iter().collect()));
                    i = j + 1;
                    continue;
                }
            }
            text.push(c);
            i += 1;
        }
        if !text.is_empty() {
            segments.push(Segment::Text(text));
        }
        Template {
            raw: raw.to_owned(),
            segments,
        }
    }

    /// The text as written in the scenario file.
    pub fn raw(&self) -> &str {
        &self.raw
    }

    /// Names of the variables referenced, in order of appearance.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Var(v) => Some(v.as_str()),
            Segment::Text(_) => None,
        })
    }

    /// Checks that every reference is among `known` (values are not needed).
    pub fn check(&self, known: &std::collections::BTreeSet<String>) -> Result<(), UnknownVar> {
        for name in self.vars() {
            if !known.contains(name) {
                return Err(UnknownVar {
                    name: name.to_owned(),
                    known: known.iter().cloned().collect::<Vec<_>>().join(", "),
                });
            }
        }
        Ok(())
    }

    /// Substitutes every reference from `vars`.
    pub fn render(&self, vars: &Vars) -> Result<String, UnknownVar> {
        let mut out = String::with_capacity(self.raw.len());
        for seg in &self.segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Var(name) => match vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(UnknownVar {
                            name: name.clone(),
                            known: vars.keys().cloned().collect::<Vec<_>>().join(", "),
                        })
                    }
                },
            }
        }
        Ok(out)
    }
}

/// What was wrong with an owner expression once its variables were substituted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExprError {
    /// The expression is empty.
    #[error("empty id expression; write a number such as 100000 or a sum such as \"{{subuid_start}} + {{apt_uid}}\"")]
    Empty,
    /// A token that is neither an integer nor `+`/`-`.
    #[error(
        "{token:?} in id expression {expr:?} is not an integer; only integers, + and - are allowed"
    )]
    NotInteger {
        /// The offending token.
        token: String,
        /// The whole expression after substitution.
        expr: String,
    },
    /// Two numbers without an operator, an operator at the end, and the like.
    #[error("id expression {expr:?} is malformed: {why}; write e.g. \"100000 + 42\"")]
    Malformed {
        /// The whole expression after substitution.
        expr: String,
        /// What was wrong.
        why: &'static str,
    },
    /// The result does not fit a uid/gid.
    #[error("id expression {expr:?} evaluates to {value}, which is not a valid uid/gid (0..=4294967294)")]
    OutOfRange {
        /// The whole expression after substitution.
        expr: String,
        /// The computed value.
        value: i128,
    },
}

/// Evaluates an integer expression of `+` and `-` (e.g. `"100000 + 42 - 1"`) into a uid/gid.
pub fn eval_id(expr: &str) -> Result<u32, ExprError> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    for c in expr.chars() {
        if c == '+' || c == '-' {
            if !cur.trim().is_empty() {
                tokens.push(cur.trim().to_owned());
            }
            cur.clear();
            tokens.push(c.to_string());
        } else if c.is_whitespace() {
            if !cur.trim().is_empty() {
                tokens.push(cur.trim().to_owned());
            }
            cur.clear();
        } else {
            cur.push(c);
        }
    }
    if !cur.trim().is_empty() {
        tokens.push(cur.trim().to_owned());
    }
    if tokens.is_empty() {
        return Err(ExprError::Empty);
    }
    let mut total: i128 = 0;
    let mut sign: Option<i128> = Some(1);
    for tok in &tokens {
        match tok.as_str() {
            "+" | "-" => {
                if sign.is_some() {
                    return Err(ExprError::Malformed {
                        expr: expr.to_owned(),
                        why: "two operators in a row or an operator first",
                    });
                }
                sign = Some(if tok == "+" { 1 } else { -1 });
            }
            num => {
                let v: i128 =
                    num.parse::<u64>()
                        .map(i128::from)
                        .map_err(|_| ExprError::NotInteger {
                            token: num.to_owned(),
                            expr: expr.to_owned(),
                        })?;
                let Some(s) = sign.take() else {
                    return Err(ExprError::Malformed {
                        expr: expr.to_owned(),
                        why: "two numbers without + or - between them",
                    });
                };
                total += s * v;
            }
        }
    }
    if sign.is_some() {
        return Err(ExprError::Malformed {
            expr: expr.to_owned(),
            why: "it ends with an operator",
        });
    }
    u32::try_from(total)
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or(ExprError::OutOfRange {
            expr: expr.to_owned(),
            value: total,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn substitutes_and_leaves_shell_alone() {
        let t = Template::parse("echo {a} ${HOME} {{lit}} awk '{print $1}' {b,c} {x y} {_u1}");
        assert_eq!(t.vars().collect::<Vec<_>>(), vec!["a", "_u1"]);
        let out = t.render(&vars(&[("a", "A"), ("_u1", "U")])).unwrap();
        assert_eq!(out, "echo A ${HOME} {lit} awk '{print $1}' {b,c} {x y} U");
    }

    #[test]
    fn unknown_variable_is_named() {
        let t = Template::parse("ls {nope}");
        let err = t.render(&vars(&[("a", "1")])).unwrap_err();
        assert_eq!(err.name, "nope");
        assert!(err.to_string().contains("unknown variable {nope}"), "{err}");
        assert!(err.to_string().contains("a"), "{err}");
    }

    #[test]
    fn ident_rules() {
        assert!(is_ident("apt_uid"));
        assert!(is_ident("_x9"));
        assert!(!is_ident("9x"));
        assert!(!is_ident(""));
        assert!(!is_ident("a-b"));
    }

    #[test]
    fn evaluates_sums() {
        assert_eq!(eval_id("100000"), Ok(100000));
        assert_eq!(eval_id("100000 + 42"), Ok(100042));
        assert_eq!(eval_id("100000+42-2"), Ok(100040));
        assert_eq!(eval_id(" 7 "), Ok(7));
    }

    #[test]
    fn rejects_bad_expressions() {
        assert_eq!(eval_id(""), Err(ExprError::Empty));
        assert!(matches!(eval_id("1 2"), Err(ExprError::Malformed { .. })));
        assert!(matches!(eval_id("1 +"), Err(ExprError::Malformed { .. })));
        assert!(matches!(eval_id("+ 1"), Err(ExprError::Malformed { .. })));
        assert!(matches!(
            eval_id("1 + + 1"),
            Err(ExprError::Malformed { .. })
        ));
        assert!(matches!(
            eval_id("1 * 2"),
            Err(ExprError::NotInteger { .. })
        ));
        assert!(matches!(eval_id("abc"), Err(ExprError::NotInteger { .. })));
        assert!(matches!(
            eval_id("1 - 2"),
            Err(ExprError::OutOfRange { value: -1, .. })
        ));
        assert!(matches!(
            eval_id("4294967295"),
            Err(ExprError::OutOfRange { .. })
        ));
    }
}
