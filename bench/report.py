"""What the benchmarks share: running one side in a child process that prints a JSON line, and
writing one benchmark's section of BENCHMARKS.md, leaving the other sections as they are."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = os.path.join(ROOT, "BENCHMARKS.md")


def write_section(name, text):
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = open(PATH).read() if os.path.exists(PATH) else "# Benchmarks\n\n"
    if start in current and end in current:
        before, rest = current.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        current = before + block + ("\n" + after if after else "")
    else:
        current = current.rstrip() + "\n\n" + block
    with open(PATH, "w") as f:
        f.write(current)


def run_json(cmd, env):
    """Runs a benchmark side in a child; returns the last JSON line it printed (exits on failure)."""
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{cmd[0]} failed:\n{out.stdout}\n{out.stderr}")
    return json.loads([l for l in out.stdout.splitlines() if l.startswith("{")][-1])
