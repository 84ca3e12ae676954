"""Fuzz smoke test: build the libFuzzer targets (tests/fuzz) with scripts/fuzz, run each for a
few seconds and replay every saved crash input (tests/fuzz/regressions). Catches a target that
no longer builds or crashes at once, and a fixed crash that came back. Real fuzzing is
`scripts/fuzz --time 600`. SKIPPED (exit 77) without clang or when CMake does not build
tests/fuzz. Reuses build-fuzz (VELLUM_FUZZ_BUILD), so its corpora keep growing between runs."""
import os
import shutil
import subprocess

import harness as t

SECONDS = int(os.environ.get("VELLUM_FUZZ_SMOKE_SECONDS", "10"))

if not shutil.which("clang"):
    t.skip("fuzz smoke: clang not installed (scripts/setup installs clang and libclang-rt-14-dev)")
with open(os.path.join(t.SOURCE_DIR, "CMakeLists.txt"), encoding="utf-8") as f:
    if "tests/fuzz" not in f.read():
        t.skip("fuzz smoke: CMakeLists.txt does not add tests/fuzz (VELLUM_FUZZ)")

env = dict(os.environ)
env.pop("TMPDIR", None)  # let scripts/fuzz pick /dev/shm
# CI must not fail at random: a fixed seed makes the short runs repeatable. Long fuzzing
# (scripts/fuzz --time 600, random seeds) is where new crashes are looked for.
env.setdefault("VELLUM_FUZZ_SEED", "1")
p = subprocess.run([os.path.join(t.SOURCE_DIR, "scripts", "fuzz"), "--time", str(SECONDS),
                    "--jobs", str(min(2, os.cpu_count() or 1))],
                   cwd=t.SOURCE_DIR, env=env, capture_output=True, text=True, timeout=540)
print(p.stdout, end="", flush=True)
if p.returncode != 0 and "needs clang" in p.stderr + p.stdout:
    t.skip("fuzz smoke: " + p.stderr.strip()[-300:])
t.check(p.returncode == 0, "scripts/fuzz: every target ran %ds without a crash and every "
        "regression input replays cleanly%s" % (SECONDS, "" if p.returncode == 0 else
                                                ": " + (p.stderr + p.stdout)[-1500:]))
t.done()
