//! `report.html`: recovery.md section 7's campaign report as one self-contained page (inline CSS
//! and SVG, nothing fetched): R1 setup, R2 outcomes, R3 success rates against ReHype and
//! NiLiHype, R5 failure causes with replay commands, R6 recovery latency (CDF and steps), R7
//! detection latency, then every run.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::judge::RunReport;
use super::model::Model;
use super::outcome::Outcome;
use super::replay_command;
use super::report::{Rate, Summary};
use crate::inject::Percentiles;

/// Text for HTML: the log's free text may hold anything.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent(rate: Option<f64>) -> String {
    rate.map_or("–".into(), |r| format!("{:.1} %", r * 100.0))
}

fn interval(ci: Option<[f64; 2]>) -> String {
    ci.map_or("–".into(), |[lo, hi]| {
        format!("{:.1} – {:.1} %", lo * 100.0, hi * 100.0)
    })
}

/// A virtual time in the unit that suits it.
fn time(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        _ => format!("{:.2} ms", ns as f64 / 1e6),
    }
}

fn row(cells: &[String]) -> String {
    let mut r = String::from("<tr>");
    for c in cells {
        let _ = write!(r, "<td>{c}</td>");
    }
    r + "</tr>"
}

fn table(head: &[&str], rows: &[String]) -> String {
    let mut t = String::from("<table><tr>");
    for h in head {
        let _ = write!(t, "<th>{h}</th>");
    }
    t.push_str("</tr>");
    rows.iter().for_each(|r| t.push_str(r));
    t + "</table>"
}

fn setup_table(s: &Summary) -> String {
    let u = &s.setup;
    let workloads: Vec<String> = u
        .workloads
        .iter()
        .map(|w| {
            format!(
                "{} on CPU {:?}: {} <code>{}</code>",
                esc(&w.partition),
                w.cpus,
                esc(&w.guest),
                esc(&w.args)
            )
        })
        .collect();
    let golden = format!(
        "{} runs of <code>{}</code>: exits {:?}, wall {:?} s, false detections {}{}",
        u.golden_runs,
        esc(&u.golden_cmdline),
        u.golden_exits,
        u.golden_wall_s
            .iter()
            .map(|w| (w * 10.0).round() / 10.0)
            .collect::<Vec<_>>(),
        s.golden_false_detections,
        s.golden_problems
            .iter()
            .map(|p| format!("<br>{}", esc(p)))
            .collect::<String>()
    );
    let hypervisor = if u.hypervisor_log.is_empty() {
        "nothing about recovery in a fault-free run".into()
    } else {
        u.hypervisor_log
            .iter()
            .map(|l| esc(l))
            .collect::<Vec<_>>()
            .join("<br>")
    };
    let rows = [
        ("build", esc(&u.commit)),
        ("recovery mode", u.mode.into()),
        ("fault model", u.model.into()),
        ("emulator", esc(&u.emulator)),
        (
            "board",
            format!("{} (<code>{}</code>)", esc(&u.board), esc(&u.config)),
        ),
        ("workloads", workloads.join("<br>")),
        (
            "correctness check",
            "each partition's console lines equal the golden run's (hashed, numbered), and each \
             partition shuts down with code 0"
                .into(),
        ),
        ("trigger", esc(&u.trigger)),
        ("seed", u.seed.to_string()),
        ("golden runs", golden),
        ("host timeout", format!("{} s", u.host_timeout_s)),
        ("hypervisor says", hypervisor),
    ];
    table(
        &["", ""],
        &rows.map(|(k, v)| row(&[format!("<b>{k}</b>"), v])),
    )
}

fn outcome_table(s: &Summary, model: Model) -> String {
    let of = s.measured();
    let mut rows: Vec<String> = Outcome::CLASSES
        .into_iter()
        .map(|o| {
            let r = Rate::new(s.count(o), of);
            row(&[
                o.name().into(),
                r.count.to_string(),
                percent(r.rate),
                interval(r.ci95),
            ])
        })
        .collect();
    for (name, r) in [
        (
            "recovered (≤ 1 partition) of detected",
            Rate::new(
                s.count(Outcome::RecoveredNovmf) + s.count(Outcome::RecoveredOneLost),
                s.detected,
            ),
        ),
        (
            "noVMF of detected",
            Rate::new(s.count(Outcome::RecoveredNovmf), s.detected),
        ),
        (
            "detection coverage (detected of manifested)",
            Rate::new(s.detected, s.manifested),
        ),
    ] {
        rows.push(row(&[
            format!("<b>{name}</b>"),
            format!("{} of {}", r.count, r.of),
            percent(r.rate),
            interval(r.ci95),
        ]));
    }
    let reference = model
        .outcome_references()
        .map_or(String::new(), |[quiet, sdc, detected]| {
            format!(
                "<p>ReHype, {} faults (3AppVM): not manifested {quiet} %, SDC {sdc} %, detected \
             {detected} %.</p>",
                model.name()
            )
        });
    table(&["outcome", "runs", "%", "95 % Wilson interval"], &rows) + &reference
}

// The success chart's plot area: y from 100 % at the top to 0 at the bottom.
const CHART_TOP: f64 = 20.0;
const CHART_HEIGHT: f64 = 240.0;
const CHART_LEFT: f64 = 50.0;
const GROUP_WIDTH: f64 = 120.0;
const BAR_WIDTH: f64 = 22.0;

fn y(rate: f64) -> f64 {
    CHART_TOP + CHART_HEIGHT * (1.0 - rate.clamp(0.0, 1.0))
}

/// One bar at `x`; ours (with `ci`) also get an error bar and their value written below the
/// interval, where the reference bars beside them leave room.
fn bar(x: f64, rate: f64, ci: Option<[f64; 2]>, fill: &str, title: &str) -> String {
    let mut svg = format!(
        "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{BAR_WIDTH}\" height=\"{:.1}\" fill=\"{fill}\">\
         <title>{title}: {:.1} %</title></rect>",
        y(rate),
        y(0.0) - y(rate),
        rate * 100.0
    );
    if let Some([lo, hi]) = ci {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#fff\" font-size=\"9\">{:.0}</text>",
            x + BAR_WIDTH / 2.0,
            (y(lo) + 11.0).min(y(0.0) - 2.0),
            rate * 100.0
        );
        let mid = x + BAR_WIDTH / 2.0;
        let _ = write!(
            svg,
            "<path d=\"M{mid:.1} {top:.1}V{bottom:.1}M{l:.1} {top:.1}H{r:.1}M{l:.1} {bottom:.1}H{r:.1}\" \
             stroke=\"#000\" class=\"errorbar\"/>",
            top = y(hi),
            bottom = y(lo),
            l = mid - 5.0,
            r = mid + 5.0
        );
    }
    svg
}

/// R3: per fault model, this campaign's "≤ 1 partition" and "noVMF" success (with their 95 %
/// intervals) next to ReHype's and NiLiHype's published success.
fn success_chart(s: &Summary, model: Model) -> String {
    const OURS: &str = "#1f6fb2";
    const OURS_NOVMF: &str = "#7db4e0";
    const REHYPE: &str = "#888";
    const NILIHYPE: &str = "#c8c8c8";
    let width = CHART_LEFT + GROUP_WIDTH * Model::ALL.len() as f64 + 10.0;
    let mut svg = format!(
        "<svg id=\"success\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"330\" \
         font-size=\"11\">"
    );
    for tick in (0..=10).map(|t| f64::from(t) / 10.0) {
        let _ = write!(
            svg,
            "<line x1=\"{CHART_LEFT}\" x2=\"{width}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{p:.0} %</text>",
            y = y(tick),
            tx = CHART_LEFT - 4.0,
            ty = y(tick) + 4.0,
            p = tick * 100.0
        );
    }
    for (i, m) in Model::ALL.into_iter().enumerate() {
        let x0 = CHART_LEFT + GROUP_WIDTH * i as f64 + 8.0;
        let at = |k: f64| x0 + k * (BAR_WIDTH + 3.0);
        if m == model {
            if let (Some(r), ci) = (s.recovered_rate, s.recovered_ci95) {
                svg.push_str(&bar(at(0.0), r, ci, OURS, "Tandem, ≤ 1 partition"));
            }
            if let (Some(r), ci) = (s.novmf_rate, s.novmf_ci95) {
                svg.push_str(&bar(at(1.0), r, ci, OURS_NOVMF, "Tandem, noVMF"));
            }
            if s.recovered_rate.is_none() {
                let _ = write!(
                    svg,
                    "<text x=\"{:.1}\" y=\"{:.1}\">no detected runs</text>",
                    at(0.0),
                    y(0.05)
                );
            }
        }
        if let Some((rehype, nilihype)) = m.references() {
            svg.push_str(&bar(at(2.0), rehype / 100.0, None, REHYPE, "ReHype"));
            svg.push_str(&bar(at(3.0), nilihype / 100.0, None, NILIHYPE, "NiLiHype"));
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + 2.0 * (BAR_WIDTH + 3.0) - 1.5,
            y(0.0) + 16.0,
            m.name()
        );
    }
    let legend = [
        (OURS, "Tandem ≤ 1 partition"),
        (OURS_NOVMF, "Tandem noVMF"),
        (REHYPE, "ReHype ≤ 1 VM"),
        (NILIHYPE, "NiLiHype ≤ 1 VM"),
    ];
    for (i, (fill, label)) in legend.into_iter().enumerate() {
        let x = CHART_LEFT + 140.0 * i as f64;
        let _ = write!(
            svg,
            "<rect x=\"{x}\" y=\"300\" width=\"10\" height=\"10\" fill=\"{fill}\"/>\
             <text x=\"{}\" y=\"309\">{label}</text>",
            x + 14.0
        );
    }
    svg + "</svg>"
}

fn failures(s: &Summary) -> String {
    if s.top_failures.is_empty() {
        return "<p>No failed run.</p>".into();
    }
    let rows: Vec<String> = s
        .top_failures
        .iter()
        .map(|f| {
            let replays: Vec<String> = f
                .replay
                .iter()
                .map(|&seed| {
                    format!(
                        "<code>{}</code>",
                        replay_command(s.setup.model, s.arch, s.mode, seed)
                    )
                })
                .collect();
            row(&[esc(&f.cause), f.count.to_string(), replays.join("<br>")])
        })
        .collect();
    table(&["cause", "runs", "replay"], &rows)
}

// The CDF's plot area.
const CDF_LEFT: f64 = 50.0;
const CDF_WIDTH: f64 = 560.0;
const CDF_TOP: f64 = 15.0;
const CDF_HEIGHT: f64 = 200.0;

/// R6: the recovery latency's empirical CDF as a step polyline.
fn latency_cdf(mut ns: Vec<u64>) -> String {
    let mut svg = format!(
        "<svg id=\"latency-cdf\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"250\" \
         font-size=\"11\"><path d=\"M{CDF_LEFT} {CDF_TOP}V{bottom}H{right}\" stroke=\"#000\" fill=\"none\"/>\
         <text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\">1</text>\
         <text x=\"{lx}\" y=\"{by}\" text-anchor=\"end\">0</text>",
        CDF_LEFT + CDF_WIDTH + 40.0,
        bottom = CDF_TOP + CDF_HEIGHT,
        right = CDF_LEFT + CDF_WIDTH,
        lx = CDF_LEFT - 4.0,
        ty = CDF_TOP + 4.0,
        by = CDF_TOP + CDF_HEIGHT,
    );
    ns.sort_unstable();
    let Some(&max) = ns.last() else {
        return svg
            + &format!(
                "<text x=\"{}\" y=\"{}\">no recovered run</text></svg>",
                CDF_LEFT + 10.0,
                CDF_TOP + CDF_HEIGHT / 2.0
            );
    };
    let n = ns.len() as f64;
    let x = |v: u64| CDF_LEFT + CDF_WIDTH * v as f64 / max.max(1) as f64;
    let y = |k: f64| CDF_TOP + CDF_HEIGHT * (1.0 - k / n);
    let mut points = format!("{CDF_LEFT},{:.1}", y(0.0));
    for (i, &v) in ns.iter().enumerate() {
        let _ = write!(
            points,
            " {:.1},{:.1} {:.1},{:.1}",
            x(v),
            y(i as f64),
            x(v),
            y(i as f64 + 1.0)
        );
    }
    let _ = write!(
        svg,
        "<polyline points=\"{points}\" fill=\"none\" stroke=\"#1f6fb2\" stroke-width=\"1.5\"/>\
         <text x=\"{CDF_LEFT}\" y=\"{ly}\">0</text>\
         <text x=\"{rx}\" y=\"{ly}\" text-anchor=\"end\">{max} (virtual time)</text></svg>",
        ly = CDF_TOP + CDF_HEIGHT + 16.0,
        rx = CDF_LEFT + CDF_WIDTH,
        max = time(max),
    );
    svg
}

fn spread_cells(p: &Percentiles) -> [String; 3] {
    [time(p.p50), time(p.p99), time(p.max)]
}

fn steps_table(s: &Summary) -> String {
    let mut rows = vec![row(&[
        vec!["<b>total</b>".to_string()],
        spread_cells(&s.latency_ns).to_vec(),
    ]
    .concat())];
    rows.extend(
        s.steps_ns
            .iter()
            .map(|(step, p)| row(&[vec![esc(step)], spread_cells(p).to_vec()].concat())),
    );
    table(&["step", "p50", "p99", "max"], &rows)
}

/// R7: detection latency per detection cause, and the hangs only the host's timeout caught.
fn detection_table(s: &Summary, reports: &[RunReport]) -> String {
    let mut by_cause: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for r in reports {
        if let (Some(cause), Some(ns)) = (&r.detection, r.detection_latency_ns) {
            by_cause.entry(cause).or_default().push(ns);
        }
    }
    let mut rows: Vec<String> = by_cause
        .into_iter()
        .map(|(cause, ns)| {
            let n = ns.len();
            row(&[
                vec![esc(cause), n.to_string()],
                spread_cells(&Percentiles::of(ns)).to_vec(),
            ]
            .concat())
        })
        .collect();
    rows.push(row(&[
        vec!["<b>all</b>".to_string(), s.detected.to_string()],
        spread_cells(&s.detection_latency_ns).to_vec(),
    ]
    .concat()));
    let hangs_caught = reports
        .iter()
        .filter(|r| r.outcome.detected() && r.detection.as_deref() == Some("hang"))
        .count();
    format!(
        "{}<p>Hangs caught by the hypervisor's watchdog: {hangs_caught}; caught only by the \
         host's timeout: {}.</p>",
        table(&["cause", "runs", "p50", "p99", "max"], &rows),
        s.count(Outcome::UndetectedHang)
    )
}

fn runs_table(reports: &[RunReport]) -> String {
    let rows: Vec<String> = reports
        .iter()
        .map(|r| {
            let opt = |v: &Option<String>| v.as_deref().map_or("–".into(), esc);
            let ns = |v: Option<u64>| v.map_or("–".into(), time);
            row(&[
                r.seed.to_string(),
                r.outcome.name().into(),
                opt(&r.sub_cause),
                opt(&r.injection),
                opt(&r.detection),
                ns(r.detection_latency_ns),
                ns(r.recovery_ns),
                esc(&r.problems.join("; ")),
            ])
        })
        .collect();
    table(
        &[
            "seed",
            "outcome",
            "sub-cause",
            "injected",
            "detected",
            "detection latency",
            "recovery",
            "problems",
        ],
        &rows,
    )
}

pub fn render(s: &Summary, model: Model, reports: &[RunReport]) -> String {
    let recovered: Vec<u64> = reports
        .iter()
        .filter(|r| r.outcome.recovered())
        .filter_map(|r| r.recovery_ns)
        .collect();
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Tandem {model} campaign ({mode}, {arch})</title>\
<style>body{{font-family:sans-serif;max-width:1100px}}td,th{{padding:2px 8px;border-bottom:1px solid #ccc;\
text-align:left;vertical-align:top}}code{{font-size:90%}}</style>\
<h1>Tandem {model} campaign, {mode}, {arch}</h1>\
<p>{runs} runs: {detected} detected, recovered (≤ 1 partition) {rate} ({ci}), noVMF {novmf} ({novmf_ci}); \
golden false detections {false_detections}.</p>\
<h2>R1. Setup</h2>{setup}\
<h2>R2. Outcomes</h2>{outcomes}\
<h2>R3. Success per fault model</h2><p>Out of detected failures, in percent; Tandem's with \
their 95 % Wilson intervals, ReHype's and NiLiHype's (at most one VM affected) from DSN'18 Fig. 2 (3AppVM).</p>{chart}\
<h2>R5. Why runs failed</h2>{failures}\
<h2>R6. Recovery latency</h2><p>Over recovered runs, as the hypervisor measured it.</p>{cdf}{steps}\
<h2>R7. Detection latency</h2>{detection}\
<h2>Runs</h2>{runs_table}",
        model = model.name(),
        mode = s.mode,
        arch = s.arch,
        runs = s.runs,
        detected = s.detected,
        rate = percent(s.recovered_rate),
        ci = interval(s.recovered_ci95),
        novmf = percent(s.novmf_rate),
        novmf_ci = interval(s.novmf_ci95),
        false_detections = s.golden_false_detections,
        setup = setup_table(s),
        outcomes = outcome_table(s, model),
        chart = success_chart(s, model),
        failures = failures(s),
        cdf = latency_cdf(recovered),
        steps = steps_table(s),
        detection = detection_table(s, reports),
        runs_table = runs_table(reports),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery_campaign::report::tests::campaign;

    #[test]
    fn the_page_has_every_section_and_both_charts() {
        let (s, reports) = campaign();
        let page = render(&s, Model::Register, &reports);
        for section in ["R1. Setup", "R2. Outcomes", "R3.", "R5.", "R6.", "R7."] {
            assert!(page.contains(section), "no {section}");
        }
        assert!(page.contains("<svg id=\"success\""));
        assert!(page.contains("<svg id=\"latency-cdf\""));
        assert!(page.contains("<polyline"), "the CDF has its line");
        assert_eq!(
            page.matches("class=\"errorbar\"").count(),
            2,
            "ours, with intervals"
        );
        assert!(page.contains("<title>ReHype: 96.3 %</title>"));
        assert!(page.contains("--replay 3"), "failures name their replay");
        assert!(
            page.contains("not manifested 74.8 %"),
            "ReHype's breakdown beside ours"
        );
        assert!(
            !page.contains(" src=") && !page.contains("href="),
            "nothing is fetched"
        );
    }

    #[test]
    fn free_text_is_escaped_and_an_empty_campaign_renders() {
        assert_eq!(esc("<b> & \""), "&lt;b&gt; &amp; &quot;");
        let (mut s, _) = campaign();
        s.recovered_rate = None;
        s.novmf_rate = None;
        s.top_failures.clear();
        let page = render(&s, Model::Hang, &[]);
        assert!(page.contains("no recovered run") && page.contains("No failed run."));
    }

    #[test]
    fn times_take_a_fitting_unit() {
        assert_eq!(time(999), "999 ns");
        assert_eq!(time(22_500), "22.5 µs");
        assert_eq!(time(713_000_000), "713.00 ms");
    }
}
