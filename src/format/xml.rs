//! The syntax layer: a license file's bytes → the text of its six elements.
//!
//! The grammar is a tiny, closed subset of XML 1.0, read as quick-xml events (never
//! entities, never a DOM): an optional XML declaration at the very start, one `LICENSE`
//! root holding exactly `Serial`, `Version`, `Description`, `Key`, `Features`,
//! `Signature` in that order, each holding text only; comments and white space between
//! elements. Everything else (DOCTYPE, entity or character references, CDATA,
//! processing instructions, attributes, non-ASCII bytes, stray text) is refused here,
//! before any field is looked at.

use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::Malformed;

/// The six elements of `LICENSE`, in the only order allowed.
pub(crate) const FIELD_NAMES: [&str; 6] = [
    "Serial",
    "Version",
    "Description",
    "Key",
    "Features",
    "Signature",
];

/// The trimmed text of one element and the offset of its first byte in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FieldText<'a> {
    pub(crate) text: &'a [u8],
    pub(crate) offset: usize,
}

/// XML white space (S in the XML 1.0 grammar).
fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_blank(text: &[u8]) -> bool {
    text.iter().all(|&b| is_xml_space(b))
}

/// Checks every byte before any parsing: ASCII only, and no control character that
/// XML 1.0 forbids (everything below 0x20 except tab, LF and CR).
fn check_bytes(input: &[u8]) -> Result<(), Malformed> {
    match input
        .iter()
        .position(|&b| b > 0x7F || (b < 0x20 && !is_xml_space(b)))
    {
        None => Ok(()),
        Some(at) if input[at] > 0x7F => Err(Malformed::at(
            input,
            at,
            format!(
                "byte 0x{:02X} is not ASCII; a license file is ASCII only",
                input[at]
            ),
        )),
        Some(at) => Err(Malformed::at(
            input,
            at,
            format!(
                "control character 0x{:02X} is not allowed in XML",
                input[at]
            ),
        )),
    }
}

/// Where the reader is in the fixed shape of the document.
#[derive(Clone, Copy)]
enum State {
    /// Before `<LICENSE>`.
    Prolog,
    /// Inside `LICENSE`, expecting element number `next` of [`FIELD_NAMES`] (or the end).
    Root { next: usize },
    /// Inside element `index`; `text` is its text once seen.
    Field {
        index: usize,
        text: Option<(usize, usize)>,
    },
    /// After `</LICENSE>`.
    Epilog,
}

/// Reads the six element texts, trimmed of surrounding white space, in spec order.
pub(crate) fn read_fields(input: &[u8]) -> Result<[FieldText<'_>; 6], Malformed> {
    check_bytes(input)?;
    let mut reader = Reader::from_reader(input);
    let config = reader.config_mut();
    config.check_comments = true; // "--" inside a comment is not XML
    config.check_end_names = true;
    config.expand_empty_elements = false;
    config.trim_text(false);

    let mut fields: [Option<FieldText<'_>>; 6] = [None; 6];
    let mut state = State::Prolog;
    let mut seen_any = false;
    loop {
        let start = offset(&reader);
        // A DOCTYPE is refused on sight: nothing inside it is read.
        if state_allows_doctype_check(state) && starts_doctype(input.get(start..).unwrap_or(&[])) {
            return Err(Malformed::at(
                input,
                start,
                "a DOCTYPE declaration is not allowed",
            ));
        }
        let event = reader.read_event().map_err(|e| {
            let at = usize::try_from(reader.error_position()).unwrap_or(input.len());
            Malformed::at(input, at, format!("not well-formed XML: {e}"))
        })?;
        let end = offset(&reader);
        let first_event = !seen_any;
        seen_any = true;
        match event {
            Event::Decl(_) => {
                if !first_event || start != 0 {
                    return Err(Malformed::at(
                        input,
                        start,
                        "the XML declaration must come first in the file, and only once",
                    ));
                }
                check_declaration(input, start, end)?;
            }
            Event::Comment(_) => {
                if let State::Field { index, .. } = state {
                    return Err(Malformed::at(
                        input,
                        start,
                        format!(
                            "a comment inside <{}>; elements hold text only",
                            FIELD_NAMES[index]
                        ),
                    ));
                }
            }
            Event::Text(t) => {
                let raw: &[u8] = &t;
                if let Some(amp) = raw.iter().position(|&b| b == b'&') {
                    return Err(Malformed::at(
                        input,
                        start + amp,
                        "entity and character references (&...;) are not allowed",
                    ));
                }
                state = match state {
                    State::Field { index, text: None } => State::Field {
                        index,
                        text: Some((start, end)),
                    },
                    State::Field { index, text: Some(_) } => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!("<{}> holds more than one piece of text", FIELD_NAMES[index]),
                        ))
                    }
                    other if is_blank(raw) => other,
                    State::Root { .. } => {
                        return Err(Malformed::at(
                            input,
                            start + first_non_space(raw),
                            "text between the elements of <LICENSE>; only white space and comments may stand there",
                        ))
                    }
                    _ => {
                        return Err(Malformed::at(
                            input,
                            start + first_non_space(raw),
                            "text outside the <LICENSE> element",
                        ))
                    }
                };
            }
            Event::Start(ref e) | Event::Empty(ref e) => {
                let is_empty = matches!(event, Event::Empty(_));
                let name = e.name();
                let name = name.as_ref();
                if !is_blank(e.attributes_raw()) {
                    return Err(Malformed::at(
                        input,
                        start,
                        format!("<{}> has attributes; none are allowed", show(name)),
                    ));
                }
                state = match state {
                    State::Prolog if name == b"LICENSE" && !is_empty => State::Root { next: 0 },
                    State::Prolog if name == b"LICENSE" => {
                        return Err(Malformed::at(input, start, "<LICENSE/> is empty; it must hold Serial, Version, Description, Key, Features and Signature"))
                    }
                    State::Prolog => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!("the root element is <{}>; it must be <LICENSE>", show(name)),
                        ))
                    }
                    State::Root { next } => {
                        let index = expect_field(input, start, name, next, &fields)?;
                        if is_empty {
                            fields[index] = Some(FieldText {
                                text: &[],
                                offset: start,
                            });
                            State::Root { next: next + 1 }
                        } else {
                            State::Field { index, text: None }
                        }
                    }
                    State::Field { index, .. } => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!(
                                "element <{}> inside <{}>; elements hold text only",
                                show(name),
                                FIELD_NAMES[index]
                            ),
                        ))
                    }
                    State::Epilog => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!("element <{}> after </LICENSE>", show(name)),
                        ))
                    }
                };
            }
            Event::End(ref e) => {
                // quick-xml has already checked that the name matches the open element.
                state = match state {
                    State::Field { index, text } => {
                        let (from, to) = text.unwrap_or((start, start));
                        fields[index] = Some(trimmed(input, from, to, index)?);
                        State::Root { next: index + 1 }
                    }
                    State::Root { next } if next < FIELD_NAMES.len() => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!(
                                "<LICENSE> ends before <{}>; all six elements are required",
                                FIELD_NAMES[next]
                            ),
                        ))
                    }
                    State::Root { .. } => State::Epilog,
                    _ => {
                        return Err(Malformed::at(
                            input,
                            start,
                            format!("unexpected end tag </{}>", show(e.name().as_ref())),
                        ))
                    }
                };
            }
            Event::CData(_) => {
                return Err(Malformed::at(
                    input,
                    start,
                    "CDATA sections are not allowed",
                ));
            }
            Event::PI(_) => {
                return Err(Malformed::at(
                    input,
                    start,
                    "processing instructions are not allowed (only the XML declaration, first)",
                ));
            }
            Event::DocType(_) => {
                return Err(Malformed::at(
                    input,
                    start,
                    "a DOCTYPE declaration is not allowed",
                ));
            }
            Event::Eof => {
                return match state {
                    State::Epilog => {
                        let mut out = [FieldText {
                            text: &[],
                            offset: 0,
                        }; 6];
                        for (slot, field) in out.iter_mut().zip(fields) {
                            // Epilog is reached only after all six were stored.
                            *slot = field
                                .ok_or_else(|| Malformed::whole("internal: element missing"))?;
                        }
                        Ok(out)
                    }
                    State::Prolog => Err(Malformed::at(input, input.len(), "no <LICENSE> element")),
                    _ => Err(Malformed::at(
                        input,
                        input.len(),
                        "the file ends inside <LICENSE>; it is cut short or not closed",
                    )),
                };
            }
        }
    }
}

fn offset<R>(reader: &Reader<R>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

fn state_allows_doctype_check(state: State) -> bool {
    !matches!(state, State::Field { .. })
}

/// Does markup at this point open a DOCTYPE (`<!DOCTYPE`, any case, as quick-xml reads it)?
fn starts_doctype(rest: &[u8]) -> bool {
    rest.len() >= 9 && rest[..2] == *b"<!" && rest[2..9].eq_ignore_ascii_case(b"DOCTYPE")
}

fn first_non_space(text: &[u8]) -> usize {
    text.iter().position(|&b| !is_xml_space(b)).unwrap_or(0)
}

/// A name for messages: ASCII was checked up front, so this is lossless.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// The index of the element that may open here, or why this one may not.
fn expect_field(
    input: &[u8],
    at: usize,
    name: &[u8],
    next: usize,
    fields: &[Option<FieldText<'_>>; 6],
) -> Result<usize, Malformed> {
    let found = FIELD_NAMES.iter().position(|f| f.as_bytes() == name);
    match found {
        Some(i) if i == next => Ok(i),
        Some(i) if fields[i].is_some() => Err(Malformed::at(
            input,
            at,
            format!("<{}> appears twice", FIELD_NAMES[i]),
        )),
        Some(i) if next < FIELD_NAMES.len() => Err(Malformed::at(
            input,
            at,
            format!(
                "found <{}> where <{}> must come: <{}> is missing or out of order (order: Serial, Version, Description, Key, Features, Signature)",
                FIELD_NAMES[i], FIELD_NAMES[next], FIELD_NAMES[next]
            ),
        )),
        _ if next >= FIELD_NAMES.len() => Err(Malformed::at(
            input,
            at,
            format!("extra element <{}> after <Signature>", show(name)),
        )),
        _ => Err(Malformed::at(
            input,
            at,
            format!("unknown element <{}> inside <LICENSE>", show(name)),
        )),
    }
}

/// The element's text without surrounding white space; white space inside is refused.
fn trimmed(input: &[u8], from: usize, to: usize, index: usize) -> Result<FieldText<'_>, Malformed> {
    let raw = input.get(from..to).unwrap_or(&[]);
    let lead = raw.iter().take_while(|&&b| is_xml_space(b)).count();
    let trail = raw[lead..]
        .iter()
        .rev()
        .take_while(|&&b| is_xml_space(b))
        .count();
    let text = &raw[lead..raw.len() - trail];
    if let Some(space) = text.iter().position(|&b| is_xml_space(b)) {
        return Err(Malformed::at(
            input,
            from + lead + space,
            format!("white space inside the text of <{}>", FIELD_NAMES[index]),
        ));
    }
    Ok(FieldText {
        text,
        offset: from + lead,
    })
}

/// Checks `<?xml version="1.0" [encoding="…"] [standalone="yes|no"] ?>` by hand: quick-xml
/// does not validate the pseudo-attributes, and the spec names the encodings allowed.
fn check_declaration(input: &[u8], start: usize, end: usize) -> Result<(), Malformed> {
    let decl = input.get(start..end).unwrap_or(&[]);
    let bad = |reason: &str| Malformed::at(input, start, format!("XML declaration: {reason}"));
    let body = decl
        .strip_prefix(b"<?xml")
        .and_then(|b| b.strip_suffix(b"?>"))
        .ok_or_else(|| bad("expected <?xml ... ?>"))?;
    let mut rest = body;
    let mut names: Vec<&[u8]> = Vec::new();
    loop {
        let spaces = rest.iter().take_while(|&&b| is_xml_space(b)).count();
        rest = &rest[spaces..];
        if rest.is_empty() {
            break;
        }
        if spaces == 0 {
            return Err(bad("white space must separate its parts"));
        }
        let name_len = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
        let (name, after) = rest.split_at(name_len);
        let after = skip_space(after);
        let after = after
            .strip_prefix(b"=")
            .ok_or_else(|| bad("expected name=\"value\""))?;
        let after = skip_space(after);
        let quote = *after.first().ok_or_else(|| bad("a value is missing"))?;
        if quote != b'"' && quote != b'\'' {
            return Err(bad("values must be quoted"));
        }
        let close = after[1..]
            .iter()
            .position(|&b| b == quote)
            .ok_or_else(|| bad("a quoted value is not closed"))?;
        let value = &after[1..1 + close];
        rest = &after[close + 2..];
        let expected_order = ["version", "encoding", "standalone"];
        let index = expected_order
            .iter()
            .position(|n| n.as_bytes() == name)
            .ok_or_else(|| bad(&format!("unknown part {:?}", show(name))))?;
        if names
            .last()
            .and_then(|last| expected_order.iter().position(|n| n.as_bytes() == *last))
            .is_some_and(|prev| prev >= index)
        {
            return Err(bad(
                "parts must be version, encoding, standalone, in that order, each once",
            ));
        }
        if names.is_empty() && index != 0 {
            return Err(bad("version must come first"));
        }
        names.push(name);
        let ok = match index {
            0 => value == b"1.0",
            1 => ["iso-8859-1", "utf-8", "us-ascii"]
                .iter()
                .any(|enc| value.eq_ignore_ascii_case(enc.as_bytes())),
            _ => value == b"yes" || value == b"no",
        };
        if !ok {
            return Err(bad(&format!(
                "{}=\"{}\" is not allowed (version \"1.0\"; encoding iso-8859-1, utf-8 or us-ascii; standalone yes or no)",
                show(name),
                show(value)
            )));
        }
    }
    if names.is_empty() {
        return Err(bad("version is missing"));
    }
    Ok(())
}

fn skip_space(text: &[u8]) -> &[u8] {
    let n = text.iter().take_while(|&&b| is_xml_space(b)).count();
    &text[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = "<Serial>0004f2000001</Serial><Version>2.0</Version><Description>Phone</Description><Key>03A548A2</Key><Features>00</Features><Signature>ab</Signature>";

    fn doc(prolog: &str, body: &str, epilog: &str) -> String {
        format!("{prolog}<LICENSE>{body}</LICENSE>{epilog}")
    }

    fn texts(input: &str) -> Result<Vec<String>, Malformed> {
        read_fields(input.as_bytes()).map(|f| {
            f.iter()
                .map(|t| String::from_utf8_lossy(t.text).into_owned())
                .collect()
        })
    }

    fn reason(input: &str) -> String {
        texts(input).unwrap_err().reason
    }

    #[test]
    fn reads_six_fields_in_order() {
        let got = texts(&doc("", BODY, "")).unwrap();
        assert_eq!(
            got,
            ["0004f2000001", "2.0", "Phone", "03A548A2", "00", "ab"]
        );
    }

    #[test]
    fn trims_field_text_and_allows_comments_between_elements() {
        let body = BODY.replace("<Version>2.0", "<!-- c --><Version>\n 2.0\t");
        let got = texts(&doc("<!-- x -->\n", &body, "\n<!-- y -->\n")).unwrap();
        assert_eq!(got[1], "2.0");
    }

    #[test]
    fn declaration_rules() {
        for ok in [
            "<?xml version=\"1.0\"?>",
            "<?xml version='1.0' encoding='UTF-8'?>",
            "<?xml version=\"1.0\" encoding=\"iso-8859-1\" standalone=\"yes\"?>",
            "<?xml version=\"1.0\" encoding=\"US-ASCII\" standalone=\"no\" ?>",
        ] {
            assert!(texts(&doc(ok, BODY, "")).is_ok(), "{ok}");
        }
        for bad in [
            "<?xml version=\"1.1\"?>",
            "<?xml encoding=\"utf-8\"?>",
            "<?xml version=\"1.0\" encoding=\"utf-16\"?>",
            "<?xml version=\"1.0\" standalone=\"maybe\"?>",
            "<?xml version=\"1.0\" standalone=\"yes\" encoding=\"utf-8\"?>",
            "<?xml version=\"1.0\" foo=\"bar\"?>",
            " <?xml version=\"1.0\"?>",
            "<!-- c --><?xml version=\"1.0\"?>",
            "<?xml version=\"1.0\"?><?xml version=\"1.0\"?>",
        ] {
            assert!(texts(&doc(bad, BODY, "")).is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_what_the_spec_forbids() {
        let cases = [
            (doc("<!DOCTYPE x [<!ENTITY e \"v\">]>", BODY, ""), "DOCTYPE"),
            (doc("<!doctype x>", BODY, ""), "DOCTYPE"),
            (
                doc("", &BODY.replace("Phone", "Ph&amp;one"), ""),
                "reference",
            ),
            (
                doc("", &BODY.replace("Phone", "&#80;hone"), ""),
                "reference",
            ),
            (
                doc("", &BODY.replace("Phone", "<![CDATA[Phone]]>"), ""),
                "CDATA",
            ),
            (doc("<?php x?>", BODY, ""), "processing"),
            (
                doc("", &BODY.replace("<Key>", "<Key id=\"1\">"), ""),
                "attributes",
            ),
            (
                doc("", &BODY.replace("Phone", "Ph one"), ""),
                "white space inside",
            ),
            (
                doc("", &BODY.replace("Phone", "Ph<!--x-->one"), ""),
                "comment inside",
            ),
            (
                doc("", &BODY.replace("Phone", "<b>Phone</b>"), ""),
                "inside <Description>",
            ),
            (
                doc("", &format!("{BODY}<Extra>1</Extra>"), ""),
                "extra element",
            ),
            (
                doc(
                    "",
                    &BODY.replace("<Serial>", "<Serial>1</Serial><Serial>"),
                    "",
                ),
                "twice",
            ),
            (
                doc("", &BODY.replace("<Key>03A548A2</Key>", ""), ""),
                "<Key> is missing",
            ),
            (
                doc("", &BODY.replace("<Signature>ab</Signature>", ""), ""),
                "ends before <Signature>",
            ),
            (doc("", &format!("x{BODY}"), ""), "between the elements"),
            (doc("", BODY, "trailing"), "outside"),
            (doc("", BODY, "<LICENSE/>"), "after </LICENSE>"),
            (BODY.to_string(), "root element"),
            (doc("", BODY, "").replace("</LICENSE>", ""), "cut short"),
            (String::new(), "no <LICENSE>"),
            (
                doc("", &BODY.replace("Phone", "Ph\u{e9}one"), ""),
                "not ASCII",
            ),
            (
                doc("", &BODY.replace("Phone", "Ph\u{1}one"), ""),
                "control character",
            ),
            (doc("<!-- a -- b -->", BODY, ""), "not well-formed"),
            (doc("<!-- a --->", BODY, ""), "`--` was found in a comment"),
        ];
        for (input, expected) in cases {
            let got = reason(&input);
            assert!(
                got.contains(expected),
                "{input:?}: {got:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn empty_element_is_empty_text() {
        let got = texts(&doc("", &BODY.replace("<Key>03A548A2</Key>", "<Key/>"), "")).unwrap();
        assert_eq!(got[3], "");
    }

    #[test]
    fn errors_point_at_the_line() {
        let input = doc(
            "<!-- one -->\n",
            &BODY.replace("<Key>", "\n<Key a='b'>"),
            "",
        );
        let err = texts(&input).unwrap_err();
        assert_eq!(err.at.map(|a| a.line), Some(3));
    }
}
