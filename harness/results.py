#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Count the results of one guest run.

results.log holds the kselftest programs' KTAP output framed by the guest's
"# selftest:" / "# exit:" lines; console.log holds the kernel log with the
KUnit KTAP output.  Every test case counts once.  A program that dies before
reporting all planned cases fails the missing ones; any kernel splat in the
console fails the run.  Prints one line per case and "N passed, N failed,
N skipped" at the end (summary line left to the caller with --no-summary).
"""
import re
import sys

SPLATS = [
    r"BUG:", r"WARNING:", r"Call Trace:", r"Kernel panic", r"Oops",
    r"general protection fault", r"UBSAN:", r"possible circular locking",
    r"possible recursive locking", r"INFO: task .* blocked",
    r"inconsistent lock state", r"suspicious RCU usage", r"kmemleak: .* new suspected",
    r"watchdog: BUG: soft lockup", r"KFENCE:", r"list_add corruption",
    r"rcu: INFO: .* detected (expedited )?stalls",
]
UPTIME = re.compile(r"^\[\d+\.\d+\] ")
RESULT = re.compile(r"^(not ok|ok) (\d+) (?:- )?([^#]*?)\s*(?:#\s*(.*))?$")


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.lines = []

    def add(self, status, name, note=""):
        if status == "ok":
            self.passed += 1
        elif status == "skip":
            self.skipped += 1
        else:
            self.failed += 1
        self.lines.append(f"{status.upper():4} {name}" + (f"  # {note}" if note else ""))


def parse_selftests(text, tally):
    program = None
    plan = seen = 0
    failed_here = False
    for line in text.splitlines():
        line = line.rstrip("\r")
        m = re.match(r"^# selftest: (\S+)", line)
        if m:
            program, plan, seen, failed_here = m.group(1), 0, 0, False
            continue
        if program is None:
            continue
        m = re.match(r"^# exit: (\d+) (\S+)", line)
        if m:
            rc = int(m.group(1))
            for i in range(seen, plan):
                tally.add("fail", f"{program}: case {i + 1} of {plan}", "never reported")
            if plan == 0 and rc == 4:
                tally.add("skip", program, "whole program skipped")
            elif rc not in (0, 4) and not failed_here and seen >= plan:
                tally.add("fail", program, f"exit status {rc}")
            program = None
            continue
        # The guest stamps each line of a program with its uptime; its own
        # framing lines above carry no stamp.
        line = UPTIME.sub("", line)
        m = re.match(r"^1\.\.(\d+)", line)
        if m:
            plan = int(m.group(1))
            continue
        m = RESULT.match(line)
        if m:
            status, _, name, directive = m.groups()
            seen += 1
            directive = directive or ""
            if directive.upper().startswith("SKIP"):
                tally.add("skip", f"{program}: {name}", directive)
            elif status == "ok":
                tally.add("ok", f"{program}: {name}")
            else:
                failed_here = True
                tally.add("fail", f"{program}: {name}", directive)
    if program is not None:
        for i in range(seen, plan):
            tally.add("fail", f"{program}: case {i + 1} of {plan}", "never reported")
        tally.add("fail", program, "output ends inside this program (guest died?)")


# Documentation examples of the kernel crate run as one KUnit suite.  Those
# of the files our patches add or change (patches/0005*) count one by one;
# the upstream ones count as one case, failed by any failing example.
DOCTESTS = "rust_doctests_kernel"
OUR_DOCTESTS = re.compile(
    r"rust_doctest_kernel_(block_(bdev|bio|filter|forward|freeze)|uuid|capability|"
    r"transmute|workqueue|module_param)")


def parse_kunit(console, tally):
    """Leaf KUnit cases sit one level deep: four spaces, then ok/not ok.

    A suite built into a module runs again at every load of the module;
    each case still counts once: failed if any run failed, skipped if every
    run skipped, passed otherwise.
    """
    suites = 0
    suite = ""
    runs = {}
    for line in console.splitlines():
        line = re.sub(r"^\[\s*\d+\.\d+\]\s?", "", line.rstrip("\r"))
        m = re.match(r"^    # Subtest: (\S+)", line)
        if m:
            suites += 1
            suite = m.group(1)
        m = re.match(r"^    (not ok|ok) \d+ (\S+)(?:\s*#\s*(.*))?$", line)
        if m:
            status, name, directive = m.groups()
            directive = directive or ""
            if directive.upper().startswith("SKIP"):
                outcome = "skip"
            else:
                outcome = "ok" if status == "ok" else "fail"
            runs.setdefault(f"{suite}.{name}" if suite else name, []).append((outcome, directive))
    upstream = {"ok": 0, "skip": 0}
    for name, outcomes in runs.items():
        if name.startswith(DOCTESTS + ".") and not OUR_DOCTESTS.search(name):
            if not any(o == "fail" for o, _ in outcomes):
                upstream["skip" if all(o == "skip" for o, _ in outcomes) else "ok"] += 1
                continue
        n = len(outcomes)
        times = f"{n} runs" if n > 1 else ""
        failed = [d for o, d in outcomes if o == "fail"]
        if failed:
            tally.add("fail", f"kunit: {name}", f"failed in {len(failed)} of {n} runs "
                      + (failed[0] or ""))
        elif all(o == "skip" for o, _ in outcomes):
            tally.add("skip", f"kunit: {name}", outcomes[0][1])
        else:
            tally.add("ok", f"kunit: {name}", times)
    if upstream["ok"] or upstream["skip"]:
        tally.add("ok", f"kunit: {DOCTESTS}: upstream examples",
                  f"{upstream['ok']} passed, {upstream['skip']} skipped")
    return suites


def self_test():
    """The parser must fail what it should fail; prints KTAP-like lines."""
    ok_prog = "# selftest: s:p\n1..2\nok 1 a\nok 2 b # SKIP no disk\n# exit: 0 s:p\nBLKSNAP-RUN-END\n"
    cases = [
        ("counts pass and skip", "", ok_prog, (2, 0, 1)),
        ("fails a splat", "[ 1.0] WARNING: CPU: 0 at x\n", ok_prog, (1, 1, 1)),
        ("fails KASAN", "BUG: KASAN: slab-use-after-free in f\n", ok_prog, (1, 1, 1)),
        ("fails missing cases", "", "# selftest: s:p\n1..3\nok 1 a\n", (2, 4, 0)),
        ("fails a crash exit", "", "# selftest: s:p\n1..1\nok 1 a\n# exit: 139 s:p\nBLKSNAP-RUN-END\n", (2, 1, 0)),
        ("fails kunit case", "    # Subtest: k\n    not ok 1 t\n", ok_prog, (2, 1, 1)),
        ("counts a kunit case once over module loads",
         "    # Subtest: k\n    ok 1 t\n    # Subtest: k\n    ok 1 t\n", ok_prog, (3, 0, 1)),
        ("fails a kunit case failing in one load",
         "    # Subtest: k\n    ok 1 t\n    # Subtest: k\n    not ok 1 t\n", ok_prog, (2, 1, 1)),
        ("fails a stamped failure", "",
         "# selftest: s:p\n[1.0] 1..1\n[1.1] not ok 1 a\n# exit: 0 s:p\nBLKSNAP-RUN-END\n", (1, 1, 0)),
        ("reads lines stamped with the uptime", "",
         "# selftest: s:p\n[3.25] 1..2\n[3.50] ok 1 a\n[4.00] not ok 2 b\n# exit: 1 s:p\n"
         "BLKSNAP-RUN-END\n", (2, 1, 0)),
        ("counts upstream examples as one case",
         "    # Subtest: rust_doctests_kernel\n    ok 1 rust_doctest_kernel_list_rs_0\n"
         "    ok 2 rust_doctest_kernel_list_rs_1\n    ok 3 rust_doctest_kernel_uuid_rs_0\n",
         ok_prog, (4, 0, 1)),
        ("fails a failing upstream example",
         "    # Subtest: rust_doctests_kernel\n    ok 1 rust_doctest_kernel_list_rs_0\n"
         "    not ok 2 rust_doctest_kernel_list_rs_1\n", ok_prog, (3, 1, 1)),
        ("fails watchdog", "", ok_prog.replace("BLKSNAP-RUN-END", "BLKSNAP-WATCHDOG-TIMEOUT"), (2, 1, 1)),
    ]
    n = 0
    for name, console, results, want in cases:
        tally = Tally()
        parse_kunit(console, tally)
        parse_selftests(results, tally)
        if "BLKSNAP-RUN-END" not in results:
            tally.add("fail", "run")
        splat = any(re.search(p, l) for l in console.splitlines() for p in SPLATS)
        tally.add("fail" if splat else "ok", "splat")
        got = (tally.passed, tally.failed, tally.skipped)
        n += 1
        print(f"ok {n} harness:results.py {name}" if got == want else
              f"not ok {n} harness:results.py {name} # got {got}, want {want}")
    print(f"1..{n}")


def main():
    import argparse
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser()
    ap.add_argument("rundir")
    ap.add_argument("--expect-kunit", type=int, default=0,
                    help="number of KUnit suites that must have run")
    args = ap.parse_args()
    console = open(f"{args.rundir}/console.log", errors="replace").read()
    try:
        results = open(f"{args.rundir}/results.log", errors="replace").read()
    except FileNotFoundError:
        results = ""

    tally = Tally()
    suites = parse_kunit(console, tally)
    if suites < args.expect_kunit:
        tally.add("fail", "kunit", f"{suites} of {args.expect_kunit} suites ran")
    parse_selftests(results, tally)

    if "BLKSNAP-RUN-END" not in results:
        why = "watchdog timeout" if "BLKSNAP-WATCHDOG-TIMEOUT" in results else "guest stopped early"
        tally.add("fail", "guest run completed", why)
    splat = [l for l in console.splitlines() if any(re.search(p, l) for p in SPLATS)]
    if splat:
        tally.add("fail", "kernel log free of splats", splat[0].strip())
    else:
        tally.add("ok", "kernel log free of splats")

    for l in tally.lines:
        print(l)
    print(f"RESULT {tally.passed} {tally.failed} {tally.skipped}")


if __name__ == "__main__":
    main()
