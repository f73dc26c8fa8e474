//! Rich-text message content: a ProseMirror/TipTap-style JSON document, validated against
//! a closed set of node and mark types, with size limits, and its plain text for search.
//!
//! ```json
//! {"type":"doc","content":[{"type":"paragraph","content":[
//!   {"type":"text","text":"Hello "},
//!   {"type":"text","text":"world","marks":[{"type":"bold"}]}]}]}
//! ```

use crate::error::{Error, Result};
use serde_json::Value;

/// The largest document, serialised, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;
/// The most text a document may hold, in characters.
pub const MAX_TEXT_CHARS: usize = 20_000;
const MAX_DEPTH: usize = 16;

/// Block and inline node types a document may use.
const NODES: &[&str] = &[
    "doc",
    "paragraph",
    "text",
    "heading",
    "bulletList",
    "orderedList",
    "listItem",
    "blockquote",
    "codeBlock",
    "hardBreak",
    "horizontalRule",
    "mention",
];
/// Mark types text may carry.
const MARKS: &[&str] = &["bold", "italic", "strike", "underline", "code", "link"];
/// Nodes after which plain text gets a line break.
const BLOCKS: &[&str] = &[
    "paragraph",
    "heading",
    "listItem",
    "blockquote",
    "codeBlock",
    "hardBreak",
];

/// A validated document and the plain text extracted from it.
#[derive(Debug, Clone, PartialEq)]
pub struct RichText {
    /// The document.
    pub doc: Value,
    /// Its text, blocks separated by newlines.
    pub text: String,
}

impl RichText {
    /// A document of plain `text`: one paragraph per non-empty line, NUL characters
    /// dropped, cut to the text and size limits (for text the server writes, such as the
    /// assistant's answers). `None` when no text remains.
    pub fn from_plain(text: &str) -> Option<Self> {
        let text: String = text.chars().filter(|c| *c != '\0').collect();
        let mut left = MAX_TEXT_CHARS;
        let mut bytes = 64;
        let mut paragraphs = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: String = line.chars().take(left).collect();
            // Escaping can double a line's bytes: leave room for it.
            bytes += 2 * line.len() + 64;
            if line.is_empty() || bytes > MAX_BYTES {
                break;
            }
            left -= line.chars().count();
            paragraphs.push(serde_json::json!({
                "type": "paragraph",
                "content": [{"type": "text", "text": line}],
            }));
        }
        let doc = serde_json::json!({"type": "doc", "content": paragraphs});
        Self::parse("content", doc).ok()
    }

    /// Validates `doc` from request field `field`. A document must hold some text or a
    /// mention.
    pub fn parse(field: &str, doc: Value) -> Result<Self> {
        let size = serde_json::to_vec(&doc)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > MAX_BYTES {
            return Err(Error::invalid(
                field,
                format!("must be at most {MAX_BYTES} bytes of JSON"),
            ));
        }
        // PostgreSQL's jsonb cannot hold NUL, in text, attributes or keys alike.
        if holds_nul(&doc) {
            return Err(Error::invalid(field, "must not contain NUL characters"));
        }
        if doc.get("type").and_then(Value::as_str) != Some("doc") {
            return Err(Error::invalid(
                field,
                "must be a document: {\"type\":\"doc\",\"content\":[...]}",
            ));
        }
        let mut text = String::new();
        let mut mentions = 0;
        walk(field, &doc, 0, &mut text, &mut mentions)?;
        let text = text.trim().to_owned();
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(Error::invalid(
                field,
                format!("must hold at most {MAX_TEXT_CHARS} characters of text"),
            ));
        }
        if text.is_empty() && mentions == 0 {
            return Err(Error::invalid(field, "must not be empty"));
        }
        Ok(Self { doc, text })
    }
}

/// Checks the attributes of a node or mark of type `kind` against what that type may carry
/// (what TipTap's own extensions write); anything else is refused, so that no attribute
/// (a `class`, a spoofed id) reaches other clients unchecked.
fn check_attrs(
    kind: &str,
    attrs: &serde_json::Map<String, Value>,
) -> std::result::Result<(), String> {
    let text =
        |v: &Value, max: usize| v.is_null() || v.as_str().is_some_and(|s| s.chars().count() <= max);
    let int = |v: &Value, range: std::ops::RangeInclusive<i64>| {
        v.as_i64().is_some_and(|n| range.contains(&n))
    };
    for (name, value) in attrs {
        let ok = match (kind, name.as_str()) {
            ("heading", "level") => int(value, 1..=6),
            ("orderedList", "start") => int(value, 1..=1_000_000),
            ("codeBlock", "language") => text(value, 64),
            // The id of the user mentioned (checked as a member when sent), or `all` (every
            // member) or `here` (the members with an open stream).
            ("mention", "id") => value.as_str().is_some_and(|s| {
                s == MENTION_ALL || s == MENTION_HERE || uuid::Uuid::parse_str(s).is_ok()
            }),
            ("mention", "label") => text(value, 200),
            ("link", "href") => value.is_string(),
            ("link", "target") => value.is_null() || value.as_str() == Some("_blank"),
            ("link", "rel") => text(value, 100),
            // TipTap writes `class: null` on links: allowed only empty.
            ("link", "class") => value.is_null(),
            _ => return Err(format!("cannot carry the attribute `{name}`")),
        };
        if !ok {
            return Err(format!("has an invalid `{name}`"));
        }
    }
    Ok(())
}

/// The mention id that names every member.
pub const MENTION_ALL: &str = "all";
/// The mention id that names the members with an open stream.
pub const MENTION_HERE: &str = "here";

impl RichText {
    /// The ids of the document's mention nodes.
    fn mention_ids(&self) -> Vec<&str> {
        fn walk<'a>(node: &'a Value, out: &mut Vec<&'a str>) {
            if node.get("type").and_then(Value::as_str) == Some("mention")
                && let Some(id) = node
                    .get("attrs")
                    .and_then(|a| a.get("id"))
                    .and_then(Value::as_str)
            {
                out.push(id);
            }
            for c in node
                .get("content")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.doc, &mut out);
        out
    }

    /// The users the document mentions by id (checked as UUIDs when it was parsed).
    pub fn mentions(&self) -> Vec<crate::domain::UserId> {
        let mut out: Vec<_> = self
            .mention_ids()
            .into_iter()
            .filter_map(|s| uuid::Uuid::parse_str(s).ok())
            .map(crate::domain::UserId)
            .collect();
        out.sort_unstable_by_key(|u| u.0);
        out.dedup();
        out
    }

    /// Whether the document mentions `@all` / `@here`.
    pub fn mentions_everyone(&self) -> (bool, bool) {
        let ids = self.mention_ids();
        (ids.contains(&MENTION_ALL), ids.contains(&MENTION_HERE))
    }

    /// Whether the document mentions anyone (a user, `@all` or `@here`).
    pub fn mentions_anyone(&self) -> bool {
        !self.mention_ids().is_empty()
    }
}

fn holds_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(holds_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

fn walk(
    field: &str,
    node: &Value,
    depth: usize,
    text: &mut String,
    mentions: &mut usize,
) -> Result<()> {
    let bad = |why: String| Error::invalid(field, why);
    if depth > MAX_DEPTH {
        return Err(bad(format!("must nest at most {MAX_DEPTH} levels")));
    }
    let obj = node
        .as_object()
        .ok_or_else(|| bad("nodes must be objects".into()))?;
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("every node needs a type".into()))?;
    if !NODES.contains(&kind) || (kind == "doc" && depth > 0) {
        return Err(bad(format!("node type `{kind}` is not allowed")));
    }
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "type" | "content" | "text" | "marks" | "attrs"
        ) {
            return Err(bad(format!("unknown node property `{key}`")));
        }
    }
    if let Some(attrs) = obj.get("attrs") {
        let attrs = attrs
            .as_object()
            .ok_or_else(|| bad("attrs must be an object".into()))?;
        check_attrs(kind, attrs).map_err(|why| bad(format!("`{kind}` {why}")))?;
    }
    match kind {
        "text" => {
            let t = obj
                .get("text")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("text nodes need text".into()))?;
            text.push_str(t);
        }
        "mention" => {
            *mentions += 1;
            let label = obj
                .get("attrs")
                .and_then(|a| a.get("label"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            text.push('@');
            text.push_str(label);
        }
        _ if obj.contains_key("text") => {
            return Err(bad(format!("`{kind}` nodes cannot have text")));
        }
        _ => {}
    }
    if let Some(marks) = obj.get("marks") {
        let marks = marks
            .as_array()
            .ok_or_else(|| bad("marks must be a list".into()))?;
        for m in marks {
            let t = m.get("type").and_then(Value::as_str).unwrap_or_default();
            if !MARKS.contains(&t) {
                return Err(bad(format!("mark type `{t}` is not allowed")));
            }
            if let Some(attrs) = m.get("attrs") {
                let attrs = attrs
                    .as_object()
                    .ok_or_else(|| bad("attrs must be an object".into()))?;
                check_attrs(t, attrs).map_err(|why| bad(format!("mark `{t}` {why}")))?;
            }
            if t == "link" {
                let href = m
                    .get("attrs")
                    .and_then(|a| a.get("href"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !(href.starts_with("https://")
                    || href.starts_with("http://")
                    || href.starts_with("mailto:"))
                {
                    return Err(bad("links must be http(s) or mailto URLs".into()));
                }
            }
        }
    }
    if let Some(children) = obj.get("content") {
        let children = children
            .as_array()
            .ok_or_else(|| bad("content must be a list".into()))?;
        for c in children {
            walk(field, c, depth + 1, text, mentions)?;
        }
    }
    if BLOCKS.contains(&kind) {
        text.push('\n');
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn para(t: &str) -> Value {
        json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":t}]}]})
    }

    #[test]
    fn a_document_yields_its_plain_text() {
        let doc = json!({"type":"doc","content":[
            {"type":"paragraph","content":[{"type":"text","text":"Hello "},{"type":"text","text":"world","marks":[{"type":"bold"}]}]},
            {"type":"paragraph","content":[{"type":"mention","attrs":{"id":"0b4f8cf2-5a44-4a39-9a1e-4c0a51c2b0f1","label":"ada"}}]}]});
        assert_eq!(
            RichText::parse("content", doc).unwrap().text,
            "Hello world\n@ada"
        );
    }

    #[test]
    fn what_tiptap_writes_is_accepted() {
        let doc = json!({"type":"doc","content":[
            {"type":"heading","attrs":{"level":2},"content":[{"type":"text","text":"Title"}]},
            {"type":"orderedList","attrs":{"start":1},"content":[{"type":"listItem","content":[
                {"type":"paragraph","content":[{"type":"text","text":"one","marks":[{"type":"link",
                  "attrs":{"href":"https://a.example","target":"_blank","rel":"noopener noreferrer nofollow","class":null}}]}]}]}]},
            {"type":"codeBlock","attrs":{"language":null},"content":[{"type":"text","text":"x"}]}]});
        assert!(RichText::parse("content", doc).is_ok());
    }

    #[test]
    fn bad_documents_are_rejected() {
        for bad in [
            json!({"type":"paragraph"}),
            json!({"type":"doc","content":[{"type":"script","text":"x"}]}),
            json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"x","marks":[{"type":"link","attrs":{"href":"javascript:alert(1)"}}]}]}]}),
            json!({"type":"doc","content":[]}),
            para("a\u{0}b"),
            para(&"x".repeat(MAX_TEXT_CHARS + 1)),
            // Attributes a type does not carry, or bad values of those it does.
            json!({"type":"doc","content":[{"type":"paragraph","attrs":{"class":"x"},"content":[{"type":"text","text":"x"}]}]}),
            json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"x","marks":[{"type":"link","attrs":{"href":"https://a.example","class":"spoof"}}]}]}]}),
            json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"text","text":"x","marks":[{"type":"bold","attrs":{"style":"x"}}]}]}]}),
            json!({"type":"doc","content":[{"type":"paragraph","content":[{"type":"mention","attrs":{"id":"not-a-user","label":"ada"}}]}]}),
            json!({"type":"doc","content":[{"type":"heading","attrs":{"level":9},"content":[{"type":"text","text":"x"}]}]}),
        ] {
            assert!(RichText::parse("content", bad.clone()).is_err(), "{bad}");
        }
    }
}
