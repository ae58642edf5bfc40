//! `moontune launch`: starts the ranks of a data-parallel run on this machine, as torchrun does.
//! It serves the rendezvous store itself (on node 0; the other nodes' launchers reach it), starts
//! `--nproc` processes of `moontune run` with torchrun's environment, and watches them. Rank 0
//! keeps the terminal (the UI); the other ranks' standard error is shown with a `[rank K]`
//! prefix (after the UI closes, when rank 0 has one) and their standard output, a copy of rank
//! 0's, is dropped. When a rank fails, the launcher writes which one in the store (the others'
//! errors name it), gives the rest a few seconds to stop on their own, then ends them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::c10d::Store;
use super::world::{LOST_KEY, STORE_PREFIX};

/// The exit code of a run stopped by Ctrl-C.
const INTERRUPTED: i32 = 130;

/// Seconds the other ranks get to stop by themselves after one failed (at most the timeout).
const GRACE_S: f64 = 10.0;

pub struct LaunchOptions {
    /// Ranks on this machine.
    pub nproc: usize,
    pub nnodes: usize,
    pub node_rank: usize,
    /// `ADDR:PORT` of node 0's store (default on one node: 127.0.0.1 and a free port).
    pub master: Option<String>,
    /// Seconds a collective or the rendezvous waits for the others.
    pub timeout: f64,
    /// What carries collectives on CUDA tensors: auto, gloo or nccl (world.rs's `Backend`).
    pub backend: String,
    /// Arguments of `moontune run` (flags, the recipe and its overrides).
    pub run_args: Vec<String>,
    /// Rank 0 shows the terminal UI (its stdout is a terminal and --headless was not given).
    pub rank0_tui: bool,
}

/// Runs the ranks to their end; the exit code is the first failed rank's, else 0.
pub fn launch(o: &LaunchOptions) -> Result<u8> {
    if o.nproc == 0 || o.nnodes == 0 {
        bail!("--nproc and --nnodes must be at least 1");
    }
    if !(o.timeout > 0.0 && o.timeout.is_finite()) {
        bail!("--timeout must be a positive number of seconds, got {}", o.timeout);
    }
    if o.node_rank >= o.nnodes {
        bail!("--node-rank {} is not below --nnodes {}", o.node_rank, o.nnodes);
    }
    if !super::c10d::has_gloo() {
        bail!("this moontune was built without Gloo's headers (Debian's libgloo-dev); run `source tools/env.sh` (it installs them) and rebuild");
    }
    let backend = super::world::Backend::parse(&o.backend).context("--backend")?;
    if backend == super::world::Backend::Nccl {
        super::nccl::usable().context("--backend nccl")?;
    }
    let world = o.nproc * o.nnodes;
    let (host, port) = match &o.master {
        Some(m) => split_master(m)?,
        None if o.nnodes > 1 => bail!("a run across {} machines needs --master ADDR:PORT (node 0's address, reachable from the others)", o.nnodes),
        None => ("127.0.0.1".to_string(), 0),
    };
    let timeout_ms = (o.timeout * 1000.0) as i64;
    let store = Store::new(&host, port, o.node_rank == 0, world, timeout_ms, STORE_PREFIX)
        .with_context(|| format!("the launcher could not {} the rendezvous store at {host}:{port}", if o.node_rank == 0 { "serve" } else { "reach" }))?;
    // Ctrl-C reaches rank 0 from the terminal (it shares the launcher's process group), and rank
    // 0 stops every rank after the same step; the launcher waits for them rather than dying
    // first. The other ranks get a process group of their own, so that a second Ctrl-C, which
    // aborts rank 0, leaves them to stop at their next collective with a message.
    let _ = ctrlc::set_handler(|| eprintln!("\nmoontune launch: stopping every rank after its current step (Ctrl-C again to abort)"));
    let exe = std::env::current_exe().context("cannot find the moontune executable")?;
    let held: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut ranks = Vec::new();
    let mut readers = Vec::new();
    for local in 0..o.nproc {
        let rank = o.node_rank * o.nproc + local;
        let mut cmd = Command::new(&exe);
        cmd.arg("run");
        if rank != 0 {
            for flag in ["--headless", "--no-watch"] {
                if !o.run_args.iter().any(|a| a == flag) {
                    cmd.arg(flag);
                }
            }
        }
        cmd.args(&o.run_args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", world.to_string())
            .env("LOCAL_RANK", local.to_string())
            .env("LOCAL_WORLD_SIZE", o.nproc.to_string())
            .env("GROUP_RANK", o.node_rank.to_string())
            .env("MASTER_ADDR", &host)
            .env("MASTER_PORT", store.port.to_string())
            .env("TORCHELASTIC_USE_AGENT_STORE", "True")
            .env("MOONTUNE_DIST_TIMEOUT", o.timeout.to_string())
            .env("MOONTUNE_DIST_BACKEND", &o.backend);
        if o.nproc > 1 && std::env::var_os("OMP_NUM_THREADS").is_none() {
            // As torchrun: one thread per rank unless told otherwise, so that the ranks on a
            // machine do not fight over its cores.
            cmd.env("OMP_NUM_THREADS", "1");
        }
        if rank != 0 {
            use std::os::unix::process::CommandExt;
            cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).process_group(0);
        }
        let mut child = cmd.spawn().with_context(|| format!("cannot start rank {rank}"))?;
        if let Some(err) = child.stderr.take() {
            readers.push(forward(rank, err, o.rank0_tui.then(|| held.clone())));
        }
        ranks.push((rank, child));
    }
    let code = watch(&store, &mut ranks, o.timeout)?;
    for reader in readers {
        let _ = reader.join();
    }
    for line in held.lock().map_err(|_| anyhow!("poisoned"))?.drain(..) {
        eprintln!("{line}");
    }
    Ok(code)
}

fn split_master(m: &str) -> Result<(String, u16)> {
    let (host, port) = m.rsplit_once(':').ok_or_else(|| anyhow!("--master {m:?}: expected ADDR:PORT"))?;
    let port = port.parse::<u16>().map_err(|_| anyhow!("--master {m:?}: {port:?} is not a port number"))?;
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

/// Shows a rank's standard error line by line with its rank, or keeps it for later.
fn forward(rank: usize, err: std::process::ChildStderr, held: Option<Arc<Mutex<Vec<String>>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            let line = format!("[rank {rank}] {line}");
            match &held {
                Some(h) => h.lock().map(|mut h| h.push(line)).unwrap_or(()),
                None => eprintln!("{line}"),
            }
        }
    })
}

/// Waits for every rank; after the first failure, names it in the store and gives the others
/// `timeout` seconds (and a little more) before ending them.
fn watch(store: &Store, ranks: &mut [(usize, Child)], timeout: f64) -> Result<u8> {
    let mut done: Vec<Option<ExitStatus>> = vec![None; ranks.len()];
    let mut failure: Option<(u8, Instant)> = None;
    // A rank in a collective sees a lost peer at once (its connection closes) and stops with
    // its own message; one still waiting at the rendezvous does not, so it is ended.
    let grace = Duration::from_secs_f64(timeout.min(GRACE_S));
    loop {
        // Ranks seen ended in this round; a rank killed by a signal is the cause rather than
        // the ranks that failed because they lost it.
        let mut ended = Vec::new();
        for (i, (rank, child)) in ranks.iter_mut().enumerate() {
            if done[i].is_none() {
                if let Some(status) = child.try_wait()? {
                    done[i] = Some(status);
                    ended.push((*rank, status));
                }
            }
        }
        ended.sort_by_key(|(_, status)| status.code().is_some());
        for (rank, status) in ended {
            if status.code() == Some(INTERRUPTED) {
                eprintln!("moontune launch: rank {rank} stopped on Ctrl-C");
                failure.get_or_insert((INTERRUPTED as u8, Instant::now()));
            } else if !status.success() && failure.is_none() {
                let how = describe(&status);
                let _ = store.set(LOST_KEY, format!("rank {rank} was lost ({how})").as_bytes());
                eprintln!("moontune launch: rank {rank} {how}; the other ranks stop at their next collective");
                failure = Some((status.code().map(|c| c.clamp(1, 255) as u8).unwrap_or(1), Instant::now()));
            }
        }
        if done.iter().all(Option::is_some) {
            break;
        }
        if let Some((_, since)) = failure {
            if since.elapsed() > grace {
                for (i, (rank, child)) in ranks.iter_mut().enumerate() {
                    if done[i].is_none() {
                        eprintln!("moontune launch: ending rank {rank}, still running {:.0} s after the failure", grace.as_secs_f64());
                        let _ = child.kill();
                        done[i] = child.wait().ok();
                    }
                }
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(failure.map_or(0, |(code, _)| code))
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}
