//! Closed vocabularies, each written once: [`words!`] declares an enum with the word of
//! each variant, and gives it `id` (the word), `from_id`, `ALL`, and serde both ways as
//! that word. The status, the report and `license-fleet` carry these types, never the
//! words as free text, so a word is spelled in one place and a misspelled one cannot be
//! read. Reading borrows: a word in a report costs no allocation.

/// `words! { #[attrs] pub enum Name { Variant = "word", ... } }`; an optional
/// `else Variant` after the list names the variant an unknown word reads as (for a
/// vocabulary a newer agent may add to), else an unknown word is an error.
macro_rules! words {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $word:literal, )+
        } $(else $other:ident)?
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            #[allow(dead_code)]
            pub(crate) const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word, as JSON carries it.
            pub(crate) fn id(self) -> &'static str {
                match self {
                    $( $name::$variant => $word, )+
                }
            }

            /// The variant a word names (exact).
            #[allow(dead_code)]
            pub(crate) fn from_id(word: &str) -> Option<$name> {
                match word {
                    $( $word => Some($name::$variant), )+
                    _ => None,
                }
            }
        }

        impl $crate::words::Word for $name {
            fn word(self) -> &'static str {
                self.id()
            }
            fn read(word: &str) -> Option<$name> {
                $name::from_id(word)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.id())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct WordVisitor;
                impl serde::de::Visitor<'_> for WordVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str(concat!("one of the words of ", stringify!($name)))
                    }
                    fn visit_str<E: serde::de::Error>(self, word: &str) -> Result<$name, E> {
                        match $name::from_id(word) {
                            Some(value) => Ok(value),
                            None => $crate::words::words!(@unknown word $name $($other)?),
                        }
                    }
                }
                deserializer.deserialize_str(WordVisitor)
            }
        }
    };
    (@unknown $word:ident $name:ident $other:ident) => { Ok($name::$other) };
    (@unknown $word:ident $name:ident) => {
        Err(E::custom(format!(
            "{:?} is not one of the words of {}: {}",
            $word,
            stringify!($name),
            $name::ALL.iter().map(|v| v.id()).collect::<Vec<_>>().join(", ")
        )))
    };
}

pub(crate) use words;

/// A type of a vocabulary declared by [`words!`].
pub(crate) trait Word: Copy + Sized + 'static {
    fn word(self) -> &'static str;
    fn read(word: &str) -> Option<Self>;
}

/// `#[serde(with = "crate::words::or_unknown")]` on an `Option` of a vocabulary: `None`
/// is the word `unknown` (a status or role not judged: an unsynced clock, a date that
/// does not read).
pub(crate) mod or_unknown {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::Word;

    pub(crate) const UNKNOWN: &str = "unknown";

    /// The word of `value`, or `unknown`.
    pub(crate) fn word<W: Word>(value: Option<W>) -> &'static str {
        value.map_or(UNKNOWN, W::word)
    }

    pub(crate) fn serialize<W: Word, S: Serializer>(
        value: &Option<W>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_str(word(*value))
    }

    pub(crate) fn deserialize<'de, W: Word, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<W>, D::Error> {
        let word = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        match W::read(&word) {
            Some(value) => Ok(Some(value)),
            None if word == UNKNOWN => Ok(None),
            None => Err(serde::de::Error::custom(format!(
                "{word:?} is neither a known word nor {UNKNOWN}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    words! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Colour {
            Red = "red",
            DarkBlue = "dark-blue",
        }
    }

    words! {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Open {
            Known = "known",
            Other = "other",
        } else Other
    }

    #[test]
    fn each_word_is_read_back_as_its_variant_and_nothing_else_is() {
        for colour in Colour::ALL {
            let json = serde_json::to_string(colour).unwrap();
            assert_eq!(json, format!("\"{}\"", colour.id()));
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *colour);
        }
        assert_eq!(Colour::DarkBlue.id(), "dark-blue");
        let wrong = serde_json::from_str::<Colour>("\"Red\"").unwrap_err();
        assert!(wrong.to_string().contains("red, dark-blue"), "{wrong}");
        assert!(serde_json::from_str::<Colour>("1").is_err());
        // A word with an escape (not borrowable) reads the same.
        assert_eq!(
            serde_json::from_str::<Colour>("\"dark\\u002dblue\"").unwrap(),
            Colour::DarkBlue
        );
    }

    #[test]
    fn none_is_unknown_and_unknown_is_none() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Judged {
            #[serde(with = "super::or_unknown")]
            colour: Option<Colour>,
        }
        for (value, json) in [
            (Some(Colour::Red), r#"{"colour":"red"}"#),
            (None, r#"{"colour":"unknown"}"#),
        ] {
            let judged = Judged { colour: value };
            assert_eq!(serde_json::to_string(&judged).unwrap(), json);
            assert_eq!(serde_json::from_str::<Judged>(json).unwrap(), judged);
        }
        assert!(serde_json::from_str::<Judged>(r#"{"colour":"green"}"#).is_err());
    }

    #[test]
    fn an_open_vocabulary_reads_an_unknown_word_as_its_fallback() {
        assert_eq!(
            serde_json::from_str::<Open>("\"known\"").unwrap(),
            Open::Known
        );
        assert_eq!(
            serde_json::from_str::<Open>("\"newer\"").unwrap(),
            Open::Other
        );
        assert!(serde_json::from_str::<Open>("7").is_err());
    }
}
