//! The `moontune` command: `run` a recipe (or `launch` it on several ranks), `test` Lua files, open a `repl`, ask the `doctor`,
//! or `convert` a model between a Hugging Face directory and GGUF.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use anyhow::Result;
use clap::{Parser, Subcommand};

use moontune::commands::{convert, data, doctor, lua_tests, output, repl, report, types};
use moontune::run::{self, RunOptions};
use moontune::ui::{headless, tui};
use std::io::IsTerminal;

#[derive(Parser)]
#[command(name = "moontune", version, about = "Fine-tune language models with recipes written in Lua, over libtorch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a recipe (or a plain Lua script), overriding config values with key=value.
    Run {
        #[command(flatten)]
        run: RunArgs,
    },
    /// Run a recipe on several ranks, data-parallel, as torchrun does: --nproc processes here
    /// (and --nnodes machines meeting at --master), each a `moontune run` with torchrun's
    /// environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
    Launch {
        /// Ranks on this machine.
        #[arg(long, default_value_t = 1)]
        nproc: usize,
        /// Machines taking part.
        #[arg(long, default_value_t = 1)]
        nnodes: usize,
        /// This machine's place among them (0 serves the rendezvous).
        #[arg(long, default_value_t = 0)]
        node_rank: usize,
        /// Node 0's ADDR:PORT (default on one machine: 127.0.0.1 and a free port).
        #[arg(long)]
        master: Option<String>,
        /// Seconds a collective waits for the other ranks before it fails.
        #[arg(long, allow_negative_numbers = true, default_value_t = moontune::dist::world::DEFAULT_TIMEOUT_S)]
        timeout: f64,
        /// What carries collectives on CUDA tensors: auto (NCCL where CUDA is available), gloo
        /// or nccl; CPU tensors always go through Gloo. Sets MOONTUNE_DIST_BACKEND for the ranks.
        #[arg(long, default_value = "auto")]
        backend: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Show versions (moontune, libtorch, Lua), threads, and CUDA devices.
    Doctor,
    /// Run Lua test files (default: tests/lua); prints "N passed, M failed".
    Test {
        /// Test files or directories of them.
        paths: Vec<PathBuf>,
    },
    /// An interactive Lua prompt with moontune loaded.
    Repl,
    /// Install the Lua API's annotations (moontune.lua) in DIR, for editor completion; or write
    /// the markdown API reference made from them.
    Types {
        /// The folder to write moontune.lua into (a recipe folder, or one listed under
        /// workspace.library in .luarc.json).
        #[arg(required_unless_present = "markdown")]
        dir: Option<PathBuf>,
        /// Write the markdown reference to this file instead ("-": standard output).
        #[arg(long, value_name = "FILE", conflicts_with = "dir")]
        markdown: Option<PathBuf>,
    },
    /// Convert a model: a Hugging Face directory to a GGUF file (tokenizer and chat template
    /// included), or a GGUF file to a Hugging Face directory.
    Convert {
        /// A Hugging Face model directory, or a .gguf file (or a directory holding one).
        input: PathBuf,
        /// NAME.gguf, or the directory to write.
        output: PathBuf,
        /// The GGUF file type: f32, f16, bf16, q8_0, q4_0 or q4_k_m.
        #[arg(long = "type", default_value = "f16")]
        file_type: String,
        /// The dtype weights are loaded in (float32 when not given).
        #[arg(long)]
        dtype: Option<String>,
    },
    /// Write report.html and pictures of every metric for a run directory (or several, overlaid).
    Report {
        /// Run directories (runs/<recipe>-<time>).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where to write (default: the run's own directory; for several runs runs/compare-<time>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Look at a dataset file before training on it.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
}

/// What `run` takes, and `launch` passes on to every rank.
#[derive(clap::Args)]
struct RunArgs {
    /// The recipe file.
    recipe: PathBuf,
    /// Config overrides, e.g. lr=1e-4 steps=200.
    overrides: Vec<String>,
    /// Plain output instead of the terminal UI (automatic when stdout is not a terminal).
    #[arg(long)]
    headless: bool,
    /// Do not reload the recipe when its files change (SIGHUP and `:reload` still do).
    #[arg(long)]
    no_watch: bool,
    /// Where run directories are made.
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// The Lua heap's limit (tables, strings; not tensors), e.g. 512M or 16G. Default: 8G,
    /// or half the machine's memory if less.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    lua_memory: Option<u64>,
    /// Continue the run in RUN_DIR from its latest checkpoint (same weights, optimizer state,
    /// random streams and data position as when it was written).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
}

impl RunArgs {
    /// The arguments of `moontune run` that give these back.
    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.headless {
            args.push("--headless".into());
        }
        if self.no_watch {
            args.push("--no-watch".into());
        }
        args.extend(["--runs-dir".into(), self.runs_dir.display().to_string()]);
        if let Some(bytes) = self.lua_memory {
            args.extend(["--lua-memory".into(), bytes.to_string()]);
        }
        if let Some(dir) = &self.resume {
            args.extend(["--resume".into(), dir.display().to_string()]);
        }
        args.push(self.recipe.display().to_string());
        args.extend(self.overrides.iter().cloned());
        args
    }
}

#[derive(Subcommand)]
enum DataCommand {
    /// Count, fields and types, length histogram, duplicates and near-duplicates, personal data,
    /// label distribution and a few examples.
    Inspect {
        /// A JSONL, JSON, CSV, TSV, text or Parquet file (or a folder of text files).
        file: PathBuf,
        /// Measure lengths in this tokenizer's tokens (a model folder or tokenizer.json).
        #[arg(long, value_name = "DIR")]
        tokenizer: Option<PathBuf>,
        /// The file's format, when its extension does not tell.
        #[arg(long)]
        format: Option<String>,
        /// CSV/TSV without a header: the names of its columns, comma-separated.
        #[arg(long, value_delimiter = ',')]
        columns: Option<Vec<String>>,
        /// How many examples to show.
        #[arg(long, default_value_t = 3)]
        examples: usize,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// Set by SIGHUP. Headless, it asks the run loop to reload the recipe (the daemon convention);
/// under the TUI it means the terminal went away, and the run stops.
static HANGUP: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();

extern "C" fn on_hangup(_: libc::c_int) {
    if let Some(flag) = HANGUP.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

fn run_recipe(recipe: PathBuf, overrides: Vec<String>, runs_dir: PathBuf, watch: bool, headless: bool, lua_memory: Option<u64>, resume: Option<PathBuf>) -> Result<u8> {
    let hangup = HANGUP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { libc::signal(libc::SIGHUP, on_hangup as *const () as libc::sighandler_t) };
    let use_tui = !headless && std::io::stdout().is_terminal();
    let stop = if use_tui { hangup.clone() } else { Arc::new(AtomicBool::new(false)) };
    let reload = if use_tui { Arc::new(AtomicBool::new(false)) } else { hangup.clone() };
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            eprintln!("\nmoontune: aborted");
            std::process::exit(130);
        }
        eprintln!("\nmoontune: stopping after the current step (Ctrl-C again to abort)");
    })?;
    let (tx, rx) = mpsc::channel();
    let (command_tx, commands) = mpsc::channel();
    let front: std::thread::JoinHandle<Result<()>> = if use_tui {
        tui::install_panic_restore();
        let device = if tch::Cuda::is_available() { "cuda" } else { "cpu" };
        tui::spawn(rx, command_tx.clone(), device.to_string(), hangup.clone())
    } else {
        headless::spawn(rx)
    };
    let opts = RunOptions { recipe, overrides, runs_root: runs_dir, stop, reload, watch, commands, command_tx, lua_memory, resume };
    let result = run::run(&opts, &tx);
    drop(tx);
    if use_tui && hangup.load(Ordering::SeqCst) {
        // The terminal hung up: the UI thread may be stuck reading a dead tty, and there is
        // nobody to show anything to. The run stopped after its step; end here.
        return Ok(129);
    }
    match front.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("moontune: the front end failed: {e:#}"),
        Err(_) => eprintln!("moontune: the front end panicked"),
    }
    let follower = moontune::dist::world::place().is_ok_and(|p| p.rank > 0);
    if !use_tui && follower {
        // The other ranks' standard output is dropped under `moontune launch`; their errors
        // go to standard error, which the launcher shows with the rank.
        if let Err(e) = &result {
            eprintln!("moontune: error: {e:#}");
        }
    }
    if use_tui {
        match &result {
            Ok(o) => eprintln!("moontune: {} after {} steps; run directory: {}", if o.interrupted { "stopped" } else { "finished" }, o.steps, o.run_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()),
            Err(e) => eprintln!("moontune: error: {e:#}"),
        }
    }
    Ok(match result {
        // Ctrl-C's conventional code; a quit the user asked for (`:quit`, `q`) is a success.
        Ok(outcome) if outcome.interrupted && !outcome.quit => 130,
        Ok(_) => 0,
        Err(_) => 1,
    })
}

fn parse_size(text: &str) -> Result<u64, String> {
    moontune::tensor::headroom::parse_bytes(text).map_err(|e| e.to_string())
}

fn write_types(dir: Option<PathBuf>, markdown: Option<PathBuf>) -> Result<u8> {
    match (dir, markdown) {
        (_, Some(file)) => {
            let text = types::reference_markdown()?;
            if file.as_os_str() == "-" {
                output::text(&text)?;
            } else {
                moontune::io::atomic::write_atomic(&file, text.as_bytes())?;
            }
        }
        (Some(dir), None) => output::line(types::install(&dir)?)?,
        (None, None) => anyhow::bail!("give a folder, or --markdown FILE"),
    }
    Ok(0)
}

fn main() {
    moontune::tensor::allocator::tune_heap();
    if let Some(warning) = moontune::tensor::cuda_runtime::load() {
        eprintln!("moontune: {warning}");
    }
    // No panic is meant to be reachable from a script; should one happen inside a Lua call it is
    // turned into a Lua error, so say it in one line instead of a Rust backtrace.
    std::panic::set_hook(Box::new(|info| {
        if moontune::tensor::guard::catching() {
            return; // a libtorch failure that guard::catch turns into the call's error
        }
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("panic");
        eprintln!("moontune: internal error: {}", moontune::lua::args::tidy(message));
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { run: RunArgs { recipe, overrides, headless, no_watch, runs_dir, lua_memory, resume } } => run_recipe(recipe, overrides, runs_dir, !no_watch, headless, lua_memory, resume),
        Command::Launch { nproc, nnodes, node_rank, master, timeout, backend, run } => {
            let rank0_tui = !run.headless && std::io::stdout().is_terminal();
            let o = moontune::dist::launch::LaunchOptions { nproc, nnodes, node_rank, master, timeout, backend, run_args: run.to_args(), rank0_tui };
            moontune::dist::launch::launch(&o)
        }
        Command::Doctor => doctor::report().and_then(|lines| output::line(lines.join("\n"))).map(|()| 0),
        Command::Test { paths } => {
            let paths = if paths.is_empty() { vec![PathBuf::from("tests/lua")] } else { paths };
            lua_tests::run(&paths).map(|t| if t.failed == 0 { 0 } else { 1 })
        }
        Command::Repl => repl::run().map(|()| 0),
        Command::Types { dir, markdown } => write_types(dir, markdown),
        Command::Report { runs, out } => report::report(&runs, out.as_deref()).map(|()| 0),
        Command::Data { command: DataCommand::Inspect { file, tokenizer, format, columns, examples, json } } => {
            let o = data::InspectOptions { format: format.as_deref(), tokenizer: tokenizer.as_deref(), columns, examples, json };
            data::inspect_file(&file, &o).map(|()| 0)
        }
        Command::Convert { input, output: out, file_type, dtype } => convert::convert(&input, &out, &file_type, dtype.as_deref()).and_then(output::line).map(|()| 0),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("moontune: error: {e:#}");
            1
        }
    };
    finish(code)
}

/// Ends the process with `code` once everything is written. By now every Rust value (the Lua
/// state, its files, the run's outputs) has been dropped; Rust's and C's output buffers are
/// flushed, then `_exit` skips the static destructors of libtorch and the CUDA libraries, which
/// at exit touched about 120 MiB more memory (a spike in peak RSS that a container or a
/// benchmark sees) and do nothing a finished command needs.
fn finish(code: u8) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: fflush(NULL) flushes every C stream; _exit ends the process without returning.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code as i32)
    }
}
