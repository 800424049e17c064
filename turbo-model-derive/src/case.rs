//! `#[serde(rename_all = "...")]` applied to field names, so that the names registered
//! for the `turbo_subscribe` tag are the names serde writes.

/// One of serde's `rename_all` conventions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RenameRule {
    Lower,
    Upper,
    Pascal,
    Camel,
    Snake,
    ScreamingSnake,
    Kebab,
    ScreamingKebab,
}

impl RenameRule {
    /// The rule serde knows by `name`; `None` for a name serde itself rejects.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "lowercase" => Self::Lower,
            "UPPERCASE" => Self::Upper,
            "PascalCase" => Self::Pascal,
            "camelCase" => Self::Camel,
            "snake_case" => Self::Snake,
            "SCREAMING_SNAKE_CASE" => Self::ScreamingSnake,
            "kebab-case" => Self::Kebab,
            "SCREAMING-KEBAB-CASE" => Self::ScreamingKebab,
            _ => return None,
        })
    }

    /// The serialized name of a field whose Rust name (already snake case) is `field`.
    pub(crate) fn apply(self, field: &str) -> String {
        match self {
            // A Rust field name is already lower snake case.
            Self::Lower | Self::Snake => field.to_owned(),
            Self::Upper | Self::ScreamingSnake => field.to_ascii_uppercase(),
            Self::Kebab => field.replace('_', "-"),
            Self::ScreamingKebab => field.to_ascii_uppercase().replace('_', "-"),
            Self::Pascal => words_capitalized(field),
            Self::Camel => {
                let pascal = words_capitalized(field);
                let mut chars = pascal.chars();
                match chars.next() {
                    Some(first) => first.to_ascii_lowercase().to_string() + chars.as_str(),
                    None => pascal,
                }
            }
        }
    }
}

/// Drops the underscores and upper-cases the first letter after each one, and the
/// very first letter: `room_id` becomes `RoomId`.
fn words_capitalized(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut word_start = true;
    for c in field.chars() {
        if c == '_' {
            word_start = true;
        } else if word_start {
            out.push(c.to_ascii_uppercase());
            word_start = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::RenameRule;

    #[test]
    fn every_serde_rule_renames_a_snake_case_field() {
        let cases = [
            ("lowercase", "room_id"),
            ("UPPERCASE", "ROOM_ID"),
            ("PascalCase", "RoomId"),
            ("camelCase", "roomId"),
            ("snake_case", "room_id"),
            ("SCREAMING_SNAKE_CASE", "ROOM_ID"),
            ("kebab-case", "room-id"),
            ("SCREAMING-KEBAB-CASE", "ROOM-ID"),
        ];
        for (name, expected) in cases {
            let rule = RenameRule::from_name(name).expect(name);
            assert_eq!(rule.apply("room_id"), expected, "rule {name}");
        }
    }

    #[test]
    fn single_words_and_digits() {
        assert_eq!(RenameRule::Camel.apply("id"), "id");
        assert_eq!(RenameRule::Pascal.apply("id"), "Id");
        assert_eq!(RenameRule::Camel.apply("line_2_text"), "line2Text");
        assert_eq!(RenameRule::ScreamingKebab.apply("created_at"), "CREATED-AT");
    }

    #[test]
    fn unknown_rules_are_not_guessed() {
        for name in ["camelcase", "Snake_Case", "", "title case"] {
            assert_eq!(RenameRule::from_name(name), None, "{name:?}");
        }
    }
}
