//! Diagnostics that point into the experiment file.
//!
//! Validation collects every problem it finds (not just the first) and returns them together
//! as one [`SpecError`]; each problem labels a span of the YAML source.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use crate::yaml::Span;

/// One problem in an experiment file.
#[derive(Clone, Debug)]
pub struct Problem {
    /// Stable code, e.g. `cedm::spec::unknown_kind` (listed in docs/experiment-format.md).
    pub code: &'static str,
    /// What is wrong, naming the node and parameter.
    pub message: String,
    /// The offending text.
    pub span: Span,
    /// The label drawn under the span.
    pub label: String,
    /// What would be accepted, when we know.
    pub help: Option<String>,
    src: Option<Arc<NamedSource<String>>>,
}

impl Problem {
    /// A problem with a label and no help.
    pub fn new(
        code: &'static str,
        message: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) -> Problem {
        Problem {
            code,
            message: message.into(),
            span,
            label: label.into(),
            help: None,
            src: None,
        }
    }

    /// Add a help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one experiment file.
#[derive(Debug, Clone)]
pub struct SpecError {
    src: Arc<NamedSource<String>>,
    file: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl SpecError {
    /// Problems of the file `path` whose text is `src`.
    pub fn new(path: &Path, src: &str, mut problems: Vec<Problem>) -> SpecError {
        problems.sort_by_key(|p| p.span.offset);
        let file = path.display().to_string();
        let text = src;
        let src = Arc::new(NamedSource::new(file.clone(), src.to_string()).with_language("yaml"));
        for p in &mut problems {
            // A problem on a very long line (a 100 000-character flow mapping) is shown as its
            // line and column, not as a snippet of the whole line.
            let at = p.span.offset.min(text.len());
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            if end - start > 1000 {
                let line = text[..at].matches('\n').count() + 1;
                let col = text[start..at].chars().count() + 1;
                p.message = format!("{} (line {line}, column {col})", p.message);
                p.src = None;
            } else {
                p.src = Some(src.clone());
            }
        }
        SpecError {
            src,
            file,
            problems,
        }
    }

    /// 1-based line of a problem.
    pub fn line_of(&self, p: &Problem) -> usize {
        let text = self.src.inner();
        text[..p.span.offset.min(text.len())].matches('\n').count() + 1
    }

    /// Render without colours at a fixed width (tests, logs, non-terminals).
    pub fn render_plain(&self) -> String {
        let mut out = String::new();
        let handler =
            miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
                .with_width(100);
        let _ = handler.render_report(&mut out, self);
        out
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "{}", one.message),
            many => write!(f, "{} problems in {}", many.len(), self.file),
        }
    }
}

impl std::error::Error for SpecError {}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

fn labels_of(p: &Problem) -> Box<dyn Iterator<Item = LabeledSpan> + '_> {
    Box::new(std::iter::once(LabeledSpan::new_with_span(
        Some(p.label.clone()),
        p.span,
    )))
}

impl Diagnostic for Problem {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.code))
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(labels_of(self))
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.src.as_deref().map(|s| s as &dyn SourceCode)
    }
}

impl Diagnostic for SpecError {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        match self.problems.as_slice() {
            [one] => Some(Box::new(one.code)),
            _ => Some(Box::new("cedm::spec")),
        }
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        match self.problems.as_slice() {
            [one] => one
                .help
                .as_ref()
                .map(|h| Box::new(h.clone()) as Box<dyn fmt::Display>),
            _ => None,
        }
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        match self.problems.as_slice() {
            [one] if one.src.is_some() => Some(labels_of(one)),
            _ => None,
        }
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        match self.problems.as_slice() {
            // A problem on a very long line carries no snippet (see SpecError::new).
            [one] if one.src.is_none() => None,
            _ => Some(&*self.src),
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.problems.len() < 2 {
            return None;
        }
        Some(Box::new(self.problems.iter().map(|p| p as &dyn Diagnostic)))
    }
}
