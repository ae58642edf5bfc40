//! Snapshot tests of the TUI layout (ratatui's TestBackend) at 80×24 and 160×48, with several
//! metrics, train and eval on one chart, a reload marker, an error in the log pane and a
//! heat-map panel. The expected screens are in tests/snapshots; set MOONTUNE_UPDATE_SNAPSHOTS=1
//! to rewrite them after an intended change (and review the diff). Also: a real model's fusion
//! weights reach the screen as a heat map.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use moontune::nn::module::ParamCounts;
use moontune::peft::AdapterSummary;
use moontune::run::event::{Event, Panel};
use moontune::ui::tui::state::TuiState;
use moontune::ui::tui::view;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn scripted_state(t0: Instant) -> TuiState {
    let mut s = TuiState::new("cpu".into());
    s.apply(Event::Started { recipe: "scripts/finetune.lua".into(), run_dir: Some("runs/finetune-20261128-120000".into()), total_steps: Some(500), log_every: 10 }, t0);
    s.apply(Event::Model(ParamCounts { total: 297_280, trainable: 4_480, by_owner: vec![("base".into(), 292_800, 0), ("a".into(), 4_480, 4_480)] }), t0);
    s.apply(
        Event::Adapters(vec![
            AdapterSummary { name: "a".into(), method: "LoRA".into(), active: true, parameters: 4_480, trainable: 4_480, norm: 3.674, grad_norm: Some(0.0123) },
            AdapterSummary { name: "b".into(), method: "IA3".into(), active: false, parameters: 1_180, trainable: 0, norm: 34.35, grad_norm: None },
        ]),
        t0,
    );
    for step in 1..=120u64 {
        let x = step as f64;
        let metrics = vec![("grad_norm".into(), 1.0 / (1.0 + x / 50.0)), ("loss".into(), 3.0 * (-x / 60.0).exp() + 0.4), ("lr".into(), 2e-4), ("tokens".into(), 512.0)];
        s.apply(Event::Step { step, metrics, panels: Vec::new() }, t0 + Duration::from_millis(100 * step));
        if step % 40 == 0 {
            s.apply(Event::Eval { step, metrics: vec![("loss".into(), 3.2 * (-x / 60.0).exp() + 0.5), ("acc".into(), x / 200.0)], panels: Vec::new() }, t0 + Duration::from_millis(100 * step));
        }
        if step == 70 {
            s.apply(Event::Reload { step, version: 2, error: None }, t0);
        }
    }
    s.apply(Event::Log("epoch 1 done".into()), t0);
    s.apply(Event::Reload { step: 110, version: 2, error: Some("syntax error: scripts/finetune.lua:42: unexpected symbol near ')'".into()) }, t0);
    let panel = Panel { name: "confusion".into(), rows: vec!["neg".into(), "pos".into()], cols: vec!["neg".into(), "pos".into()], values: vec![vec![41.0, 9.0], vec![6.0, 44.0]] };
    s.apply(Event::Eval { step: 120, metrics: Vec::new(), panels: vec![panel] }, t0);
    s.rss_mib = Some(512.0);
    s
}

fn screen(width: u16, height: u16) -> String {
    let t0 = Instant::now();
    let state = scripted_state(t0);
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::draw(f, &state, t0 + Duration::from_secs(65))).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..height {
        let line: String = (0..width).map(|x| buffer[(x, y)].symbol().to_string()).collect();
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn check(width: u16, height: u16) {
    let got = screen(width, height);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/tui_{width}x{height}.txt"));
    if std::env::var_os("MOONTUNE_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("no snapshot at {}; run with MOONTUNE_UPDATE_SNAPSHOTS=1 and review it", path.display()));
    assert_eq!(got, want, "the {width}x{height} screen changed:\n{got}");
    for needle in ["step 120/500", "loss", "grad_norm", "acc", "reload failed", "scripts/finetune.lua:42", "confusion", "RSS 512 MiB", "recipe v2 (1 reload)", "a LoRA on 4.5K ‖θ‖ 3.67 ‖∇‖ 0.012", "b IA3 off 0 ‖θ‖ 34.35"] {
        assert!(got.contains(needle), "{width}x{height} lacks {needle:?}:\n{got}");
    }
}

#[test]
fn layout_at_80x24() {
    check(80, 24);
}

#[test]
fn layout_at_160x48() {
    check(160, 48);
}

/// A model with a fusion shows what the fusion decided as a heat map: a tiny Llama with two
/// bottleneck adapters fused runs once, its panels (as the run loop takes them from
/// `state.model`) reach the TUI, and the screen shows the fusion's name, each layer's point and
/// the adapters.
#[test]
fn a_fusion_shows_its_weights_as_a_heat_map() {
    use moontune::models::model::{ForwardInput, Model};
    use moontune::nn::compose::Setup;
    use moontune::peft::bottleneck::BnConfig;
    use moontune::peft::fusion::FusionConfig;
    use moontune::peft::modular;
    use tch::{Device, Kind, Tensor};

    let config = serde_json::json!({ "vocab_size": 40, "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                                     "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 32 });
    let serde_json::Value::Object(map) = config else { unreachable!("a JSON object") };
    let mut model = Model::new("LlamaForCausalLM", map, Kind::Float, Device::Cpu).unwrap();
    for name in ["sst2", "agnews"] {
        modular::add_bottleneck(&mut model, name, BnConfig::preset("seq_bn").unwrap(), None, true).unwrap();
    }
    let names = vec!["sst2".to_string(), "agnews".to_string()];
    modular::add_fusion(&mut model, &names, FusionConfig::preset("dynamic").unwrap(), None).unwrap();
    modular::set_active(&mut model, Setup::Fuse(names.iter().map(|n| Setup::Name(n.clone())).collect())).unwrap();
    let ids = Tensor::from_slice(&[3i64, 7, 1, 9]).view([1, 4]);
    model.forward(&ForwardInput { input_ids: Some(ids), ..Default::default() }, None).unwrap();
    let panels: Vec<Panel> = modular::model_panels(&model)
        .into_iter()
        .map(|(name, rows, cols, values)| {
            let (values, rows, cols) = moontune::run::panel::from_tensor(&values, Some(rows), Some(cols)).unwrap();
            Panel { name, rows, cols, values }
        })
        .collect();
    assert_eq!(panels.len(), 1);
    for row in &panels[0].values {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5, "{row:?}");
    }
    let t0 = Instant::now();
    let mut state = TuiState::new("cpu".into());
    state.apply(Event::Started { recipe: "scripts/adapter_fusion.lua".into(), run_dir: None, total_steps: Some(10), log_every: 1 }, t0);
    state.apply(Event::Step { step: 1, metrics: vec![("loss".into(), 1.0)], panels }, t0);
    let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
    terminal.draw(|f| view::draw(f, &state, t0)).unwrap();
    let buffer = terminal.backend().buffer().clone();
    let screen: String = (0..48).map(|y| (0..160).map(|x| buffer[(x, y)].symbol().to_string()).collect::<String>() + "\n").collect();
    for needle in ["fusion sst2,agnews", "0 output", "1 output", "sst2", "agnews"] {
        assert!(screen.contains(needle), "the screen lacks {needle:?}:\n{screen}");
    }
}
