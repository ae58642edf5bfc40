"""TUI overhead benchmark: the same recipe with the terminal UI (in a tmux pane) and headless,
interleaved, several rounds; compares step throughput taken from each run's metrics.jsonl (time
between its first and last step). Run with `./dev bench` (after the model benchmark) or alone:
python bench/tui.py. Writes its section of BENCHMARKS.md.
"""
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from report import ROOT, write_section

ROUNDS = int(os.environ.get("BENCH_TUI_ROUNDS", "5"))
STEPS = 400
MOONTUNE = os.path.join(ROOT, "target/release/moontune")
RECIPE = os.path.join(ROOT, "scripts/char_lm.lua")


def steps_per_second(runs_dir):
    run = os.path.join(runs_dir, os.listdir(runs_dir)[0])
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl"))]
    times = [r["time"] for r in rows if r["kind"] == "step"]
    return (len(times) - 1) / (times[-1] - times[0])


def headless(work):
    runs = os.path.join(work, f"headless-{time.monotonic_ns()}")
    subprocess.run([MOONTUNE, "run", RECIPE, f"steps={STEPS}", "eval_every=0", "--headless", "--runs-dir", runs],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return steps_per_second(runs)


def with_tui(work):
    runs = os.path.join(work, f"tui-{time.monotonic_ns()}")
    session = f"moontune-bench-{os.getpid()}"
    done = os.path.join(work, "done")
    command = f"{MOONTUNE} run {RECIPE} steps={STEPS} eval_every=0 --runs-dir {runs}; touch {done}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", command], check=True)
    try:
        # The TUI stays up after the run until a key: wait for the last step, then leave.
        while not (os.path.isdir(runs) and os.listdir(runs) and
                   sum(1 for _ in open(os.path.join(runs, os.listdir(runs)[0], "metrics.jsonl"))) >= STEPS):
            time.sleep(0.2)
        while not os.path.exists(done):
            subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
            time.sleep(0.3)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, stderr=subprocess.DEVNULL)
        if os.path.exists(done):
            os.remove(done)
    return steps_per_second(runs)


def main():
    if shutil.which("tmux") is None:
        print("SKIPPED: the TUI benchmark needs tmux")
        return
    work = tempfile.mkdtemp(prefix="moontune-tui-bench-")
    plain, tui = [], []
    for _ in range(ROUNDS):
        plain.append(headless(work))
        tui.append(with_tui(work))
    mid_plain, mid_tui = statistics.median(plain), statistics.median(tui)
    cost = 1 - mid_tui / mid_plain
    text = "\n".join([
        "## The TUI's cost on the step loop",
        "",
        f"bench/tui.py: scripts/char_lm.lua for {STEPS} steps (no evaluation), {ROUNDS} rounds interleaved, headless",
        "(output discarded) and with the TUI in a 160×48 tmux pane; steps/s between the first and last step",
        "of each run's metrics.jsonl; the median run of each counts (single runs vary by several percent).",
        "",
        "| front end | steps/s (median) | all runs |",
        "|---|---|---|",
        f"| headless | {mid_plain:.1f} | {', '.join(f'{x:.1f}' for x in plain)} |",
        f"| TUI | {mid_tui:.1f} | {', '.join(f'{x:.1f}' for x in tui)} |",
        "",
        f"Cost of the TUI: {100 * cost:.1f}% of step throughput" + (" (below zero: no measurable cost)." if cost < 0 else "."),
    ])
    print(text)
    write_section("tui", text)


if __name__ == "__main__":
    main()
