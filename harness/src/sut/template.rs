//! Placeholders in a system spec's templates: `{name}` is replaced by the
//! value a lookup gives for `name`; `{{` and `}}` stand for literal braces
//! (for JSON or shell text inside a template). An unknown name or an
//! unclosed brace is an error that names the placeholder, so a spec with a
//! typo is refused when it is loaded, not when a node fails to start.

use std::fmt;

/// Why a template could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// `{name}` that the lookup does not know.
    Unknown(String),
    /// A `{` with no matching `}`, or a lone `}`.
    Unbalanced,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::Unknown(name) => write!(f, "unknown placeholder {{{name}}}"),
            TemplateError::Unbalanced => {
                f.write_str("unbalanced braces (write {{ and }} for literal braces)")
            }
        }
    }
}

/// Renders `tpl`, asking `lookup` for the value of each `{name}`.
pub fn render(
    tpl: &str,
    lookup: &mut dyn FnMut(&str) -> Option<String>,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(tpl.len());
    let mut rest = tpl;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("{{") {
            out.push('{');
            rest = after;
        } else if let Some(after) = tail.strip_prefix("}}") {
            out.push('}');
            rest = after;
        } else if tail.starts_with('}') {
            return Err(TemplateError::Unbalanced);
        } else {
            let close = tail.find('}').ok_or(TemplateError::Unbalanced)?;
            let name = &tail[1..close];
            if name.is_empty() || name.contains('{') {
                return Err(TemplateError::Unbalanced);
            }
            match lookup(name) {
                Some(v) => out.push_str(&v),
                None => return Err(TemplateError::Unknown(name.to_string())),
            }
            rest = &tail[close + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The names of the placeholders in `tpl`, in order (for validation).
pub fn placeholders(tpl: &str) -> Result<Vec<String>, TemplateError> {
    let mut names = Vec::new();
    render(tpl, &mut |name| {
        names.push(name.to_string());
        Some(String::new())
    })?;
    Ok(names)
}

/// When a whole template is exactly one placeholder, its name (an
/// `{each.X}` of args alone in a command element splices several arguments).
pub fn sole_placeholder(tpl: &str) -> Option<&str> {
    let inner = tpl.strip_prefix('{')?.strip_suffix('}')?;
    (!inner.is_empty() && !inner.contains(['{', '}'])).then_some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "id" => Some("n1".into()),
            "port.client" => Some("4001".into()),
            _ => None,
        }
    }

    #[test]
    fn replaces_names_and_keeps_escaped_braces() {
        assert_eq!(
            render("--name {id} --port={port.client}", &mut lookup).unwrap(),
            "--name n1 --port=4001"
        );
        assert_eq!(
            render(r#"{{"id": "{id}"}}"#, &mut lookup).unwrap(),
            r#"{"id": "n1"}"#
        );
    }

    #[test]
    fn unknown_and_unbalanced_are_errors() {
        assert_eq!(
            render("{dta_dir}", &mut lookup),
            Err(TemplateError::Unknown("dta_dir".into()))
        );
        assert_eq!(render("{id", &mut lookup), Err(TemplateError::Unbalanced));
        assert_eq!(render("id}", &mut lookup), Err(TemplateError::Unbalanced));
        assert_eq!(render("{}", &mut lookup), Err(TemplateError::Unbalanced));
        assert!(
            TemplateError::Unknown("x".into())
                .to_string()
                .contains("{x}")
        );
    }

    #[test]
    fn lists_placeholders_and_finds_a_sole_one() {
        assert_eq!(
            placeholders("a {id} b {each.peers}").unwrap(),
            vec!["id".to_string(), "each.peers".to_string()]
        );
        assert_eq!(sole_placeholder("{each.peers}"), Some("each.peers"));
        assert_eq!(sole_placeholder("x{each.peers}"), None);
    }
}
