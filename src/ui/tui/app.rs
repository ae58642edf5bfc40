//! The TUI thread: owns the terminal (raw mode, alternate screen, restored on every exit path,
//! panics included), applies run events to the state, turns keys into commands for the run
//! thread, and redraws at most every 100 ms. The run thread never waits for it.

use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Result;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::Terminal;

use super::state::{Prompt, TuiState};
use super::view;
use crate::run::{Command, Event};

const FRAME: Duration = Duration::from_millis(100);

/// Leaves raw mode and the alternate screen.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen, ratatui::crossterm::cursor::Show);
}

/// Makes a panic restore the terminal before its message is printed.
pub fn install_panic_restore() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

fn rss_mib() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = text.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0 / (1 << 20) as f64)
}

/// What a key does: commands to send, and whether the UI should end now.
pub fn on_key(state: &mut TuiState, key: KeyEvent, commands: &Sender<Command>) -> bool {
    let send = |c: Command| {
        let _ = commands.send(c);
    };
    let quit = |state: &mut TuiState| {
        let _ = commands.send(Command::Quit);
        state.quitting = true;
        state.prompt = Prompt::None;
        state.finished
    };
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return quit(state);
    }
    match &mut state.prompt {
        Prompt::Repl(text) => {
            match key.code {
                KeyCode::Enter => {
                    let line = std::mem::take(text);
                    state.prompt = Prompt::None;
                    if !line.trim().is_empty() {
                        send(Command::Repl(line));
                    }
                }
                KeyCode::Esc => state.prompt = Prompt::None,
                KeyCode::Backspace => {
                    text.pop();
                }
                KeyCode::Char(c) => text.push(c),
                _ => {}
            }
            return false;
        }
        Prompt::Quit if state.finished => return matches!(key.code, KeyCode::Char('q' | 'n' | 'y') | KeyCode::Esc | KeyCode::Enter),
        Prompt::Quit => {
            match key.code {
                KeyCode::Char('y') => {
                    send(Command::Save);
                    return quit(state);
                }
                KeyCode::Char('n') => return quit(state),
                KeyCode::Esc => state.prompt = Prompt::None,
                _ => {}
            }
            return false;
        }
        Prompt::None => {}
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc | KeyCode::Enter if state.finished => return true,
        KeyCode::Char('q') => state.prompt = Prompt::Quit,
        KeyCode::Char('p') => send(Command::TogglePause),
        KeyCode::Char('s') => send(Command::Save),
        KeyCode::Char('e') => send(Command::EvalNow),
        KeyCode::Char('r') => send(Command::Reload),
        KeyCode::Char(':') => state.prompt = Prompt::Repl(String::new()),
        KeyCode::Char('?') => state.help = !state.help,
        KeyCode::Char('m') => state.smooth = !state.smooth,
        KeyCode::Char('v') => state.recent = !state.recent,
        KeyCode::Right => state.selected = state.selected.wrapping_add(1),
        KeyCode::Left => {
            let n = state.metric_names().len().max(1);
            state.selected = (state.selected + n - 1) % n;
        }
        _ => {}
    }
    false
}

fn ui_loop(terminal: &mut Terminal<CrosstermBackend<Stdout>>, events: Receiver<Event>, commands: Sender<Command>, device: String, hangup: &AtomicBool) -> Result<()> {
    let mut state = TuiState::new(device);
    let mut last_draw = Instant::now() - FRAME;
    loop {
        let now = Instant::now();
        if hangup.load(Ordering::SeqCst) {
            // The terminal is gone: nothing to draw on, no keys will come.
            let _ = commands.send(Command::Quit);
            return Ok(());
        }
        while let Ok(e) = events.try_recv() {
            state.apply(e, now);
        }
        if state.finished && state.quitting {
            return Ok(());
        }
        if now.duration_since(last_draw) >= FRAME {
            state.rss_mib = rss_mib();
            state.cuda_mib = crate::tensor::cuda_memory::per_device()
                .into_iter()
                .map(|(a, r)| (a as f64 / (1 << 20) as f64, r as f64 / (1 << 20) as f64))
                .collect();
            terminal.draw(|f| view::draw(f, &state, now))?;
            last_draw = now;
        }
        if event::poll(Duration::from_millis(25))? {
            if let TermEvent::Key(key) = event::read()? {
                if key.kind == KeyEventKind::Press {
                    if on_key(&mut state, key, &commands) {
                        return Ok(());
                    }
                    last_draw = Instant::now() - FRAME;
                }
            }
        }
    }
}

/// Starts the TUI on its own thread; it ends when the user leaves (q after the run is over, or
/// after asking to quit and the run stopping).
/// `hangup` is set when the terminal hangs up (SIGHUP).
pub fn spawn(events: Receiver<Event>, commands: Sender<Command>, device: String, hangup: Arc<AtomicBool>) -> JoinHandle<Result<()>> {
    std::thread::spawn(move || {
        enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        execute!(stdout, EnterAlternateScreen)?;
        let result = Terminal::new(CrosstermBackend::new(stdout)).map_err(anyhow::Error::from).and_then(|mut t| ui_loop(&mut t, events, commands, device, &hangup));
        restore_terminal();
        result
    })
}
