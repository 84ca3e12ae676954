"""The vellum command line: --help, --version, configuration sources and their precedence, and
start-up errors that name the key, the value, where it came from and what is allowed."""
import os
import subprocess

import harness as t


def run(args, env=None, cwd=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("VELLUM_")}
    e.update(env or {})
    p = subprocess.run([t.VELLUM_BIN] + args, capture_output=True, text=True, env=e, timeout=20,
                       cwd=cwd)
    return p.returncode, p.stdout, p.stderr


rc, out, err = run(["--version"])
t.check(rc == 0 and out.startswith("vellum ") and len(out.split()) == 2, "--version: %r" % out)
rc, out, err = run(["--help"])
t.check(rc == 0 and "serve" in out and "config" in out, "--help lists the verbs")
rc, out, err = run(["serve", "--help"])
t.check(rc == 0 and "--listen" in out and "--image-root" in out and "SIGHUP" in out,
        "serve --help lists every option and the signals")
rc, out, err = run(["frobnicate"])
t.check(rc == 2 and "unknown verb" in err, "an unknown verb is an error")

work = t.tmpdir()
conf = os.path.join(work, "v.conf")
with open(conf, "w") as f:
    f.write("# comment\n\nworkers = 3\nimage_root = \"/srv/images\"\n")


def setting(out, key):
    for line in out.splitlines():
        if line.startswith(key + " = "):
            return line.split(" = ", 1)[1]
    return None


rc, out, _ = run(["config", "--config", conf])
t.check(rc == 0 and setting(out, "workers") == "3" and setting(out, "image_root") == "/srv/images",
        "config file is read (quotes stripped)")
rc, out, _ = run(["config", "--config", conf], env={"VELLUM_WORKERS": "4"})
t.check(setting(out, "workers") == "4", "VELLUM_WORKERS overrides the file")
rc, out, _ = run(["config", "--config", conf, "--workers", "5"], env={"VELLUM_WORKERS": "4"})
t.check(setting(out, "workers") == "5", "--workers overrides the environment")
rc, out, _ = run(["config"], env={"VELLUM_CONFIG": conf})
t.check(setting(out, "workers") == "3", "VELLUM_CONFIG names the file")
rc, out, _ = run(["config", "--image-root=/x", "--log-level", "debug"])
t.check(setting(out, "image_root") == "/x" and setting(out, "log_level") == "debug",
        "--key=value and --key value both work")

cases = [
    (["serve", "--workers", "lots"], {}, ['workers = "lots"', "flag --workers", "integer from 0 to 1024"]),
    (["serve"], {"VELLUM_LOG_LEVEL": "loud"}, ['log_level = "loud"', "VELLUM_LOG_LEVEL", "error, warn, info or debug"]),
    (["serve", "--jpeg-quality", "101"], {}, ['jpeg_quality = "101"', "from 1 to 100"]),
    (["serve", "--base-url", "iiif.example.org"], {}, ["base_url", "http://"]),
    (["serve", "--listen", "nowhere"], {}, ["nowhere", "host:port"]),
    (["serve", "--frobs", "1"], {}, ["unknown option --frobs"]),
    (["serve", "--config", os.path.join(work, "missing.conf")], {}, ["missing.conf"]),
]
for args, env, needles in cases:
    rc, out, err = run(args, env)
    t.check(rc != 0 and all(n in err for n in needles),
            "start-up refused with a clear message for %s %s: %r" % (args, env, err.strip()))

bad = os.path.join(work, "bad.conf")
with open(bad, "w") as f:
    f.write("# ok\nworkers = 2\nmax_requests_per_worker = -5\n")
rc, out, err = run(["serve", "--config", bad])
t.check(rc != 0 and "max_requests_per_worker" in err and "bad.conf line 3" in err and '"-5"' in err,
        "a bad value in the file names the file, line, key and value: %r" % err.strip())
with open(bad, "w") as f:
    f.write("colour = blue\n")
rc, out, err = run(["serve", "--config", bad])
t.check(rc != 0 and 'unknown setting "colour"' in err, "an unknown key in the file is refused")

# The shipped example is exactly what the key table prints, and it loads as it is.
rc, example, _ = run(["config", "--example"])
with open(os.path.join(t.SOURCE_DIR, "docs", "vellum.conf"), encoding="utf-8") as f:
    shipped = f.read()
t.check(rc == 0 and example == shipped, "docs/vellum.conf is `vellum config --example` (regenerate it)")
rc, out, err = run(["config", "--config", os.path.join(t.SOURCE_DIR, "docs", "vellum.conf")])
t.check(rc == 0, "docs/vellum.conf loads without error (%s)" % err.strip())
keys = [l.split(" = ")[0] for l in out.splitlines() if " = " in l and not l.startswith("#")]
t.check(len(keys) >= 10 and all(("\n# " in example and "\n%s = " % k in example) for k in keys),
        "every key is in the example, with a comment")
t.done()
