"""Helpers shared by the network-namespace test scripts (tests/e2e/netns_*_test.py,
tests/discovery/*netns_test.py): skip and check, commands in namespaces, child processes,
namespace set-up and clean-up.

A script imports it after putting its parent folder, tests/, on sys.path:

  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from netns_lib import check, failures, ...

`failures` and `procs` are lists owned by this module: a script appends to them and reads them,
never rebinds them.
"""
import ctypes
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

procs = []  # every child process started by spawn(); killed by kill_procs()
failures = []  # the descriptions of the checks that failed


def skip(why):
    """Prints SKIP: WHY and exits with 77, the tests' SKIP_RETURN_CODE."""
    print(f"SKIP: {why}", flush=True)
    sys.exit(77)


def check(cond, what):
    """Prints 'ok   WHAT' or 'FAIL WHAT', records a failure in `failures`; returns cond."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def summary(passed_message):
    """The end of a test: prints the failed checks and returns 1, or prints passed_message and
    returns 0 (the exit code)."""
    if failures:
        print(f"{len(failures)} check(s) failed: {failures}")
        return 1
    print(passed_message)
    return 0


def require_root(what):
    """Skips unless running as root; `what` says what root is needed for."""
    if os.geteuid() != 0:
        skip(f"needs root ({what})")


def require_tools(*tools):
    """Skips unless each command is on PATH."""
    for tool in tools:
        if not shutil.which(tool):
            skip(f"no `{tool}` command")


def run(*cmd, timeout=60, ok=True):
    """Runs cmd, capturing its output as text; with ok, a non-zero exit raises RuntimeError
    (with its stderr). Returns the CompletedProcess."""
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if ok and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def ip(*args, check_rc=True):
    """Runs `ip ARGS`, capturing its output as text; with check_rc, a non-zero exit raises
    subprocess.CalledProcessError."""
    return subprocess.run(["ip", *args], check=check_rc, capture_output=True, text=True)


def in_ns(ns, *cmd):
    """The command line that runs cmd in network namespace ns."""
    return ["ip", "netns", "exec", ns, *cmd]


def die_with_parent():
    """Child set-up (preexec_fn): SIGKILL when the test goes, even on kill -9 (`ip netns exec`
    and `unshare` exec, so the flag reaches the program they run)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def spawn(cmd, stdout=subprocess.PIPE, env=None, pdeathsig=False):
    """Starts cmd with its stderr joined to stdout (a pipe read as text, or a file), records it
    in `procs` and returns it; with pdeathsig, it gets SIGKILL when the test dies."""
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, text=True, env=env,
                         preexec_fn=die_with_parent if pdeathsig else None)
    procs.append(p)
    return p


def stop(p, timeout=10):
    """SIGTERM to p if it still runs, then SIGKILL if it has not exited after timeout s."""
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def kill_procs():
    """SIGKILL to every process in `procs` that still runs, and waits for it."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def exit_on_signals():
    """SIGTERM and SIGINT (a ctest timeout, Ctrl-C) raise SystemExit(1), so that the script's
    finally: blocks clean up."""
    def on_signal(signum, frame):
        raise SystemExit(1)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def delete_namespaces(*names):
    """`ip netns del` each name, ignoring errors (clean-up)."""
    for ns in names:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def sweep_stale_namespaces(ns_pattern, tmp_prefix):
    """Clean-up left by an earlier run that was killed (-9, a ctest timeout) before its own: the
    namespaces in /run/netns whose name fully matches ns_pattern (a regex whose group 1 is the
    run's pid) when that pid is gone, and the empty folders TMPDIR/TMP_PREFIX-PID-* (with their
    empty sub-folders) of such runs. Does nothing without /run/netns."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return
    for name in names:
        m = re.fullmatch(ns_pattern, name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for d in glob.glob(os.path.join(tempfile.gettempdir(), f"{tmp_prefix}-*-*")):
        m = re.fullmatch(rf"{re.escape(tmp_prefix)}-(\d+)-\w+", os.path.basename(d))
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            for sub in glob.glob(os.path.join(d, "*")) + [d]:
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


def reexec_in_mount_namespace(marker, argv, probe_flags=("-m",),
                              what="a mount namespace (unshare -m)"):
    """Unless the environment variable `marker` is "1": skips unless `unshare PROBE_FLAGS
    --propagation private true` works, then sets it and re-runs this interpreter with argv (the
    script and its arguments) in a private mount namespace, so that mounts made by the test go
    away with it however it ends. Returns only in the re-run process."""
    if os.environ.get(marker) == "1":
        return
    r = subprocess.run(["unshare", *probe_flags, "--propagation", "private", "true"],
                       capture_output=True)
    if r.returncode != 0:
        skip(f"cannot create {what}")
    os.environ[marker] = "1"
    os.execvp("unshare", ["unshare", "-m", "--propagation", "private", sys.executable, *argv])


def mount_host_disks(tmp, hosts, size="256m"):
    """A tmpfs of `size` at TMP/NAME for each host name: each simulated host's own disk."""
    for name in hosts:
        os.makedirs(os.path.join(tmp, name))
        run("mount", "-t", "tmpfs", "-o", f"size={size}", f"host-{name}", os.path.join(tmp, name))


def unmount_host_disks(tmp, hosts):
    """Unmounts what mount_host_disks() mounted, ignoring errors (clean-up)."""
    for name in hosts:
        subprocess.run(["umount", os.path.join(tmp, name)], capture_output=True)


def print_logs(tmp):
    """When a check failed or KEEP_LOGS is set: the last 4000 characters of each TMP/*/*.log."""
    if failures or os.environ.get("KEEP_LOGS"):
        for log in sorted(glob.glob(os.path.join(tmp, "*", "*.log"))):
            print(f"---- {log}\n{open(log).read()[-4000:]}")


def add_bridge(ns_br, bridge):
    """Creates namespace ns_br holding a bridge named `bridge`, up."""
    run("ip", "netns", "add", ns_br)
    run("ip", "-n", ns_br, "link", "add", bridge, "type", "bridge")
    run("ip", "-n", ns_br, "link", "set", bridge, "up")


def join_bridge(ns, addr, host_if, br_if, ns_br, bridge, *link_flags):
    """Joins the existing namespace ns to the bridge: a veth pair host_if (in ns, with ADDR/24,
    up with link_flags, e.g. "multicast", "on") and br_if (in ns_br, a port of `bridge`)."""
    run("ip", "link", "add", host_if, "netns", ns, "type", "veth", "peer", "name", br_if,
        "netns", ns_br)
    run("ip", "-n", ns_br, "link", "set", br_if, "master", bridge, "up")
    run("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", host_if)
    run("ip", "-n", ns, "link", "set", host_if, "up", *link_flags)


def add_veth_pair(ends):
    """Two namespaces joined by a veth pair: `ends` is ((ns, veth, addr), (ns, veth, addr)); each
    namespace is created, gets its end with ADDR/24, up with multicast, and loopback up. Raises
    subprocess.CalledProcessError (from ip()) when a step fails."""
    (ns_a, veth_a, _), (_, veth_b, _) = ends
    for ns, _, _ in ends:
        ip("netns", "add", ns)
    ip("link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
    for ns, veth, addr in ends:
        ip("link", "set", veth, "netns", ns)
        ip("-n", ns, "addr", "add", f"{addr}/24", "dev", veth)
        ip("-n", ns, "link", "set", veth, "up", "multicast", "on")
        ip("-n", ns, "link", "set", "lo", "up")


def wait_listening(ns, addr, port, proc, what, timeout=20):
    """Waits until something listens on TCP ADDR:PORT in namespace ns (`ss`); raises
    RuntimeError if proc exits first or after timeout s."""
    end = time.time() + timeout
    while time.time() < end:
        if run(*in_ns(ns, "ss", "-Hltn", f"src {addr}:{port}"), ok=False).stdout.strip():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited early ({proc.returncode})")
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {addr}:{port}")
