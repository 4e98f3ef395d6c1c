//! Errors in scenario files, located by file, line and column.

use std::fmt;
use std::ops::Range;

/// One problem in a scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong and what would be valid.
    pub message: String,
    /// The offending line, for display.
    pub source_line: String,
    /// Width of the underline, in characters.
    pub width: usize,
}

/// Every problem found in one scenario file; nothing runs while there is one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file as the user named it.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl ScenarioError {
    /// An error that is not tied to a position, such as an unreadable file.
    pub fn whole_file(file: &str, message: impl Into<String>) -> Self {
        Self {
            file: file.to_owned(),
            problems: vec![Problem {
                line: 1,
                column: 1,
                message: message.into(),
                source_line: String::new(),
                width: 0,
            }],
        }
    }
}

impl std::error::Error for ScenarioError {}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, problem.line, problem.column, problem.message
            )?;
            if !problem.source_line.is_empty() {
                let gutter = problem.line.to_string().len();
                write!(
                    f,
                    "\n{:gutter$} |\n{} | {}\n{:gutter$} | {}{}",
                    "",
                    problem.line,
                    problem.source_line,
                    "",
                    " ".repeat(problem.column - 1),
                    "^".repeat(problem.width.max(1)),
                )?;
            }
        }
        Ok(())
    }
}

/// Collects problems for one file, turning byte spans into lines and columns.
pub struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    found: Vec<(usize, Problem)>,
}

impl<'a> Problems<'a> {
    /// Starts collecting for `file` with contents `text`.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            file,
            text,
            found: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the file).
    pub fn add(&mut self, span: Range<usize>, message: impl Into<String>) {
        let start = span.start.min(self.text.len());
        let end = span.end.clamp(start, self.text.len());
        let line_start = self.text[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i);
        let line = self.text[..start].matches('\n').count() + 1;
        let column = self.text[line_start..start].chars().count() + 1;
        let width = self.text[start..end.min(line_end)].chars().count();
        let source_line = self.text[line_start..line_end].trim_end_matches('\r');
        self.found.push((
            start,
            Problem {
                line,
                column,
                message: message.into(),
                source_line: source_line.to_owned(),
                width,
            },
        ));
    }

    /// The error with every problem in file order, or `Ok` when there is none.
    pub fn finish(mut self) -> Result<(), ScenarioError> {
        if self.found.is_empty() {
            return Ok(());
        }
        self.found.sort_by_key(|(start, _)| *start);
        Err(ScenarioError {
            file: self.file.to_owned(),
            problems: self.found.into_iter().map(|(_, problem)| problem).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_shows_line_column_and_underline() {
        let text = "name = \"x\"\nduration = \"5x\"\n";
        let mut problems = Problems::new("demo.toml", text);
        let start = text.find("\"5x\"").unwrap();
        problems.add(start..start + 4, "invalid duration");
        let error = problems.finish().unwrap_err();
        assert_eq!(error.problems[0].line, 2);
        assert_eq!(error.problems[0].column, 12);
        assert_eq!(
            error.to_string(),
            "demo.toml:2:12: invalid duration\n  |\n2 | duration = \"5x\"\n  |            ^^^^"
        );
    }
}
