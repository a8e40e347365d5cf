#!/usr/bin/env python3
"""Every dependency the build resolved comes from a package that scripts/install-deps.sh installs.

A fresh machine has only what the quick start installs; a developer's machine has whatever was installed by
hand, so a library missing from install-deps.sh can pass the suite there and fail for every new user. This
check closes that gap. It gathers what a configured and built tree really used:

  - every absolute path in build.ninja (libraries on link lines, compilers and tools in rules: meson, nvcc),
    and -l / -fopenmp / -pthread / -fsanitize= flags resolved to the files the compiler links;
  - every header the compiler read (`ninja -t deps`, from the compiler's own dependency files);
  - each pkg-config dependency's .pc file (`pkg-config --path`), each found dependency's link files
    (meson-info/intro-dependencies.json, the optional ones included), the headers meson looked up
    (`Has header "X" : YES`), the programs it found, and the C compiler;

maps each file to its Debian package (`dpkg -S`), and checks that package is one of install-deps.sh's list,
a package those depend on (Depends / Pre-Depends, the first of alternatives as apt picks it, virtual packages through
their installed providers, read from the installed packages' control data), or part of the minimal base system (Essential packages and apt). Files
under the CUDA toolkit's root come from NVIDIA's installer, not the distribution, and are reported apart:
the GPU backend is optional and install-deps.sh does not install it.

    python3 tests/check_deps.py BUILD_DIR [--script scripts/install-deps.sh] [--drop PKG]... [--self-test]

--drop PKG checks as if PKG were not in the list (what a removal from install-deps.sh would do).
--self-test also checks the check: removing each package the build needs directly must make it fail
naming that package, unless the rest of the list still pulls it in.
Exit 0: all provided; 1: a package is missing from the list (named); 77: skipped (not a dpkg system, or
PN_SKIP_DEPS_CHECK is set to the reason, as on a GPU machine whose packages are unpacked, not installed).
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run(cmd, check=False, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and p.returncode != 0:
        sys.exit(f"check_deps: '{' '.join(cmd)}' failed: {p.stderr.strip()}")
    return p


class Needs:
    """Files the build needs, each with the reasons (what needed it)."""

    def __init__(self, skip_dirs):
        self.files = {}
        self.skip = [os.path.realpath(d) + os.sep for d in skip_dirs]

    def add(self, path, why):
        if not path or not os.path.isabs(path):
            return
        real = os.path.realpath(path)
        if not os.path.isfile(real) or any(real.startswith(s) for s in self.skip):
            return
        self.files.setdefault(path, set()).add(why)


def compiler_file(cc, name):
    """Where the compiler finds a library file (like the linker would), or None."""
    out = run(cc + [f"-print-file-name={name}"]).stdout.strip()
    return out if os.path.isabs(out) and os.path.exists(out) else None


def link_flag_files(cc, flag):
    if flag.startswith("-l") and len(flag) > 2:
        n = flag[2:]
        return [compiler_file(cc, f"lib{n}.so") or compiler_file(cc, f"lib{n}.a")]
    if flag == "-fopenmp":
        return [compiler_file(cc, "libgomp.so"), compiler_file(cc, "omp.h")]
    if flag == "-pthread":
        return [compiler_file(cc, "libpthread.a") or compiler_file(cc, "libc.so")]
    if flag.startswith("-fsanitize="):
        libs = {"address": "libasan.so", "undefined": "libubsan.so", "thread": "libtsan.so", "leak": "liblsan.so"}
        return [compiler_file(cc, libs[s]) for s in flag.split("=", 1)[1].split(",") if s in libs]
    return []


def header_file(cc, header, inc_dirs):
    """The file `#include <header>` resolves to with the build's include dirs, from the preprocessor's line markers."""
    src = f"#include <{header}>\n"
    args = cc + ["-E", "-x", "c", "-"] + [f"-I{d}" for d in inc_dirs]
    p = run(args, input=src)
    for line in p.stdout.splitlines():
        m = re.match(r'# \d+ "(/[^"]+)"', line)
        if m and m.group(1).endswith("/" + header):
            return m.group(1)
    return None


def gather(build):
    info = os.path.join(build, "meson-info")
    if not os.path.isfile(os.path.join(build, "build.ninja")) or not os.path.isdir(info):
        sys.exit(f"check_deps: {build}: not a configured meson build directory")
    ninja_text = open(os.path.join(build, "build.ninja")).read()
    m = re.search(r"^rule c_COMPILER\n command = (.*?) \$ARGS", ninja_text, re.M)  # meson 1.0 has no intro-compilers
    cc = shlex.split(m.group(1)) if m else ["cc"]
    needs = Needs([ROOT, build])
    cc_path = run(["sh", "-c", 'command -v "$1"', "--", cc[0]]).stdout.strip()
    needs.add(cc_path, "the C compiler")
    real_cc = os.path.realpath(cc_path) if cc_path else ""
    # The compiler driver runs its own programs (cc1, as, ld): ask it which.
    for prog in ("cc1", "as", "ld", "collect2"):
        p = run(cc + [f"-print-prog-name={prog}"]).stdout.strip()
        if not os.path.isabs(p):
            p = run(["sh", "-c", 'command -v "$1"', "--", p]).stdout.strip()
        needs.add(p, f"the C compiler's {prog}")

    # build.ninja: absolute paths and link flags.
    inc_dirs = set()
    for tok in set(re.findall(r'''(?:^|[\s="'])(/[^\s"':$]+)''', ninja_text)):
        needs.add(tok, "build.ninja")
    for line in ninja_text.splitlines():
        line = line.strip()
        if not line.startswith(("LINK_ARGS", "ARGS", "command", "c_args")):
            continue
        try:
            toks = shlex.split(line.split("=", 1)[1]) if "=" in line else []
        except ValueError:
            toks = line.split()
        for t in toks:
            for f in link_flag_files(cc, t):
                needs.add(f, f"the link flag {t}")
            if t.startswith("-I") and os.path.isabs(t[2:]):
                inc_dirs.add(t[2:])

    # Headers the compiler read.
    p = run(["ninja", "-C", build, "-t", "deps"])
    if p.returncode != 0:
        sys.exit(f"check_deps: ninja -t deps in {build} failed: {p.stderr.strip()}")
    for line in p.stdout.splitlines():
        if line.startswith((" ", "\t")):
            needs.add(line.strip(), "a header the compiler read")

    # What meson resolved: dependencies (optional ones too), .pc files, headers, programs.
    deps = json.load(open(os.path.join(info, "intro-dependencies.json")))
    for d in deps:
        name = d.get("name", "?")
        for a in d.get("link_args", []) + d.get("compile_args", []):
            needs.add(a, f"dependency {name}")
            for f in link_flag_files(cc, a):
                needs.add(f, f"dependency {name}")
            if a.startswith("-I"):
                inc_dirs.add(a[2:])
        pc = run(["pkg-config", "--path", name])
        if pc.returncode == 0:
            needs.add(pc.stdout.strip(), f"dependency {name} (pkg-config)")
    log = open(os.path.join(build, "meson-logs", "meson-log.txt"), errors="replace").read()
    cuda_roots = []
    for m in re.finditer(r"^Program (\S+) found: YES \((/[^)\s]+)", log, re.M):
        needs.add(m.group(2), f"program {m.group(1)}")
        if m.group(1) == "nvcc":
            cuda_roots.append(os.path.dirname(os.path.dirname(os.path.realpath(m.group(2)))))
    for m in re.finditer(r"^Found pkg-config: (/\S+)|^Found ninja-\S+ at (/\S+)", log, re.M):
        needs.add(m.group(1) or m.group(2), "program pkg-config" if m.group(1) else "program ninja")
    opts = {o["name"]: o["value"] for o in json.load(open(os.path.join(info, "intro-buildoptions.json")))}
    if opts.get("cudnn_dir"):
        cuda_roots.append(os.path.realpath(opts["cudnn_dir"]))
    for root in list(cuda_roots):
        inc_dirs.add(os.path.join(root, "include"))
    for m in re.finditer(r'^Has header "([^"]+)" : YES', log, re.M):
        needs.add(header_file(cc, m.group(1), sorted(inc_dirs)), f'header <{m.group(1)}> (meson has_header)')
    return needs, cuda_roots, real_cc


def owners(paths):
    """path -> set of packages owning it (dpkg -S), trying the realpath and the /usr-merged spellings."""
    cands = {}
    for p in paths:
        r = os.path.realpath(p)
        c = [p, r]
        for x in (p, r):
            if x.startswith("/usr/"):
                c.append(x[4:])
            elif x.startswith(("/lib", "/bin", "/sbin")):
                c.append("/usr" + x)
        cands[p] = list(dict.fromkeys(c))
    allc = sorted({c for cs in cands.values() for c in cs})
    found = {}
    for i in range(0, len(allc), 200):
        out = run(["dpkg-query", "-S"] + allc[i:i + 200]).stdout
        for line in out.splitlines():
            pk, _, path = line.partition(": ")
            if path in found or not path.startswith("/"):
                pass
            found.setdefault(path, set()).update(x.strip().split(":")[0] for x in pk.split(","))
    return {p: set().union(*(found.get(c, set()) for c in cs)) for p, cs in cands.items()}


def installed_packages():
    fmt = "${Package}\t${Status}\t${Essential}\t${Depends}\t${Pre-Depends}\t${Provides}\n"
    out = run(["dpkg-query", "-W", "-f", fmt], check=True).stdout
    pk = {}
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) < 6 or "install ok installed" not in f[1]:
            continue
        pk[f[0]] = {"essential": f[2] == "yes", "deps": f[3] + ("," + f[4] if f[4] else ""), "provides": f[5]}
    return pk


def dep_names(field):
    """'a (>= 1), b:any | c' -> [['a'], ['b', 'c']]"""
    groups = []
    for part in field.split(","):
        alts = [re.sub(r"\s*\(.*?\)|\s*\[.*?\]|\s*<.*?>", "", a).strip().split(":")[0] for a in part.split("|")]
        alts = [a for a in alts if a]
        if alts:
            groups.append(alts)
    return groups


def closure(roots, pk):
    providers = {}
    for name, v in pk.items():
        for g in dep_names(v["provides"]):
            for virt in g:
                providers.setdefault(virt, set()).add(name)
    seen, todo = set(), [r for r in roots if r in pk]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for alts in dep_names(pk[n]["deps"]):
            # Only the first alternative: that is what apt installs on a fresh machine for 'a | b' (here b
            # may be installed by hand, and counting it would hide exactly the defect this check is for).
            a = alts[0]
            for real in ([a] if a in pk else []) + sorted(providers.get(a, ())):
                if real not in seen:
                    todo.append(real)
    return seen


def check(listed, drop, needs, own, pk, cuda_roots, script, quiet=False):
    """Returns the list of problems (each one line naming a package or a file)."""
    keep = [p for p in listed if p not in drop]
    base = [n for n, v in pk.items() if v["essential"]] + ["apt"]
    ok_pkgs = closure(keep + base, pk)
    problems, by_pkg, outside = [], {}, []
    for path, whys in sorted(needs.files.items()):
        why = sorted(whys)[0]
        pkgs = own[path]
        real = os.path.realpath(path)
        if not pkgs:
            if any(real.startswith(r + os.sep) for r in cuda_roots):
                outside.append(path)
            else:
                problems.append(f"{path} (needed by {why}) belongs to no Debian package: installed by hand? "
                                f"a fresh machine will not have it")
            continue
        if not pkgs & ok_pkgs:
            for p in sorted(pkgs):
                by_pkg.setdefault(p, []).append((path, why))
    lost = {d: closure([d], pk) for d in drop}
    for p, items in sorted(by_pkg.items()):
        path, why = items[0]
        more = f" and {len(items) - 1} more files" if len(items) > 1 else ""
        via = [d for d in sorted(lost) if p in lost[d] and d != p]
        hint = f" (it came with {', '.join(via)}, which is not in the list)" if via else ""
        problems.append(f"package {p} is needed ({path}{more}, for {why}) but {script} neither installs it nor "
                        f"installs a package that depends on it{hint}: add {p} to its list")
    if not quiet:
        n_pk = len({p for path in needs.files for p in own[path]})
        print(f"check_deps: {len(needs.files)} files the build used, from {n_pk} packages; "
              f"{script} lists {len(keep)} packages ({len(ok_pkgs)} with their dependencies and the base system)")
        if outside:
            print(f"check_deps: {len(outside)} files from the CUDA toolkit ({', '.join(cuda_roots)}), outside the "
                  f"distribution's packages (optional GPU backend, not installed by {script})")
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build")
    ap.add_argument("--script", default=os.path.join(ROOT, "scripts", "install-deps.sh"))
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--self-test", action="store_true")
    a = ap.parse_args()
    if os.environ.get("PN_SKIP_DEPS_CHECK"):
        print(f"check_deps: skipped: {os.environ['PN_SKIP_DEPS_CHECK']}")
        return 77
    if run(["sh", "-c", "command -v dpkg-query"]).returncode != 0:
        print("check_deps: skipped: not a Debian/Ubuntu system (no dpkg-query); install-deps.sh is apt-based")
        return 77
    script = os.path.relpath(a.script, ROOT) if a.script.startswith(ROOT) else a.script
    listed = run(["bash", a.script, "--list"], check=True).stdout.split()
    if not listed:
        sys.exit(f"check_deps: {a.script} --list printed no packages")
    pk = installed_packages()
    for p in listed:
        if p not in pk:
            print(f"check_deps: package {p} from {script} is not installed here: run bash {script}")
            return 1
    needs, cuda_roots, _ = gather(a.build)
    own = owners(list(needs.files))
    problems = check(listed, set(a.drop), needs, own, pk, cuda_roots, script)
    for pr in problems:
        print(f"check_deps: {pr}")
    if problems:
        return 1
    if not a.self_test:
        print("check_deps: every dependency is provided by the packages install-deps.sh installs")
        return 0

    # Self-test: a package the build needs directly must be named when it is dropped from the list.
    direct = {p for path in needs.files for p in own[path]} & set(listed)
    failures = 0
    for p in listed:
        probs = check(listed, {p}, needs, own, pk, cuda_roots, script, quiet=True)
        named = any(f"package {p} " in pr for pr in probs)
        if probs and not all(p in pr for pr in probs):
            print(f"check_deps: SELF-TEST FAILED: dropping {p} gave a message that does not name it: {probs}")
            failures += 1
        others = closure([x for x in listed if x != p] + ["apt"] + [n for n, v in pk.items() if v["essential"]], pk)
        if p in direct and p not in others and not named:
            print(f"check_deps: SELF-TEST FAILED: dropping {p} was not reported")
            failures += 1
        if named:
            state = "fails, naming it"
        elif probs:
            state = "fails, naming " + ", ".join(sorted({re.search(r"package (\S+)", x).group(1) for x in probs
                                                            if x.startswith("package ")}) or ["files"])
        elif p in others:
            state = "no failure: the rest of the list depends on it"
        else:
            state = "no failure: the build uses no file of its own (needed for what it pulls in or at test time)"
        print(f"check_deps: without {p}: {state}")
    # And through the command line, as CI would see it: the package the fresh-machine bug lacked.
    if "libpcre2-dev" in direct:
        r = run([sys.executable, os.path.abspath(__file__), a.build, "--script", a.script, "--drop", "libpcre2-dev"])
        if r.returncode != 1 or "package libpcre2-dev " not in r.stdout:
            print(f"check_deps: SELF-TEST FAILED: --drop libpcre2-dev gave exit {r.returncode}:\n{r.stdout}")
            failures += 1
        else:
            print("check_deps: --drop libpcre2-dev exits 1: " + r.stdout.splitlines()[-1][len("check_deps: "):])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
