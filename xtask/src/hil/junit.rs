//! The JUnit XML report CI systems show: one test suite for the rig, one test case a scenario.

use std::fmt::Write;
use std::time::Duration;

/// How one scenario went.
pub struct Case {
    pub name: String,
    pub elapsed: Duration,
    /// Why it failed, if it did.
    pub failure: Option<String>,
    /// Each board's console during the scenario.
    pub consoles: Vec<(String, Vec<String>)>,
}

/// The report for `cases` run on rig `rig`.
pub fn report(rig: &str, cases: &[Case]) -> String {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let total: f64 = cases.iter().map(|c| c.elapsed.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuite name=\"hil {}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">",
        escape(rig),
        cases.len()
    );
    for case in cases {
        let _ = writeln!(
            xml,
            "  <testcase name=\"{}\" classname=\"hil.{}\" time=\"{:.3}\">",
            escape(&case.name),
            escape(rig),
            case.elapsed.as_secs_f64()
        );
        if let Some(why) = &case.failure {
            let first = why.lines().next().unwrap_or_default();
            let _ = writeln!(
                xml,
                "    <failure message=\"{}\">{}</failure>",
                escape(first),
                escape(why)
            );
        }
        let mut out = String::new();
        for (board, lines) in &case.consoles {
            for line in lines {
                let _ = writeln!(out, "{board}: {line}");
            }
        }
        let _ = writeln!(xml, "    <system-out>{}</system-out>", escape(&out));
        xml.push_str("  </testcase>\n");
    }
    xml.push_str("</testsuite>\n");
    xml
}

/// Text as XML character data or an attribute value; characters XML 1.0 cannot carry at all
/// (control characters a console may show) become U+FFFD.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".into(),
            '<' => "&lt;".into(),
            '>' => "&gt;".into(),
            '"' => "&quot;".into(),
            '\'' => "&apos;".into(),
            '\t' | '\n' | '\r' => c.to_string(),
            c if (c as u32) < 0x20 => '\u{fffd}'.to_string(),
            c => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_and_a_console_with_markup_and_control_bytes_stay_well_formed() {
        let cases = [
            Case {
                name: "hil/boot".into(),
                elapsed: Duration::from_millis(1500),
                failure: None,
                consoles: vec![("a".into(), vec!["[c] <b>&\u{1b}[0m".into()])],
            },
            Case {
                name: "hil/power-cut".into(),
                elapsed: Duration::from_secs(2),
                failure: Some("step 3 (expect \"x\")\nno such line".into()),
                consoles: vec![],
            },
        ];
        let xml = report("stand-in", &cases);
        assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
        assert!(xml.contains("a: [c] &lt;b&gt;&amp;\u{fffd}[0m"), "{xml}");
        assert!(
            xml.contains("<failure message=\"step 3 (expect &quot;x&quot;)\">"),
            "{xml}"
        );
        assert_eq!(xml.matches("<testcase").count(), 2);
        assert_eq!(xml.matches("</testcase>").count(), 2);
    }
}
