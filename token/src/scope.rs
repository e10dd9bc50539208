//! Scopes (RFC 6749 §3.3): a space-delimited, order-free set of scope tokens.

use std::collections::BTreeSet;
use std::fmt;

/// A validated set of scope tokens. Kept sorted so the same grant always prints the
/// same way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope(BTreeSet<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    // The token itself is not quoted: the message goes back to the caller
    // (RFC 6749 §5.2 `error_description` is never request text).
    #[error("scope has a token with characters RFC 6749 section 3.3 does not allow")]
    BadToken,
    #[error("scope has empty tokens (repeated or edge spaces)")]
    EmptyToken,
}

impl Scope {
    /// Parses a `scope` parameter. RFC 6749 §3.3: tokens are `1*( %x21 / %x23-5B /
    /// %x5D-7E )` separated by single spaces.
    pub fn parse(raw: &str) -> Result<Self, ScopeError> {
        if raw.is_empty() {
            return Ok(Self::default());
        }
        let mut set = BTreeSet::new();
        for token in raw.split(' ') {
            if token.is_empty() {
                return Err(ScopeError::EmptyToken);
            }
            let valid = token
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
            if !valid {
                return Err(ScopeError::BadToken);
            }
            set.insert(token.to_owned());
        }
        Ok(Self(set))
    }

    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(tokens.into_iter().map(Into::into).collect())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.contains(token)
    }

    pub fn is_subset(&self, other: &Scope) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The tokens of `self` that `allowed` does not have.
    pub fn not_in<'a>(&'a self, allowed: &'a Scope) -> impl Iterator<Item = &'a str> {
        self.0.difference(&allowed.0).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for token in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
            first = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sorted() {
        let scope = Scope::parse("notes:write profile:read notes:read").unwrap();
        assert_eq!(scope.to_string(), "notes:read notes:write profile:read");
    }

    #[test]
    fn refuses_bad_characters_and_empty_tokens() {
        assert_eq!(Scope::parse("a\"b"), Err(ScopeError::BadToken));
        assert_eq!(Scope::parse("a\\b"), Err(ScopeError::BadToken));
        assert_eq!(Scope::parse("a  b"), Err(ScopeError::EmptyToken));
        assert_eq!(Scope::parse(" a"), Err(ScopeError::EmptyToken));
    }

    #[test]
    fn subset_and_difference() {
        let allowed = Scope::parse("a b c").unwrap();
        let asked = Scope::parse("a d").unwrap();
        assert!(!asked.is_subset(&allowed));
        assert_eq!(asked.not_in(&allowed).collect::<Vec<_>>(), vec!["d"]);
        assert!(Scope::parse("a c").unwrap().is_subset(&allowed));
    }
}
