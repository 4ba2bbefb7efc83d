//! Secrets hidden in a server's words before any cut or escape: quotes, backslashes, a
//! cut through the secret, percent-encoding, short secrets, and any text around them.

use proptest::prelude::*;

use super::*;

fn one(secret: &str) -> Secrets {
    Secrets::new([Some(secret)])
}

#[test]
fn a_secret_is_hidden_before_the_escape_and_the_cut() {
    for (secret, raw, max, shown) in [
        (
            "pa\"ss",
            "530 no: pa\"ss is wrong",
            120,
            "530 no: *** is wrong",
        ),
        ("back\\slash", "530 no: back\\slash", 120, "530 no: ***"),
        // The cut falls inside the secret: nothing of it is left before the cut.
        (
            "Straddling-Secret",
            "0123456789 Straddling-Secret !",
            14,
            "0123456789 ***",
        ),
        (
            "Straddling-Secret",
            "0123456789 Straddling-Secret !",
            12,
            "0123456789 *",
        ),
        // Percent-encoded, as in a URL.
        (
            "p@ss:w/rd",
            "http://u:p%40ss%3Aw%2frd@h/x",
            120,
            "http://u:***@h/x",
        ),
        // Short, inside ordinary words: hidden anyway.
        (
            "in",
            "230 Logged in, in time",
            120,
            "230 Logged ***, *** time",
        ),
        // A run of secrets is one ***; the first line only, trimmed and escaped.
        ("ab", "  abab\tc\nsecond line ab", 120, "***\\tc"),
        // An escape that would spell the secret (`\"` from a `"`).
        ("\\\"", "say \"hi\"", 120, "say ***hi***"),
    ] {
        assert_eq!(one(secret).words(raw, max), shown, "{secret:?} in {raw:?}");
    }
    // No secret: the words only cut and escaped.
    assert_eq!(
        Secrets::default().words("  550 \"x\"\\\ny", 120),
        "550 \\\"x\\\"\\\\"
    );
    assert_eq!(Secrets::new([Some(""), None]).words("a", 9), "a");
    // A secret the marker helps spell is never shown.
    let stars = one("a*");
    for raw in ["aa*", "a a*", "xa*a*a"] {
        assert!(!stars.words(raw, 120).contains("a*"), "{raw:?}");
    }
}

#[test]
fn hide_changes_nothing_but_the_secrets_and_debug_shows_none() {
    let secrets = Secrets::new([Some("hunter2"), Some("hunter")]);
    assert_eq!(
        secrets.hide("x hunter2 y hunter z hun%74er2"),
        "x *** y *** z ***"
    );
    assert_eq!(secrets.hide("a \"quoted\"\n"), "a \"quoted\"\n");
    assert_eq!(format!("{secrets:?}"), "Secrets(2 hidden)");
    // A lone or broken escape is itself.
    assert_eq!(one("x").hide("%4 %zz %"), "%4 %zz %");
}

proptest! {
    /// A secret of capitals and the characters that escape or encode (`"`, `\`, `%`,
    /// `@`) anywhere in text of other characters, cut anywhere: nothing of it is shown,
    /// whole, escaped, or in part (no character of the secret's alphabet is left outside
    /// the `***`).
    #[test]
    fn nothing_of_a_secret_is_ever_shown(
        secret in "[A-Z\"\\\\%@]{1,24}",
        before in "[a-z .:\t]{0,150}",
        after in "[a-z .:\t]{0,150}",
        copies in 1usize..3,
        max in 0usize..300,
    ) {
        let raw = format!("{before}{}{after}", secret.repeat(copies));
        let shown = one(&secret).words(&raw, max);
        let outside = shown.replace(HIDDEN, "");
        prop_assert!(
            !outside.chars().any(|c| c.is_ascii_uppercase() || "\"%@".contains(c)),
            "{:?} shows some of {:?}", shown, secret
        );
        // Backslashes come only from escaping the tabs around it.
        prop_assert!(!outside.replace("\\t", "").contains('\\'), "{:?}", shown);
    }
}
