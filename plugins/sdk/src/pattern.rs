//! Case-insensitive wildcard patterns (`*` any run, `?` one character), written in the
//! settings as one string or a list of strings.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use wildmatch::WildMatch;

/// One pattern, e.g. `SE2321000016-*` (an HSA-id prefix) or `GetCareDocumentation`.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    matcher: WildMatch,
}

impl Pattern {
    pub fn new(text: &str) -> Result<Pattern, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty pattern".to_owned());
        }
        Ok(Pattern {
            text: text.to_owned(),
            matcher: WildMatch::new_case_insensitive(text),
        })
    }

    pub fn matches(&self, value: &str) -> bool {
        self.matcher.matches(value.trim())
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(&text).map_err(de::Error::custom)
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// One or more patterns; a value matches when any of them does.
#[derive(Debug, Clone, PartialEq)]
pub struct Patterns(pub Vec<Pattern>);

impl Patterns {
    pub fn matches(&self, value: &str) -> bool {
        self.0.iter().any(|p| p.matches(value))
    }
}

impl<'de> Deserialize<'de> for Patterns {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PatternsVisitor;

        impl<'de> Visitor<'de> for PatternsVisitor {
            type Value = Patterns;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a pattern or a list of patterns")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Patterns, E> {
                Pattern::new(v)
                    .map(|p| Patterns(vec![p]))
                    .map_err(E::custom)
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Patterns, A::Error> {
                let mut patterns = Vec::new();
                while let Some(pattern) = seq.next_element::<Pattern>()? {
                    patterns.push(pattern);
                }
                if patterns.is_empty() {
                    return Err(de::Error::custom(
                        "an empty list matches nothing; leave the key out to match anything",
                    ));
                }
                Ok(Patterns(patterns))
            }
        }

        deserializer.deserialize_any(PatternsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(json: &str) -> Result<Patterns, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn wildcards_prefixes_and_case() {
        let p = Pattern::new("SE2321000016-*").expect("pattern");
        assert!(p.matches("SE2321000016-A12B"));
        assert!(p.matches("se2321000016-a12b"));
        assert!(!p.matches("SE2321000017-A12B"));
        assert!(!p.matches("SE2321000016"));
        let q = Pattern::new("SE2321000016-A1?B").expect("pattern");
        assert!(q.matches("SE2321000016-A12B"));
        assert!(!q.matches("SE2321000016-A123B"));
        let exact = Pattern::new("GetCareDocumentation").expect("pattern");
        assert!(exact.matches("getcaredocumentation"));
        assert!(!exact.matches("GetCareDocumentationX"));
    }

    #[test]
    fn one_string_or_a_list() {
        assert_eq!(patterns(r#""A*""#).map(|p| p.0.len()), Ok(1));
        assert_eq!(patterns(r#"["A*", "B"]"#).map(|p| p.0.len()), Ok(2));
        assert!(patterns("[]").is_err_and(|e| e.contains("empty list")));
        assert!(patterns(r#""  ""#).is_err_and(|e| e.contains("empty pattern")));
        assert!(patterns("5").is_err_and(|e| e.contains("a pattern or a list")));
        assert!(patterns(r#"["A", 5]"#).is_err());
    }
}
