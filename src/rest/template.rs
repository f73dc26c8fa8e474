//! `google.api.http` path templates: parsing and matching.
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! Verb     = ":" LITERAL ;
//! ```

use percent_encoding::percent_decode_str;

/// One segment pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// Exactly this text.
    Literal(String),
    /// Any one segment.
    One,
    /// Zero or more segments (last in the template).
    Rest,
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The segment patterns, each with the index of the variable it belongs to.
    parts: Vec<(Part, Option<usize>)>,
    /// The field paths of the variables, in order.
    vars: Vec<String>,
    /// The custom verb after `:`, if any.
    verb: Option<String>,
}

impl Template {
    /// Parses a template such as `/api/projects/{project_id}/members/{user_id}`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let body = raw
            .strip_prefix('/')
            .ok_or_else(|| format!("template {raw} does not start with /"))?;
        // A verb is a `:` after the last `}` or `/`.
        let tail_start = body.rfind(['}', '/']).map_or(0, |i| i + 1);
        let (body, verb) = match body[tail_start..].find(':') {
            Some(i) => (
                &body[..tail_start + i],
                Some(body[tail_start + i + 1..].to_owned()),
            ),
            None => (body, None),
        };
        let mut t = Template {
            parts: vec![],
            vars: vec![],
            verb,
        };
        let mut rest = body;
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let end = inner
                    .find('}')
                    .ok_or_else(|| format!("unclosed variable in {raw}"))?;
                let (field, pattern) = match inner[..end].split_once('=') {
                    Some((f, p)) => (f, p),
                    None => (&inner[..end], "*"),
                };
                let idx = t.vars.len();
                t.vars.push(field.to_owned());
                for seg in pattern.split('/') {
                    t.parts.push((segment(seg), Some(idx)));
                }
                rest = &inner[end + 1..];
            } else {
                let end = rest.find('/').unwrap_or(rest.len());
                t.parts.push((segment(&rest[..end]), None));
                rest = &rest[end..];
            }
            rest = rest.strip_prefix('/').unwrap_or(rest);
        }
        Ok(t)
    }

    /// The variables' field paths.
    pub fn variables(&self) -> &[String] {
        &self.vars
    }

    /// The number of literal segments: more literals means a more specific match.
    pub fn literal_count(&self) -> usize {
        self.parts
            .iter()
            .filter(|(p, _)| matches!(p, Part::Literal(_)))
            .count()
    }

    /// The template in OpenAPI form: `{field}` for each variable.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut last_var = None;
        for (part, var) in &self.parts {
            match var {
                Some(v) if last_var == Some(*v) => continue,
                Some(v) => out.push_str(&format!("/{{{}}}", self.vars[*v])),
                None => match part {
                    Part::Literal(l) => out.push_str(&format!("/{l}")),
                    Part::One => out.push_str("/*"),
                    Part::Rest => out.push_str("/**"),
                },
            }
            last_var = *var;
        }
        if let Some(v) = &self.verb {
            out.push(':');
            out.push_str(v);
        }
        out
    }

    /// True when the template ends in a custom verb (`:verb`).
    pub fn has_verb(&self) -> bool {
        self.verb.is_some()
    }

    /// Matches a request path; on success returns each variable's field path and value
    /// (percent-decoded).
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let path = path.strip_prefix('/')?;
        let path = match &self.verb {
            Some(v) => path.strip_suffix(v.as_str())?.strip_suffix(':')?,
            None => path,
        };
        self.matches_segments(&split(path))
    }

    /// Matches the segments of a path without a verb. Checks first without allocating: most
    /// templates do not match.
    pub fn matches_segments(&self, segs: &[&str]) -> Option<Vec<(String, String)>> {
        let mut i = 0;
        for (part, _) in &self.parts {
            match part {
                Part::Literal(l) if segs.get(i) == Some(&l.as_str()) => i += 1,
                Part::One if segs.get(i).is_some_and(|s| !s.is_empty()) => i += 1,
                Part::Rest => i = segs.len(),
                _ => return None,
            }
        }
        if i != segs.len() {
            return None;
        }
        let mut captured: Vec<Vec<&str>> = vec![vec![]; self.vars.len()];
        let mut i = 0;
        for (part, var) in &self.parts {
            let n = if *part == Part::Rest {
                segs.len() - i
            } else {
                1
            };
            if let Some(v) = var {
                captured[*v].extend_from_slice(&segs[i..i + n]);
            }
            i += n;
        }
        Some(
            self.vars
                .iter()
                .zip(captured)
                .map(|(name, segs)| {
                    let value = segs
                        .iter()
                        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/");
                    (name.clone(), value)
                })
                .collect(),
        )
    }
}

/// The segments of a path (without its leading `/`).
pub fn split(path: &str) -> Vec<&str> {
    if path.is_empty() {
        vec![]
    } else {
        path.split('/').collect()
    }
}

fn segment(s: &str) -> Part {
    match s {
        "*" => Part::One,
        "**" => Part::Rest,
        lit => Part::Literal(lit.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(t: &str, path: &str) -> Option<Vec<(String, String)>> {
        Template::parse(t).unwrap().matches(path)
    }

    #[test]
    fn literals_and_single_segment_variables_match() {
        assert_eq!(
            vars("/api/projects/{id}", "/api/projects/abc"),
            Some(vec![("id".into(), "abc".into())])
        );
        assert_eq!(vars("/api/projects/{id}", "/api/projects"), None);
        assert_eq!(vars("/api/projects/{id}", "/api/projects/a/b"), None);
        assert_eq!(vars("/api/projects", "/api/projects"), Some(vec![]));
    }

    #[test]
    fn nested_fields_multi_segment_variables_and_verbs_match() {
        assert_eq!(
            vars("/v1/{project.id}/tasks", "/v1/p%201/tasks"),
            Some(vec![("project.id".into(), "p 1".into())])
        );
        assert_eq!(
            vars("/v1/{name=files/**}", "/v1/files/a/b.txt"),
            Some(vec![("name".into(), "files/a/b.txt".into())])
        );
        assert_eq!(
            vars("/v1/{name=shelves/*}:archive", "/v1/shelves/s1:archive"),
            Some(vec![("name".into(), "shelves/s1".into())])
        );
        assert_eq!(vars("/v1/{name=shelves/*}:archive", "/v1/shelves/s1"), None);
    }

    #[test]
    fn the_openapi_form_names_each_variable_once() {
        let t = Template::parse("/v1/{name=files/**}/x/{id}").unwrap();
        assert_eq!(t.openapi_path(), "/v1/{name}/x/{id}");
        assert_eq!(t.literal_count(), 3);
    }
}
