//! The report page: the runs and their configs, a before/after table of every evaluation metric
//! (first evaluation, last, best), the pictures (PNG, each linked to its SVG), and the worst
//! examples of the error-analysis file. One file beside its `report/` folder; nothing is loaded
//! from the network. On load it records on <body> how many of its images loaded
//! (`data-images-loaded="n/m"`), which the browser test reads.

use std::fmt::Write;

use super::runlog::RunLog;

pub struct Figure {
    pub title: String,
    /// The image path without extension, relative to the page.
    pub stem: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e12 {
        format!("{x:.0}")
    } else if x.abs() >= 1e-3 && x.abs() < 1e6 {
        format!("{x:.4}")
    } else {
        format!("{x:.4e}")
    }
}

/// Rows of the before/after table: metric, first (step), last (step), best.
fn before_after(run: &RunLog) -> String {
    let mut out = String::new();
    for (metric, points) in &run.eval {
        let (Some(first), Some(last)) = (points.first(), points.last()) else { continue };
        let lower_is_better = metric.contains("loss") || metric.contains("perplexity") || metric.contains("ppl");
        let best = points.iter().map(|p| p.1).fold(if lower_is_better { f64::INFINITY } else { f64::NEG_INFINITY }, |a, b| if lower_is_better { a.min(b) } else { a.max(b) });
        let change = last.1 - first.1;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} <small>(step {})</small></td><td>{} <small>(step {})</small></td><td>{}{}</td><td>{}</td></tr>",
            escape(metric),
            number(first.1),
            first.0,
            number(last.1),
            last.0,
            if change >= 0.0 { "+" } else { "" },
            number(change),
            number(best)
        );
    }
    out
}

pub fn page(runs: &[RunLog], figures: &[Figure]) -> String {
    let title = if runs.len() == 1 { format!("moontune report: {}", runs[0].name) } else { format!("moontune report: {} runs", runs.len()) };
    let mut body = format!("<h1>{}</h1>\n", escape(&title));
    for run in runs {
        let steps = run.train.values().flat_map(|p| p.iter().map(|x| x.0)).fold(0.0f64, f64::max);
        let _ = write!(body, "<section><h2>{}</h2><p>{} steps · <code>{}</code></p>", escape(&run.name), steps, escape(&run.dir.display().to_string()));
        if let serde_json::Value::Object(cfg) = &run.config {
            let items: Vec<String> = cfg.iter().map(|(k, v)| format!("<code>{}={}</code>", escape(k), escape(&v.to_string()))).collect();
            let _ = write!(body, "<p class=\"config\">{}</p>", items.join(" "));
        }
        let table = before_after(run);
        if !table.is_empty() {
            let _ = write!(body, "<h3>Before and after</h3><table><tr><th>metric</th><th>first evaluation</th><th>last evaluation</th><th>change</th><th>best</th></tr>{table}</table>");
        }
        if !run.errors.is_empty() {
            let _ = write!(body, "<h3>Worst examples (errors.jsonl)</h3><table><tr><th>input</th><th>prediction</th><th>reference</th><th>score</th></tr>");
            for e in run.errors.iter().take(20) {
                let field = |k: &str| e.get(k).map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).unwrap_or_default();
                let short: String = field("input").chars().take(300).collect();
                let _ = write!(body, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", escape(&short), escape(&field("prediction")), escape(&field("reference")), escape(&field("score")));
            }
            body.push_str("</table>");
        }
        body.push_str("</section>\n");
    }
    body.push_str("<section class=\"figures\">");
    for f in figures {
        let _ = write!(
            body,
            "<figure><a href=\"{stem}.svg\"><img src=\"{stem}.png\" alt=\"{title}\" width=\"720\" height=\"420\"></a><figcaption>{title}</figcaption></figure>",
            stem = escape(&f.stem),
            title = escape(&f.title)
        );
    }
    body.push_str("</section>");
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
body{{font-family:sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:.5em 0 1.5em}} \
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}} th{{background:#f3f3f3}} \
.figures{{display:flex;flex-wrap:wrap;gap:1em}} figure{{margin:0}} figcaption{{text-align:center;color:#555}} \
.config code{{background:#f5f5f5;padding:0 .3em;margin-right:.3em}}</style>\n\
<script>window.addEventListener('load',function(){{var a=document.images,n=0;for(var i=0;i<a.length;i++){{if(a[i].complete&&a[i].naturalWidth>0)n++}}document.body.setAttribute('data-images-loaded',n+'/'+a.length)}});</script>\n\
</head><body>\n{}\n</body></html>\n",
        escape(&title),
        body
    )
}
