"""The grader's sandbox: limits and confinement for the child process that runs a notebook (course tooling).

The grader side (`Limits`, `UidPool`, `Child`) creates a private working directory,
starts the child in its own session with a minimal environment, and afterwards kills
everything the child started. The child side (`confine`) runs first thing in the child,
before any learner code: resource limits, a private network namespace (root only), an
unprivileged uid of its own (root only), and a Landlock ruleset (Linux >= 5.13) that
lets it write only inside its working directory and read only what Python needs.
Each step is best effort where the kernel or the user's rights do not allow it, and the
child reports which steps took effect (`Child.sandbox`, stored in the gradebook JSON).
As root, a private mount namespace also covers the checkout's solutions and tests and the
hidden tests' folder; whatever the setting, the child checks that it cannot read the
hidden tests before any learner code runs, and the grader refuses to go on if it can.

Decision (bubblewrap): evaluated as the replacement for the hand-written Landlock and
namespace calls here. It isolates better where it runs: a mount namespace that shows the
child only what is bound into it, and PID and IPC namespaces. Kept out for now because it
is not there by default (a Debian package, and the pip wheels bundle a binary we would
then trust), unprivileged user namespaces, which it needs without root, are often refused
inside containers (Docker's default seccomp profile), exactly where the README tells
instructors to grade, and as root the uid drop and rlimits below would still be needed
inside it. The present path stays the one that is always there; wrapping the child's
command in `bwrap` where it is installed and works is the next step, with this path as
the fallback.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import asdict, dataclass

from labkit.grading import forkserver

LINUX = sys.platform.startswith("linux")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_PACKAGE = os.path.join(_ROOT, "labkit")
REPOSITORY = _ROOT
BOOT = ("import sys; sys.path.insert(0, {root!r}); "
        "from labkit.grading.child import main; main(sys.argv[1])")


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Time limits are CPU seconds of the child, so a busy machine costs none of them.

    Each time limit also has a wall-clock backstop, `wall_s(limit)` (the limit times
    `wall_factor`, plus 10 s), for code that waits instead of computing (a sleep, a read
    that never returns): it is what a loaded machine can stretch, so it is generous.
    """

    timeout_s: float = 60.0       # running the notebook's cells, all of them
    exercise_timeout_s: float = 30.0  # one exercise's checks, all of its scenarios (each exercise its own)
    call_timeout_s: float = 10.0  # one call into the learner's code (a method, a constructor)
    cell_timeout_s: float = 30.0  # one notebook cell
    wall_factor: float = 3.0      # the wall-clock backstop of each limit: limit * wall_factor + 10 s
    memory_mb: int = 1024         # address space (RLIMIT_AS)
    max_processes: int = 64       # processes and threads (RLIMIT_NPROC, per uid)
    max_file_mb: int = 16         # largest file written, the captured output included (RLIMIT_FSIZE)
    max_open_files: int = 256     # RLIMIT_NOFILE
    startup_timeout_s: float = 60.0  # the child's own start (imports), wall clock: the grader's time, not the learner's
    replay: bool = True           # public scenarios graded from the child's record of them (labkit.grading.replay)

    def __post_init__(self):
        for name in ("timeout_s", "exercise_timeout_s", "call_timeout_s", "cell_timeout_s", "startup_timeout_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if not (isinstance(self.wall_factor, (int, float)) and self.wall_factor >= 1):
            raise ValueError(f"wall_factor must be >= 1, got {self.wall_factor!r}")
        for name in ("memory_mb", "max_processes", "max_file_mb", "max_open_files"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.memory_mb < 256:
            raise ValueError(f"memory_mb must be >= 256 (Python and labkit need about 200 MB), got {self.memory_mb}")

    def wall_s(self, cpu_s: float) -> float:
        """The wall-clock backstop for a limit of `cpu_s` CPU seconds."""
        return cpu_s * self.wall_factor + 10.0

    def to_dict(self) -> dict:
        return asdict(self)


# --- the child's side ---------------------------------------------------------------------


def confine(config: dict) -> dict:
    """Confine this (child) process before it runs learner code; returns what took effect.

    Order matters: paths are opened while still privileged, the network namespace needs
    root, the uid is dropped before Landlock (which needs no_new_privs when unprivileged).
    Raises OSError if the uid cannot be dropped: learner code must never run as root.
    """
    info: dict = {"platform": sys.platform, "uid": os.getuid()}
    os.chdir(config["workdir"])
    uid, gid = config.get("uid"), config.get("gid")
    dropping = uid is not None and os.geteuid() == 0

    info["network"] = "not isolated"
    if LINUX and config.get("isolate_network", True) and os.geteuid() == 0:
        if _libc_call("unshare", 0x40000000) == 0:  # CLONE_NEWNET: only a loopback, and it is down
            info["network"] = "isolated (private network namespace)"
    hide = [p for p in list(config.get("hide", [])) + list(config.get("must_hide", [])) if isinstance(p, str)]
    if hide:
        info["hidden_paths"] = _hide_paths(hide) if LINUX and os.geteuid() == 0 else "not hidden (needs root)"

    ruleset = _landlock_ruleset(config) if LINUX and config.get("landlock", True) else None
    info["landlock_abi"] = ruleset[1] if ruleset else None

    import_dirs = _import_dirs()
    dir_fds = {d: os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC) for d in import_dirs} if dropping else {}

    info["limits"] = _set_limits(config["limits"], dropping)

    if dropping:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
        if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
            raise OSError(errno.EPERM, "could not drop privileges")
        # Readable /proc/self/fd for the import trick below; RLIMIT_CORE is 0, so no core dumps.
        _libc_call("prctl", 4, 1, 0, 0, 0)  # PR_SET_DUMPABLE
        info["uid"] = uid
        _reach_import_dirs(dir_fds)

    if LINUX:
        _libc_call("prctl", 38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: no setuid binaries (su, sudo)
    if ruleset:
        fd, abi = ruleset
        if _libc_call("syscall", 446, fd, 0) == 0:  # landlock_restrict_self
            info["filesystem"] = "writes only in its working directory; reads only Python, labkit and the system"
            if abi >= 4:
                info["network"] += "; no TCP (Landlock)" if "isolated" in info["network"] else ""
                if "isolated" not in info["network"]:
                    info["network"] = "TCP blocked (Landlock); UDP and unix sockets open"
            if abi >= 6:
                info["signals"] = "only to its own processes (Landlock scope)"
        else:
            info["landlock_abi"] = None
        os.close(fd)
    info.setdefault("filesystem", "ordinary permissions of its uid" + (" (unprivileged)" if dropping else ""))
    must_hide = [p for p in config.get("must_hide", []) if isinstance(p, str)]
    if must_hide:
        readable = [p for p in must_hide if _readable(p)]
        info["hidden_tests"] = "readable: " + ", ".join(readable)[:500] if readable else "unreadable (checked)"
    return info


def _hide_paths(paths: list[str]) -> str:
    """Cover `paths` in a private mount namespace (root only): an empty read-only tmpfs over each directory,
    /dev/null over each file. What the child sees; the grader's own view is unchanged."""
    if _libc_call("unshare", 0x00020000) != 0:  # CLONE_NEWNS
        return "not hidden (no mount namespace)"
    # Private propagation first, so nothing mounted here shows up outside.
    if _libc_call("mount", b"none", b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC | MS_PRIVATE
        return "not hidden (mounts not private)"
    hidden = []
    needed = [os.getcwd(), sys.prefix, sys.base_prefix, _PACKAGE]
    for path in sorted(set(paths), key=len):
        if not os.path.exists(path) or any(n == path or n.startswith(path.rstrip("/") + "/") for n in needed):
            continue  # covering it would hide what the child runs from (checked afterwards all the same)
        encoded = os.fsencode(path)
        if os.path.isdir(path):
            ok = _libc_call("mount", b"tmpfs", encoded, b"tmpfs", 1 | 2 | 4 | 8, b"size=16k,mode=0555") == 0
        else:
            ok = _libc_call("mount", b"/dev/null", encoded, None, 4096, None) == 0  # MS_BIND
        if ok:
            hidden.append(path)
    return f"{len(hidden)} of {len(set(paths))} hidden (private mount namespace)"


def _readable(path: str) -> bool:
    """True if this process can read anything of `path`: a file's bytes or a directory's names."""
    try:
        if os.path.isdir(path):
            return bool(os.listdir(path))
        with open(path, "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def _import_dirs() -> list[str]:
    dirs = []
    for path in [*sys.path, *_package_dirs()]:
        if path and os.path.isdir(path) and path not in dirs:
            dirs.append(path)
    return dirs


def _package_dirs() -> list[str]:
    out = []
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if type(paths) is list:
            out.extend(p for p in paths if isinstance(p, str))
    return out


def _reach_import_dirs(dir_fds: dict) -> None:
    """Keep importing after dropping root, when Python itself lives under /root (pyenv, conda).

    An import directory the new uid cannot reach is replaced by /proc/self/fd/N, N being a
    directory descriptor opened while privileged: lookups through it start inside the
    directory, so no access to its parents is needed. Nothing else under /root is opened.
    """
    moved = {}
    for path, fd in dir_fds.items():
        if os.access(path, os.R_OK | os.X_OK):
            os.close(fd)
        else:
            moved[path] = f"/proc/self/fd/{fd}"
    if not moved:
        return

    def reach(path):
        if not isinstance(path, str):
            return path
        best = max((p for p in moved if path == p or path.startswith(p + os.sep)), key=len, default=None)
        return path if best is None else moved[best] + path[len(best):]

    sys.path[:] = [reach(p) for p in sys.path]
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if type(paths) is list:
            paths[:] = [reach(p) for p in paths]
    sys.path_importer_cache.clear()
    import importlib

    importlib.invalidate_caches()


def _set_limits(limits: dict, dropping: bool) -> dict:
    mb = 1024 * 1024
    current_vm = _vm_size()
    address_space = max(limits["memory_mb"] * mb, current_vm + 128 * mb)
    nproc = limits["max_processes"]
    if not dropping and hasattr(resource, "RLIMIT_NPROC"):
        nproc += _tasks_of_uid(os.getuid())  # the limit counts every process of this uid
    wanted = {"RLIMIT_AS": address_space, "RLIMIT_CPU": int(limits["cpu_s"]), "RLIMIT_NPROC": nproc,
              "RLIMIT_FSIZE": limits["max_file_mb"] * mb, "RLIMIT_CORE": 0,
              "RLIMIT_NOFILE": limits["max_open_files"]}
    applied = {}
    for name, value in wanted.items():
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, hard = resource.getrlimit(which)
        hard_new = value + 5 if name == "RLIMIT_CPU" else value  # SIGXCPU first, SIGKILL 5 s later
        if hard != resource.RLIM_INFINITY:
            hard_new = min(hard_new, hard)
            value = min(value, hard_new)
        try:
            resource.setrlimit(which, (value, hard_new))
            applied[name] = value
        except (ValueError, OSError):
            pass
    return applied


def _vm_size() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tasks_of_uid(uid: int) -> int:
    count = 0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields.get("Threads", "1").strip() or 1)
        except (OSError, ValueError, KeyError):
            continue
    return count


_libc = None


def _libc_call(name: str, *args) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(_libc, name)
    fn.restype = ctypes.c_long
    converted = [a if a is None or isinstance(a, (ctypes.Array, bytes)) else ctypes.c_long(a) for a in args]
    return fn(*converted)


# Landlock (linux/landlock.h): filesystem rights by ABI version.
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_FILE_RIGHTS = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV


def _landlock_ruleset(config: dict):
    """(ruleset fd, ABI) with this child's rules added, or None without Landlock."""
    try:
        abi = _libc_call("syscall", 444, 0, 0, 1)  # landlock_create_ruleset(NULL, 0, VERSION)
    except (OSError, AttributeError):
        return None
    if abi < 1:
        return None
    handled = (1 << 13) - 1
    if abi >= 2:
        handled |= 1 << 13  # REFER
    if abi >= 3:
        handled |= _FS_TRUNCATE
    if abi >= 5:
        handled |= _FS_IOCTL_DEV
    net = 0b11 if abi >= 4 else 0        # BIND_TCP | CONNECT_TCP, with no rule allowing any port
    scoped = 0b11 if abi >= 6 else 0     # abstract unix sockets and signals stay inside the sandbox
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    attr = ctypes.create_string_buffer(
        (handled).to_bytes(8, "little") + net.to_bytes(8, "little") + scoped.to_bytes(8, "little"), 24)
    fd = _libc_call("syscall", 444, attr, size, 0)
    if fd < 0:
        return None
    read = _FS_READ_FILE | _FS_READ_DIR
    rules = [(d, read) for d in _landlock_read_dirs(config)]
    rules += [(d, read | _FS_EXECUTE) for d in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")]
    rules += [(d, read) for d in ("/etc", "/proc", "/sys")]
    rules += [("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE | _FS_TRUNCATE | _FS_IOCTL_DEV),
              ("/dev/zero", _FS_READ_FILE), ("/dev/urandom", _FS_READ_FILE), ("/dev/random", _FS_READ_FILE)]
    rules += [(config["workdir"], handled)]
    for path, access in rules:
        try:
            path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if not os.path.isdir(path):
                access &= _FILE_RIGHTS
            rule = ctypes.create_string_buffer((access & handled).to_bytes(8, "little")
                                               + path_fd.to_bytes(4, "little", signed=True), 12)
            _libc_call("syscall", 445, fd, 1, rule, 0)  # landlock_add_rule(PATH_BENEATH)
        finally:
            os.close(path_fd)
    return fd, abi


def _landlock_read_dirs(config: dict) -> list[str]:
    """Python's import directories, without the labkit checkout itself (solutions/ live there)."""
    root = os.path.realpath(config.get("labkit_root", _ROOT))
    dirs = [d for d in _import_dirs() if os.path.realpath(d) != root]
    return dirs + [os.path.join(config.get("labkit_root", _ROOT), "labkit")]


# --- the grader's side --------------------------------------------------------------------


class UidPool:
    """Unprivileged uids for children when grading as root: one per running child, never shared.

    A uid of its own means a child cannot signal or trace another submission's child, its
    RLIMIT_NPROC counts only its own processes, and `kill(-1)` from that uid ends exactly
    the processes it started. Locks in a root-only directory keep two graders apart.
    """

    def __init__(self, first: int | None = None, count: int | None = None):
        spec = os.environ.get("LABKIT_GRADER_UIDS", "")
        if spec and first is None:
            lo, _, hi = spec.partition("-")
            first, count = int(lo), int(hi or lo) - int(lo) + 1
        self.first = 65000 if first is None else first
        self.count = 500 if count is None else count
        base = "/run" if os.path.isdir("/run") and os.access("/run", os.W_OK) else tempfile.gettempdir()
        self.lock_dir = os.path.join(base, "labkit-grader-uids")
        self._lock = threading.Lock()

    def _safe_lock_dir(self) -> str:
        try:
            os.mkdir(self.lock_dir, 0o700)
        except FileExistsError:
            pass
        st = os.lstat(self.lock_dir)
        import stat

        if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o077:
            raise OSError(f"{self.lock_dir} must be a directory owned by root with mode 700; remove it")
        return self.lock_dir

    def acquire(self) -> tuple[int, int]:
        """(uid, lock fd) of a free uid; hold the fd while the child lives."""
        import fcntl

        directory = self._safe_lock_dir()
        with self._lock:
            for uid in range(self.first, self.first + self.count):
                try:
                    pwd.getpwuid(uid)
                    continue  # a real account: never borrow it
                except KeyError:
                    pass
                fd = os.open(os.path.join(directory, str(uid)), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    os.close(fd)
                    continue
                kill_uid(uid)  # leftovers of a grader that died before cleaning up
                return uid, fd
        raise OSError(f"no free uid in {self.first}-{self.first + self.count - 1} for a grading child")

    @staticmethod
    def release(fd: int) -> None:
        os.close(fd)


def kill_uid(uid: int) -> None:
    """SIGKILL every process of `uid` (kill(-1) as that uid is atomic against fork bombs)."""
    try:
        subprocess.run(["/bin/sh", "-c", "kill -9 -1 2>/dev/null; exit 0"], user=uid, group=uid, extra_groups=[],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=10, close_fds=True)
    except (OSError, subprocess.SubprocessError):
        pass


def _kill_session(sid: int) -> None:
    """SIGKILL every process still in session `sid` (what an unprivileged grader can find)."""
    try:
        os.killpg(sid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(3):
        found = False
        for pid in (p for p in os.listdir("/proc") if p.isdigit()) if LINUX else ():
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
                if int(fields[3]) == sid:  # fields after "(comm)": state ppid pgrp session
                    os.kill(int(pid), signal.SIGKILL)
                    found = True
            except (OSError, ValueError, IndexError):
                continue
        if not found:
            break


def _child_env(workdir: str, shared_dir: str) -> dict:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": os.path.join(workdir, "tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "MPLBACKEND": "Agg",
        # Shared by the batch: the font cache is built once, while the child is still privileged.
        "MPLCONFIGDIR": os.path.join(shared_dir, "matplotlib"),
        "IPYTHONDIR": os.path.join(workdir, ".ipython"),
        "LABKIT_GRADING_CHILD": "1",
        # Fewer threads and arenas: each counts against RLIMIT_NPROC and RLIMIT_AS.
        "MALLOC_ARENA_MAX": "2",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def compile_labkit() -> None:
    """Write labkit's bytecode where it is missing or older than its source, once per grading run.

    Without it, every new interpreter the grader starts (a batch's first children, the fork
    server, the child of `labkit check`) compiles labkit's 15,000 lines again, and, started
    with -B, never writes what it compiled. A wheel's install writes the bytecode; a
    checkout, an editable install or PYTHONDONTWRITEBYTECODE (which many container images
    set) leave none. Measured: lesson 01's solution graded alone took 1.90 s without it and
    1.72 s with it (medians of 8 interleaved pairs). Where labkit's folder is not writable
    nothing is written, and children compile as before.
    """
    import compileall

    compileall.compile_dir(_PACKAGE, quiet=2)   # it reports an unreadable folder or unwritable file, quietly


def start_fork_server(limits: Limits) -> None:
    """Have later children forked from a server that has imported what they need (`labkit.grading.forkserver`)."""
    forkserver.start(_ROOT, _child_env("/", "/"), limits.startup_timeout_s)


_LIVE: set = set()
_LIVE_LOCK = threading.Lock()


def kill_live_children() -> None:
    """Kill every child this process started that is still running (Ctrl-C in the grader)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for child in live:
        child.kill()


class Child:
    """One sandboxed child process for one submission: start it, talk to it over pipes, end it."""

    def __init__(self, notebook: bytes, name: str, base_dir: str, limits: Limits, *,
                 uid_pool: UidPool | None, python: str | None = None, cpu_s: float | None = None,
                 hide: list[str] = (), must_hide: list[str] = ()):
        self.limits = limits
        # Paths the child must not see (the solutions, the tests), and must provably not read (hidden tests).
        self.hide, self.must_hide = [os.path.abspath(p) for p in hide], [os.path.abspath(p) for p in must_hide]
        # RLIMIT_CPU: everything the grader may ask of this process, plus its start.
        self.cpu_s = cpu_s if cpu_s is not None else limits.timeout_s + limits.startup_timeout_s + 10
        self.proc: subprocess.Popen | None = None   # a child started as a new interpreter
        self.pid: int | None = None
        self.pidfd: int | None = None   # a child forked by the fork server (labkit.grading.forkserver)
        self.uid = self._uid_lock = None
        self.workdir = tempfile.mkdtemp(prefix="sub-", dir=base_dir)
        self.log_path = self.workdir + ".log"
        self.rfd = self.wfd = -1
        self.sandbox: dict = {}
        if uid_pool is not None:
            self.uid, self._uid_lock = uid_pool.acquire()
        try:
            self._prepare(notebook, name)
            with _LIVE_LOCK:
                _LIVE.add(self)
            self._start(python or sys.executable)
        except BaseException:
            self.close()
            raise

    def _prepare(self, notebook: bytes, name: str) -> None:
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[-100:] or "notebook.ipynb"
        with open(os.path.join(self.workdir, safe), "wb") as f:
            f.write(notebook)
        os.mkdir(os.path.join(self.workdir, "tmp"), 0o700)
        if self.uid is not None:
            for path in (self.workdir, os.path.join(self.workdir, safe), os.path.join(self.workdir, "tmp")):
                os.chown(path, self.uid, self.uid)

    def _start(self, python: str) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        config = {
            "labkit_root": _ROOT, "rfd": to_child_r, "wfd": from_child_w, "workdir": self.workdir,
            "uid": self.uid, "gid": self.uid, "hide": self.hide, "must_hide": self.must_hide,
            # LABKIT_GRADER_LANDLOCK=0 / LABKIT_GRADER_NETNS=0 switch a layer off (to test the fallbacks).
            "isolate_network": os.environ.get("LABKIT_GRADER_NETNS", "1") != "0",
            "landlock": os.environ.get("LABKIT_GRADER_LANDLOCK", "1") != "0",
            "limits": {"memory_mb": self.limits.memory_mb, "max_processes": self.limits.max_processes,
                       "max_file_mb": self.limits.max_file_mb, "max_open_files": self.limits.max_open_files,
                       "cpu_s": self.cpu_s},
        }
        env, cwd = _child_env(self.workdir, os.path.dirname(self.workdir)), self.workdir
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            server = forkserver.ready() if python == sys.executable else None
            if server is not None:
                try:
                    self.pid, self.pidfd = server.spawn(config, env, cwd, to_child_r, from_child_w, log)
                except OSError:
                    forkserver.forget(server)
            if self.pidfd is None:
                self.proc = subprocess.Popen(
                    [python, "-I", "-B", "-X", "utf8", "-c", BOOT.format(root=_ROOT), json.dumps(config)],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, pass_fds=(to_child_r, from_child_w),
                    cwd=cwd, env=env, start_new_session=True, close_fds=True)
                self.pid = self.proc.pid
        finally:
            os.close(log)
            os.close(to_child_r)
            os.close(from_child_w)
        self.rfd, self.wfd = from_child_r, to_child_w

    def kill(self) -> None:
        """End the child and everything it started (process group, session, and its uid)."""
        # One reading of each: on Ctrl-C the main thread kills every live child while a worker's
        # `close` of the same child may be clearing them (a forked child then has neither a pidfd nor a proc).
        pid, pidfd, proc = self.pid, self.pidfd, self.proc
        if pid is None:
            return
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass   # it has ended (or `close` has closed the pidfd: it was waited for)
        _kill_session(pid)
        if self.uid is not None:
            kill_uid(self.uid)
        if pidfd is not None:
            forkserver.wait_for_exit(pidfd, 10)
        elif proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def output(self, head: int = 1500, tail: int = 1500) -> str:
        """The start and end of what the child printed (its output file is capped by RLIMIT_FSIZE)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(0)
                if size <= head + tail:
                    return f.read().decode("utf-8", "replace")
                first = f.read(head)
                f.seek(size - tail)
                return (first.decode("utf-8", "replace") + f"\n[... {size - head - tail:,} bytes left out ...]\n"
                        + f.read().decode("utf-8", "replace"))
        except OSError:
            return ""

    def close(self) -> None:
        """Kill, close the pipes, delete the working directory and give the uid back."""
        self.kill()
        with _LIVE_LOCK:
            _LIVE.discard(self)
        for fd in (self.rfd, self.wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.rfd = self.wfd = -1
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        shutil.rmtree(self.workdir, ignore_errors=True)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        if self._uid_lock is not None:
            UidPool.release(self._uid_lock)
            self._uid_lock = None
