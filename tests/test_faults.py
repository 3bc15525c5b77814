"""Nothing lost under faults (issue 14): every output complete or absent, one bad input never stops the run,
the operating system's reasons reported, signals and closed pipes handled as Unix tools do.

How faults are made, so that CI runs every test: an injected writer (``gazecrop._atomic._write``) that fails,
writes nothing, or lies about a short write, in turn at every call; a real 32 KB tmpfs in a private mount
namespace (``unshare -m``, or ``unshare -rm`` without root; skipped only where neither works); signals sent
to a real command-line subprocess (``tests/_cli_driver.py``); permission cases in a forked child that drops
to ``nobody`` after the imports (as a non-root user, the child keeps its own user, for whom the same
permissions hold).
"""

import errno
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageCms

import gazecrop
from gazecrop import _atomic
from gazecrop._output import format_of_extension, write_image
from gazecrop.cli import expand_inputs, image_extensions, main

from _crop_helpers import tiny_network
from test_cli import _photo, fixed  # noqa: F401 - the fixed-peak model fixture and the photo helper

HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "_cli_driver.py")


def _read(path):
    with open(path) as f:
        return f.read()


def _hidden(d):
    return sorted(f for f in os.listdir(d) if f.startswith(".") or f.endswith(".tmp"))


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), GAZECROP_TEST_FIXED="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.update(extra)
    return env


def _cli(args, timeout=60, **kw):
    """The real command line in a subprocess (fixed-peak model)."""
    env = _env(**kw.pop("env", {}))
    return subprocess.run([sys.executable, DRIVER] + [str(a) for a in args], capture_output=True,
                          timeout=timeout, env=env, **kw)


# --------------------------------------------------------------------------- 1. complete or nothing

def _image_payloads(tmp_path):
    """(name, callable writing the output at path) for each format and the weights writer."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    out = [(f"crop.{ext}", (lambda p, fmt=fmt, kw=kw: write_image(rgb, p, fmt, **kw)))
           for ext, fmt, kw in [("jpg", "JPEG", {}), ("png", "PNG", {}), ("webp", "WEBP", {"quality": 80})]]

    from gazecrop.weights import write_weights
    out.append(("model.gzw", lambda p: write_weights(p, tiny_network())))
    return out


@pytest.mark.parametrize("mode", ["raises", "takes-nothing", "lies"])
def test_a_write_failing_at_any_call_never_publishes_a_partial_file(tmp_path, monkeypatch, mode):
    """Item 1: the injected writer takes at most 700 bytes per call (a legal short write), and fails in turn
    at every call k: an error, a call that takes nothing, or a short write reported as complete (Pillow's
    encoders ignored short writes). The destination holds its previous content at every call and after."""
    real = os.write
    for name, write in _image_payloads(tmp_path):
        dst = tmp_path / name
        dst.write_bytes(b"previous")
        calls = []

        def short(fd, data):
            assert dst.read_bytes() == b"previous"  # never partial under the final name
            calls.append(len(data))
            return real(fd, data[:700])

        monkeypatch.setattr(_atomic, "_write", short)
        write(str(tmp_path / ("full_" + name)))  # short writes are legal: retried to completion
        n_calls = len(calls)
        assert n_calls >= 2
        assert _hidden(tmp_path) == []
        for k in range(n_calls):
            seen = []

            def faulty(fd, data, k=k, seen=seen):
                assert dst.read_bytes() == b"previous"
                seen.append(1)
                if len(seen) - 1 < k:
                    return real(fd, data[:700])
                if mode == "raises":
                    raise OSError(errno.ENOSPC, "No space left on device")
                if mode == "takes-nothing":
                    return 0
                real(fd, data[: len(data) // 2])
                return len(data)  # lies

            monkeypatch.setattr(_atomic, "_write", faulty)
            with pytest.raises(OSError):
                write(str(dst))
            assert dst.read_bytes() == b"previous", (name, k)
            assert _hidden(tmp_path) == [], (name, k)
        monkeypatch.setattr(_atomic, "_write", real)
        write(str(dst))
        assert dst.stat().st_size == (tmp_path / ("full_" + name)).stat().st_size


def test_the_longest_file_names_can_be_written(tmp_path):
    for name in ("a" * 255, "\u00e9" * 127):  # NAME_MAX bytes: the temporary file's name must fit too
        _atomic.write_bytes(tmp_path / name, b"x")
        assert (tmp_path / name).read_bytes() == b"x"
    assert _hidden(tmp_path) == []


def test_pillow_cannot_bypass_the_checked_writer(tmp_path):
    """The file object handed to encoders has no fileno(): Pillow falls back to write(), which is checked."""
    with _atomic.atomic_open(tmp_path / "x") as f:
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        f.write(b"abc")
    assert (tmp_path / "x").read_bytes() == b"abc"


def test_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    """Also: the file is fsynced before the rename and its folder after it (the new name is durable)."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append("fsync folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file")
        real_fsync(fd)

    def replace(a, b):
        events.append("rename")
        real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    _atomic.write_bytes(tmp_path / "a.bin", b"data")
    assert events == ["fsync file", "rename", "fsync folder"]


_MOUNT_SCRIPT = r"""
set -e
mount -t tmpfs -o size=32k tmpfs "$MNT"
head -c 16384 /dev/zero > "$MNT/fill"
set +e
"$PY" "$DRIVER" "$SRC" --aspect 1:1 --out "$MNT" > "$LOG.out" 2> "$LOG.err"
echo $? > "$LOG.rc"
ls -a "$MNT" > "$LOG.ls"
for f in "$MNT"/*; do [ "$f" = "$MNT/fill" ] || cp "$f" "$LOG.copy"; done
"""


def _run_in_mount_namespace(script, env):
    for cmd in (["unshare", "-m"], ["unshare", "-rm"]):
        if shutil.which(cmd[0]) is None:
            break
        probe = subprocess.run(cmd + ["sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=32k tmpfs $d"],
                               capture_output=True)
        if probe.returncode == 0:
            return subprocess.run(cmd + ["sh", "-c", script], env=env, capture_output=True, timeout=60)
    pytest.skip("cannot mount a tmpfs here (no unshare -m or -rm): the injected-writer tests cover the logic")


def test_full_tmpfs_with_a_progressive_jpeg_fails_and_leaves_nothing(tmp_path):
    """Item 1, for real: a 32 KB tmpfs with 16 KB free as --out, a progressive JPEG whose crop needs more."""
    src = _photo(tmp_path / "p.jpg", size=(400, 300), quality=95, progressive=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = str(tmp_path / "log")
    env = _env(MNT=str(mnt), PY=sys.executable, DRIVER=DRIVER, SRC=src, LOG=log)
    r = _run_in_mount_namespace(_MOUNT_SCRIPT, env)
    assert r.returncode == 0, r.stderr
    rc = int(_read(log + ".rc"))
    err = _read(log + ".err")
    listing = _read(log + ".ls").split()
    assert rc == 1 and f"cannot write {mnt / 'p_1x1.jpg'}: No space left on device" in err, err
    assert "Traceback" not in err
    assert sorted(listing) == [".", "..", "fill"]  # no truncated output, no temporary file
    assert not os.path.exists(log + ".copy")


# --------------------------------------------------------------------------- 2. signals

def _wait_for(path, proc, timeout=30):
    t0 = time.monotonic()
    while not os.path.exists(path):
        if proc.poll() is not None:
            raise AssertionError(f"exited early: {proc.returncode} {proc.stderr.read()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.01)


def _blocked_run(tmp_path, n=4, ignore=()):
    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(n)]
    out = tmp_path / "out"
    ready = tmp_path / "ready"

    def ignored():
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)

    proc = subprocess.Popen([sys.executable, DRIVER] + files + ["--aspect", "1:1", "--out", str(out), "-j", "2"],
                            env=_env(GAZECROP_TEST_BLOCK=str(ready)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ignored)
    _wait_for(ready, proc)
    assert any(_atomic.TEMP_PATTERN.match(f) for f in os.listdir(out))  # a partial file is being written
    return proc, out


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
def test_signal_mid_batch_removes_partial_files(tmp_path, sig, status):
    """Item 2 and the exit statuses: a stopping signal while an output is half written."""
    proc, out = _blocked_run(tmp_path)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert f"stopped by {signal.Signals(sig).name}" in stderr
    assert _hidden(out) == []
    for f in os.listdir(out):  # whatever was published is complete
        with Image.open(out / f) as im:
            im.load()


class _Stopped(BaseException):
    """Stands for the command line's stop exception (:class:`gazecrop.cli._Stop`)."""


def test_a_stop_between_any_two_calls_of_a_write_leaves_no_temporary_file(tmp_path):
    """A signal's Python handler runs between bytecodes, in practice on a function's entry or just after a call
    returns; the command line's handler raises, then cancel_pending() removes what is being written. Here the
    exception is raised at every such point of one atomic write in turn (a profile hook, which sees the calls
    of C functions too: right after os.open created the file, before anything recorded its name). Found by
    CI: a SIGTERM that arrived just after the temporary file was created left it behind (1 run in ~50)."""
    _atomic.write_bytes(tmp_path / "first.bin", b"x")  # the folder's one-off clean-up is behind us
    stops = 0
    for k in range(1, 10_000):
        seen = [0]

        def hook(frame, event, arg):
            if event in ("call", "return", "c_return"):
                seen[0] += 1
                if seen[0] == k:
                    raise _Stopped

        sys.setprofile(hook)
        try:
            _atomic.write_bytes(tmp_path / "out.bin", b"x" * 100)
            finished = True
        except _Stopped:
            finished = False
        finally:
            sys.setprofile(None)
        assert not _atomic._LOCK.locked(), f"stop at call event {k} left the lock held"
        _atomic.cancel_pending()
        _atomic.allow_writes()
        assert _hidden(tmp_path) == [], f"stop at call event {k} left a temporary file"
        if finished:
            break
        stops += 1
    assert finished and stops > 50  # every point of a whole write was tried
    assert (tmp_path / "out.bin").read_bytes() == b"x" * 100


def test_an_ignored_signal_stays_ignored(tmp_path):
    """Under nohup (SIGHUP ignored) a hangup does not stop the run; SIGTERM still does."""
    proc, out = _blocked_run(tmp_path, n=1, ignore=(signal.SIGHUP,))
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 143 and _hidden(out) == [], stderr


def test_sigkill_leftovers_are_removed_by_the_next_run_but_live_writers_are_not(fixed, tmp_path):
    """Also: a SIGKILL leaves a temporary file; the next run writing to that folder removes it, while the
    temporary file of a writer that is still alive (another process, started before the kill) stays."""
    proc, out = _blocked_run(tmp_path, n=1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from gazecrop._atomic import atomic_open\n"
         f"with atomic_open({str(out / 'other.bin')!r}) as f:\n f.write(b'x'); print('ok', flush=True); "
         "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "ok"
    proc.kill()
    proc.communicate(timeout=30)
    temps = [f for f in os.listdir(out) if _atomic.TEMP_PATTERN.match(f)]
    left = [f for f in temps if ".p0_1x1.png." in f]
    live = [f for f in temps if ".other.bin." in f]
    assert len(left) == 1 and len(live) == 1
    (out / ".notes.txt.tmp").write_text("keep")  # not gazecrop's naming: never touched
    assert main([_photo(tmp_path / "q.png"), "-a", "1:1", "--out", str(out)]) == 0
    names = os.listdir(out)
    assert left[0] not in names and live[0] in names and ".notes.txt.tmp" in names
    holder.communicate("", timeout=30)
    assert holder.returncode == 0 and (out / "other.bin").read_bytes() == b"x"


# --------------------------------------------------------------------------- 3. names the terminal cannot show

def test_undecodable_file_name_with_a_strict_utf8_stdout(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    bad = os.path.join(os.fsencode(d), b"caf\xe9.png")
    Image.new("RGB", (40, 30), (9, 9, 9)).save(bad, format="PNG")
    _photo(d / "z.png")
    r = _cli([d, "-a", "1:1"], env={"PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(bad) and lines[1].startswith(os.fsencode(d / "z.png"))
    r = _cli([d, "-a", "1:1", "--json"], env={"PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0 and [json.loads(x)["input"] for x in r.stdout.splitlines()][1] == str(d / "z.png")


# --------------------------------------------------------------------------- 4, 7, 8. permissions as nobody

@pytest.fixture
def shared_dir():
    """A folder every user can reach by its absolute path (tmp_path's parents are private to root)."""
    d = tempfile.mkdtemp(prefix="gazecrop-faults-")
    os.chmod(d, 0o755)
    p = os.path.dirname(d)
    while os.geteuid() == 0 and p != os.path.dirname(p):  # nobody must reach it (not needed as non-root)
        if not os.stat(p).st_mode & stat.S_IXOTH:
            shutil.rmtree(d)
            pytest.skip(f"{p} is not searchable by other users")
        p = os.path.dirname(p)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(argv, cwd):
    """main(argv) in a forked child running as nobody (uid/gid 65534) after the imports; (rc, out, err)."""
    image_extensions()  # load Pillow's plugins and features before the child loses access to the venv
    Image.init()
    import PIL.ImageDraw  # noqa: F401
    out_path, err_path = os.path.join(cwd, "o.txt"), os.path.join(cwd, "e.txt")
    with warnings.catch_warnings():  # Python >= 3.12 warns about fork() with threads; the child runs main() only
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        rc = 99
        try:
            sys.stdout = open(out_path, "w")
            sys.stderr = open(err_path, "w")
            os.chdir(cwd)
            if os.geteuid() == 0:
                try:
                    os.setgroups([])
                    os.setgid(65534)
                    os.setuid(65534)
                except OSError as e:
                    print(f"cannot drop privileges: {e}", file=sys.stderr)
                    rc = 98
                    raise
            rc = main(argv)
        except BaseException:
            pass
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(rc)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    out, err = _read(out_path), _read(err_path)
    if rc == 98:
        pytest.skip(err.strip())
    return rc, out, err


def test_permission_cases_as_an_unprivileged_user(fixed, shared_dir):
    """Item 4: a folder input that may not be listed; item 7: a file inside a folder that may not be entered;
    item 8: -r over an unreadable sub-folder. Each is reported with the system's reason, the rest is done."""
    d = shared_dir
    os.makedirs(os.path.join(d, "locked"))
    _photo(os.path.join(d, "locked", "x.png"))
    os.makedirs(os.path.join(d, "tree", "secret"))
    _photo(os.path.join(d, "tree", "ok.png"), seed=2)
    _photo(os.path.join(d, "tree", "secret", "y.png"), seed=3)
    _photo(os.path.join(d, "good.png"), seed=1)
    os.makedirs(os.path.join(d, "out"))
    for p in ("locked", os.path.join("tree", "secret")):
        os.chmod(os.path.join(d, p), 0o700)
    os.chmod(os.path.join(d, "out"), 0o777)
    if os.geteuid() != 0:  # as an ordinary user: make the folders ours-but-closed
        for p in ("locked", os.path.join("tree", "secret")):
            os.chmod(os.path.join(d, p), 0o000)
    try:
        rc, out, err = _as_nobody(["locked", os.path.join("locked", "x.png"), "good.png", "tree", "-r",
                                   "-a", "1:1", "--out", "out"], d)
    finally:
        for p in ("locked", os.path.join("tree", "secret")):
            os.chmod(os.path.join(d, p), 0o755)
    assert rc == 1, err
    assert "locked: cannot list folder: Permission denied" in err
    assert f"{os.path.join('locked', 'x.png')}: Permission denied" in err
    assert f"{os.path.join('tree', 'secret')}: cannot list folder: Permission denied" in err
    assert "Traceback" not in err and "3 of 5 input(s) failed" in err
    assert "good.png" in out and "ok.png" in out
    assert sorted(os.listdir(os.path.join(d, "out"))) == ["good_1x1.png", "ok_1x1.png"]


# --------------------------------------------------------------------------- 5. only regular files are read

_REGULAR_SCRIPT = r"""
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
import gazecrop
from gazecrop._image import open_image
from gazecrop.cli import main
fifo, big = sys.argv[1], sys.argv[3]
res = {}
for label, f in [("load /dev/zero", lambda: gazecrop.load_model("/dev/zero")),
                 ("load big", lambda: gazecrop.load_model(big)),
                 ("load fifo", lambda: gazecrop.load_model(fifo)),
                 ("map fifo", lambda: gazecrop.saliency_map(fifo)),
                 ("open /dev/zero", lambda: open_image("/dev/zero"))]:
    try:
        f()
        res[label] = "no error"
    except Exception as e:
        res[label] = f"{type(e).__name__}: {e}"
res["cli model /dev/zero"] = main([sys.argv[2], "--model", "/dev/zero"])
res["cli model fifo"] = main([sys.argv[2], "--model", fifo])
res["cli input fifo"] = main([fifo, sys.argv[2]])
print(json.dumps(res))
"""


def test_fifos_and_devices_are_refused_before_reading(tmp_path):
    pytest.importorskip("gazecrop._core")
    fifo = str(tmp_path / "fifo")
    os.mkfifo(fifo)
    src = _photo(tmp_path / "a.png")
    big = tmp_path / "big.mkv"  # a 4 GB (sparse) file of another kind given as a model: refused unread
    with open(big, "wb") as f:
        f.write(b"\x1aE\xdf\xa3")
        f.truncate(4 << 30)
    r = subprocess.run([sys.executable, "-c", _REGULAR_SCRIPT, fifo, src, big], capture_output=True, text=True,
                       timeout=60, env=_env(GAZECROP_TEST_FIXED="0"))
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.splitlines()[-1])
    assert res["load /dev/zero"] == "NotRegularFileError: /dev/zero: not a regular file (a character device); " \
                                    "refusing to read it"
    assert res["load fifo"].startswith("NotRegularFileError") and "a FIFO" in res["load fifo"]
    assert res["load big"] == f"WeightsFormatError: {big}: bad magic b'\\x1aE\\xdf\\xa3\\x00\\x00\\x00\\x00': " \
                              "not a gazecrop weights file"
    assert res["map fifo"].startswith("ImageError") and "a FIFO" in res["map fifo"]
    assert res["open /dev/zero"].startswith("ImageError")
    assert res["cli model /dev/zero"] == 2 and res["cli model fifo"] == 2
    assert res["cli input fifo"] == 1  # the FIFO input fails, the photo is done
    assert f"{fifo}: not a regular file (a FIFO)" in r.stderr and "Traceback" not in r.stderr


# --------------------------------------------------------------------------- 6. closed or full stdout

def test_closed_stdout_is_a_quiet_exit(tmp_path):
    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(3)]
    rd, wr = os.pipe()
    os.close(rd)  # like `| head -0`: the reader is gone before the first line
    try:
        r = subprocess.run([sys.executable, DRIVER] + files + ["-a", "1:1", "--out", str(tmp_path / "o")],
                           stdout=wr, stderr=subprocess.PIPE, text=True, timeout=60, env=_env())
    finally:
        os.close(wr)
    assert r.returncode == 141 and r.stderr == ""
    assert _hidden(tmp_path / "o") == []
    # and the way users meet it: `gazecrop ... | head -1`, with more output than a pipe holds (20 inputs: hard
    # links, which are distinct inputs, of 60 lines each)
    for i in range(20):
        os.link(files[0], tmp_path / f"link{i}.png")
    cmd = (f"'{sys.executable}' '{DRIVER}' '{tmp_path}'" + " -a 1:1" * 60 + " | head -1; exit ${PIPESTATUS[0]}")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, env=_env(), timeout=120)
    assert p.returncode == 141 and p.stdout.count("\n") == 1 and p.stderr == "", p.stderr


def test_stdout_on_a_full_device_is_reported(tmp_path):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    src = _photo(tmp_path / "a.png")
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, DRIVER, src, "-a", "1:1"], stdout=full, stderr=subprocess.PIPE,
                           text=True, timeout=60, env=_env())
    assert r.returncode == 1
    assert "cannot write to standard output: No space left on device" in r.stderr
    assert "Traceback" not in r.stderr and "Exception ignored" not in r.stderr


# --------------------------------------------------------------------------- 7. what the system said

def test_symlink_loop_and_missing_file_say_what_the_system_said(fixed, tmp_path, capsys):
    os.symlink("loop.jpg", tmp_path / "loop.jpg")
    good = _photo(tmp_path / "g.png")
    assert main([str(tmp_path / "loop.jpg"), str(tmp_path / "none.jpg"), good]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'loop.jpg'}: Too many levels of symbolic links" in err
    assert f"{tmp_path / 'none.jpg'}: No such file or directory" in err
    d = tmp_path / "d"  # the same inside a folder input, where they were skipped silently
    d.mkdir()
    os.symlink("loop.png", d / "loop.png")
    os.symlink("gone.png", d / "dangling.png")
    os.mkfifo(d / "fifo.png")
    (d / "sub.png").mkdir()  # a folder named like an image: not an input
    _photo(d / "ok.png")
    assert main([str(d)]) == 1
    err = capsys.readouterr().err
    assert f"{d / 'loop.png'}: Too many levels of symbolic links" in err
    assert f"{d / 'dangling.png'}: No such file or directory" in err
    assert f"{d / 'fifo.png'}: not a regular file (a FIFO)" in err
    assert "sub.png" not in err and "3 of 4 input(s) failed" in err


# --------------------------------------------------------------------------- 8. expansion reports

def test_folders_pick_up_avif_and_jpeg2000(fixed, tmp_path, capsys):
    from PIL import features

    d = tmp_path / "in"
    d.mkdir()
    want = []
    for ext, feat in ((".avif", "avif"), (".jp2", "jpg_2000")):
        if features.check(feat):
            _photo(d / f"a{ext}", size=(64, 48))
            want.append(f"a{ext}")
    if not want:
        pytest.skip("this Pillow has neither AVIF nor JPEG 2000")
    assert main([str(d), "-a", "1:1", "--out", str(tmp_path / "o")]) == 0
    assert sorted(os.listdir(tmp_path / "o")) == sorted(w.replace("a.", "a_1x1.") for w in want)
    for f in os.listdir(tmp_path / "o"):
        with Image.open(tmp_path / "o" / f) as im:
            assert format_of_extension(os.path.splitext(f)[1]) == im.format


def test_patterns_and_folders_that_give_nothing_are_reported(fixed, tmp_path, capsys):
    good = _photo(tmp_path / "g.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "sub").mkdir()
    rc = main([good, str(tmp_path / "*.gif"), str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{tmp_path / '*.gif'}: no file matches this pattern" in err
    assert f"{tmp_path / 'empty'}: no image files in folder\n" in err  # its sub-folder read too (the default)
    assert "2 of 3 input(s) failed" in err
    main([str(tmp_path / "empty"), "--no-recursive"])
    assert "no image files in folder (it has sub-folders: drop --no-recursive to read them)" in capsys.readouterr().err
    found = expand_inputs([str(tmp_path / "*.gif"), good], recursive=False)
    assert [f.error is None for f in found] == [False, True]


# --------------------------------------------------------------------------- 9. format precedence

def _assert_extensions_match(folder):
    for f in os.listdir(folder):
        with Image.open(os.path.join(folder, f)) as im:
            assert format_of_extension(os.path.splitext(f)[1]) in (im.format, "JPEG" if im.format == "MPO" else 0), f


@pytest.mark.parametrize("template,requested,src,ext,want", [
    ("{stem}{ext}", None, "JPEG", ".JPG", ("a.JPG", "JPEG")),      # the input's spelling when it is right
    ("{stem}{ext}", None, "PNG", ".jpg", ("a.png", "PNG")),        # PNG bytes named .jpg
    ("{stem}{ext}", None, "MPO", ".mpo", ("a.jpg", "JPEG")),       # an MPO's first frame is a JPEG
    ("{stem}{ext}", None, "XPM", ".xpm", ("a.png", "PNG")),        # read-only format
    ("{stem}{ext}", "WEBP", "JPEG", ".jpg", ("a.webp", "WEBP")),   # --format first
    ("{stem}.png", None, "JPEG", ".jpg", ("a.png", "PNG")),        # then the extension in --name
    ("{stem}.PNG", "PNG", "JPEG", ".jpg", ("a.PNG", "PNG")),
    ("{stem}_crop", None, "JPEG", ".jpeg", ("a_crop.jpeg", "JPEG")),  # no extension: the format's is added
    ("{stem}_{aspect}", "PNG", "JPEG", ".jpg", ("a_1.78.png", "PNG")),  # '.78' is no image extension
], ids=str)
def test_output_name_rules(template, requested, src, ext, want):
    from gazecrop._output import SourceInfo, output_name

    got = output_name(template, {"stem": "a", "aspect": "1.78"}, requested=requested,
                      source=SourceInfo(src, extension=ext))
    assert got == want
    assert format_of_extension(os.path.splitext(got[0])[1]) == got[1]


@pytest.mark.parametrize("template,requested", [("{stem}.png", "JPEG"), ("{stem}.xpm", None)])
def test_output_name_conflicts(template, requested):
    from gazecrop._output import output_name

    with pytest.raises(ValueError):
        output_name(template, {"stem": "a"}, requested=requested)


def test_png_bytes_named_jpg_give_a_png(fixed, tmp_path):
    src = tmp_path / "fake.jpg"
    Image.new("RGB", (60, 40), (1, 2, 3)).save(src, format="PNG")
    assert main([str(src), "-a", "1:1", "--out", str(tmp_path / "o")]) == 0
    assert os.listdir(tmp_path / "o") == ["fake_1x1.png"]
    _assert_extensions_match(tmp_path / "o")


def test_name_extension_then_format_option_decide(fixed, tmp_path, capsys):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x0110] = "Cam"
    src = _photo(tmp_path / "p.jpg", size=(80, 60), quality=90, icc_profile=icc, exif=exif.tobytes())
    o = tmp_path / "o"
    assert main([src, "-a", "1:1", "--out", str(o), "--name", "{stem}.png"]) == 0
    with Image.open(o / "p.png") as im:  # EXIF orientation applied, reset; ICC and EXIF kept
        assert im.format == "PNG" and im.size == (60, 60) and im.info.get("icc_profile") == icc
        assert im.getexif().get(0x0112) == 1 and im.getexif().get(0x0110) == "Cam"
    assert main([src, "-a", "16:9", "--out", str(o), "--format", "webp", "--quality", "40"]) == 0
    assert main([src, "-a", "16:9", "--out", str(o), "--name", "{stem}_c", "--format", "png"]) == 0
    assert main([src, "-a", "16:9", "--out", str(o), "--name", "{stem}_q{ext}", "--quality", "20"]) == 0
    assert sorted(os.listdir(o)) == ["p.png", "p_16x9.webp", "p_c.png", "p_q.jpg"]
    _assert_extensions_match(o)
    with Image.open(o / "p_q.jpg") as a, Image.open(src) as b:
        assert a.quantization != b.quantization  # --quality replaces the input's tables
    with pytest.raises(SystemExit) as e:  # a literal extension that contradicts --format
        main([src, "--out", str(o), "--name", "{stem}.png", "--format", "jpeg"])
    assert e.value.code == 2 and "names PNG but the format asked for is JPEG" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([src, "--out", str(o), "--quality", "0"])


def test_alpha_written_as_jpeg_is_composited_over_white(fixed, tmp_path):
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0] = 200  # transparent red: shows as white
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    assert main([str(tmp_path / "t.png"), "-a", "1:1", "--out", str(tmp_path / "o"), "--format", "jpeg"]) == 0
    with Image.open(tmp_path / "o" / "t_1x1.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert np.asarray(im).min() > 245


# --------------------------------------------------------------------------- 10. model errors name the file

def test_model_errors_name_the_file(tmp_path, capsys):
    pytest.importorskip("gazecrop._core")
    from gazecrop.weights import to_bytes

    data = bytearray(to_bytes(tiny_network()))
    data[200] ^= 0xFF
    bad = tmp_path / "bad.gzw"
    bad.write_bytes(bytes(data))
    with pytest.raises(gazecrop.WeightsFormatError, match=f"^{bad}: checksum mismatch"):
        gazecrop.load_model(bad)
    assert main([_photo(tmp_path / "a.png"), "--model", str(bad)]) == 2
    assert f"cannot load model: {bad}: checksum mismatch" in capsys.readouterr().err


# --------------------------------------------------------------------------- 12. terminal

def _screen(stream: str):
    """Lines as a terminal shows them: ``\\r`` returns to column 0, ``ESC[K`` erases to the end."""
    lines, cur, col = [], [], 0
    i = 0
    while i < len(stream):
        if stream.startswith("\x1b[K", i):
            del cur[col:]
            i += 3
            continue
        ch = stream[i]
        if ch == "\n":
            lines.append("".join(cur))
            cur, col = [], 0
        elif ch == "\r":
            col = 0
        else:
            if col < len(cur):
                cur[col] = ch
            else:
                cur.append(ch)
            col += 1
        i += 1
    if cur:
        lines.append("".join(cur))
    return lines


def test_progress_bar_and_result_lines_do_not_run_into_each_other(fixed, tmp_path, monkeypatch):
    files = [_photo(tmp_path / f"p{i}.png", seed=i) for i in range(3)]
    term = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", write_through=True)
    monkeypatch.setattr(sys, "stdout", term)
    monkeypatch.setattr(sys, "stderr", term)
    assert main(files + ["-a", "1:1", "--progress"]) == 0
    term.seek(0)
    screen = _screen(term.read())
    results = [line for line in screen if "\t1:1\t" in line]
    assert [r.split("\t")[0] for r in results] == files
    assert all(r.startswith(f) for r, f in zip(results, files))  # no bar glued in front
    assert screen[-1].startswith("[#") and screen[-1].endswith("3/3")


def test_help_explains_the_output(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for word in ("point", "score", "crop optional", "salient point", "share of the predicted looks", "130", "143"):
        assert word in out


# --------------------------------------------------------------------------- 13. heatmaps

def test_heatmap_defaults_size_option_and_format(fixed, tmp_path):
    src = _photo(tmp_path / "big.png", size=(1280, 640))
    o = tmp_path / "o"
    assert main([src, "-a", "1:1", "--out", str(o), "--heatmap"]) == 0
    with Image.open(o / "big_heatmap.jpg") as h:
        assert h.format == "JPEG" and h.size == (1024, 512)
    assert main([src, "-a", "1:1", "--out", str(tmp_path / "f"), "--heatmap", "--heatmap-size", "full",
                 "--format", "png"]) == 0
    with Image.open(tmp_path / "f" / "big_heatmap.png") as h:
        assert h.format == "PNG" and h.size == (1280, 640)
    _assert_extensions_match(o)


# --------------------------------------------------------------------------- found by a second hostile run

def test_name_clash_fails_the_later_input_whatever_the_timing_even_when_names_lie(fixed, tmp_path, capsys,
                                                                                 monkeypatch):
    """Two inputs whose bytes (PNG) contradict their name (.jpg) give the same output name; the later input
    fails however fast the earlier one runs (the plan uses the real formats, not the extensions)."""
    import gazecrop.cli as cli

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = str(tmp_path / "a" / "x.jpg"), str(tmp_path / "b" / "x.jpg")
    Image.new("RGB", (90, 60), (10, 20, 30)).save(first, format="PNG")
    Image.new("RGB", (70, 50), (200, 100, 0)).save(second, format="PNG")
    real_open = cli.open_image

    def slow_first(image, **kw):  # the first input is slow: without a plan, the second would claim first
        if image == first:
            time.sleep(0.5)
        return real_open(image, **kw)

    monkeypatch.setattr(cli, "open_image", slow_first)
    for jobs in ("1", "2"):
        out = tmp_path / f"o{jobs}"
        assert main([first, second, "-a", "1:1", "--out", str(out), "--jobs", jobs]) == 1
        err = capsys.readouterr().err
        assert f"{second}: output {out / 'x_1x1.png'} is also the output of {first}" in err
        assert os.listdir(out) == ["x_1x1.png"]
        with Image.open(out / "x_1x1.png") as im:
            assert im.size == (60, 60) and im.getpixel((0, 0)) == (10, 20, 30)


def test_an_encoder_refusing_the_image_names_the_output(fixed, tmp_path, capsys):
    """Pillow refusing a mode for the format asked for in --name (a 16-bit PNG as PDF) is reported as a
    failure to write that output, like an OSError."""
    src = tmp_path / "g16.png"
    Image.fromarray(np.full((40, 60), 40000, np.uint16)).save(src)
    out = tmp_path / "o"
    assert main([str(src), "-a", "1:1", "--out", str(out), "--name", "{stem}.pdf"]) == 1
    err = capsys.readouterr().err
    assert f"{src}: cannot write {out / 'g16.pdf'}: " in err and "Traceback" not in err
    assert _hidden(out) == [] and os.listdir(out) == []


def test_output_folder_that_is_a_file_or_a_loop_says_so(fixed, tmp_path, capsys):
    src = _photo(tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    os.symlink("loop", tmp_path / "loop")
    assert main([src, "--out", str(tmp_path / "file")]) == 2
    assert f"cannot create output folder {tmp_path / 'file'}: not a folder" in capsys.readouterr().err
    assert main([src, "--out", str(tmp_path / "loop")]) == 2
    assert f"cannot create output folder {tmp_path / 'loop'}: {os.strerror(errno.ELOOP)}" in capsys.readouterr().err


def test_decompression_bomb_warning_is_not_printed_by_the_cli(tmp_path):
    """An image over Pillow's warning limit but under its error limit is refused with gazecrop's own
    message; Pillow's DecompressionBombWarning (a Python warning with a source line) is not printed too."""
    import struct
    import zlib

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    w, h = 10000, 9000  # 90 Mpx: above Image.MAX_IMAGE_PIXELS (89.5 M), below twice it
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                    + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    r = _cli([big, "-a", "1:1"], text=True)
    assert r.returncode == 1
    assert "possible decompression bomb" in r.stderr
    assert "Warning" not in r.stderr and "warnings.warn" not in r.stderr, r.stderr


def test_a_read_error_loading_a_model_names_the_file(tmp_path, monkeypatch):
    from gazecrop import weights

    real = weights.open_regular

    class Failing(io.BufferedReader):
        def read(self, n=-1):
            if n is None or n < 0:
                raise OSError(errno.EIO, os.strerror(errno.EIO))  # a bad disk: no file name in the error
            return super().read(n)

    def failing_open(path):
        f = real(path)
        return Failing(f.detach())

    monkeypatch.setattr(weights, "open_regular", failing_open)
    path = tmp_path / "m.gzw"
    path.write_bytes(weights.MAGIC + b"\0" * 64)
    with pytest.raises(OSError) as e:
        weights.read_file(path)
    assert e.value.errno == errno.EIO and e.value.filename == str(path) and str(path) in str(e.value)


def test_an_output_named_like_a_temporary_file_is_refused(fixed, tmp_path, capsys):
    """A name that the clean-up of stale temporary files would match (``--name '.{stem}{ext}.gz1_x.tmp'``)
    is refused: otherwise the next run writing to that folder would delete the finished output."""
    src = _photo(tmp_path / "a.png")
    out = tmp_path / "o"
    assert main([src, "-a", "1:1", "--out", str(out), "--name", ".{stem}{ext}.gz1_x.tmp"]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {out / '.a.png.gz1_x.tmp'}: " in err and "temporary" in err
    assert os.listdir(out) == []
    with pytest.raises(OSError, match="temporary"):
        _atomic.write_bytes(tmp_path / ".w.gz4194305_abc.tmp", b"x")
    assert not (tmp_path / ".w.gz4194305_abc.tmp").exists()


def test_centre_bias_files_are_written_through_the_checked_writer(tmp_path, monkeypatch):
    """``CentreBias.save`` (the committed ``centre_bias.npz`` and training outputs) follows the same rules:
    a failing write leaves the previous file and no temporary file."""
    from gazecrop.centre_bias import CentreBias

    cb = CentreBias(hist=np.full((4, 4), 1 / 16), bandwidth=(0.1, 0.1))
    path = tmp_path / "cb.npz"
    cb.save(path)
    before = path.read_bytes()

    def fail(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_atomic, "_write", fail)
    with pytest.raises(OSError):
        CentreBias(hist=np.full((2, 2), 1 / 4), bandwidth=(0.2, 0.2)).save(path)
    assert path.read_bytes() == before and _hidden(tmp_path) == []
    monkeypatch.undo()
    assert CentreBias.load(path).hist.shape == (4, 4)


def test_an_empty_out_is_a_usage_error_not_a_silent_run_without_outputs(fixed, tmp_path, capsys):
    """``--out "$DEST"`` with DEST unset must not print boxes, write nothing and report success."""
    src = _photo(tmp_path / "a.png")
    with pytest.raises(SystemExit) as e:
        main([src, "--out", ""])
    assert e.value.code == 2 and "--out" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-a", "1:1"], ["--help"]], ids=["run", "help"])
def test_a_closed_stdout_descriptor_is_reported_not_a_traceback(tmp_path, argv):
    """``gazecrop ... >&-`` (descriptor 1 closed, so Python's ``sys.stdout`` is None): a run fails with a
    message as other tools do (``ls >&-``), ``--help`` (printed on stderr then) succeeds; no traceback."""
    src = _photo(tmp_path / "a.png")
    out = tmp_path / "o"
    code = ("import os, sys; os.close(1); "
            f"os.execv(sys.executable, [sys.executable, {DRIVER!r}, {src!r}, '--out', {str(out)!r}] + {argv!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=60)
    assert "Traceback" not in r.stderr, r.stderr
    if argv == ["--help"]:
        assert r.returncode == 0 and "usage: gazecrop" in r.stderr
    else:
        assert r.returncode == 1 and "cannot write to standard output: Bad file descriptor" in r.stderr
        assert _hidden(out) == []


def test_closed_standard_descriptors_never_go_to_output_files(tmp_path):
    """With descriptors 0, 1 and 2 closed, the first files the run opens would take them, and a library's
    stray message to stderr would land inside an image being written: the CLI points them at /dev/null."""
    src = _photo(tmp_path / "a.png")
    code = ("import os, stat, sys\n"
            "for fd in (0, 1, 2): os.close(fd)\n"
            "sys.stdin = sys.stdout = sys.stderr = None\n"
            "import _cli_driver\n"
            f"rc = _cli_driver.main([{src!r}, '--out', {str(tmp_path / 'o')!r}])\n"
            "null = all(stat.S_ISCHR(os.fstat(fd).st_mode) for fd in (0, 1, 2))\n"
            "os._exit(10 * rc + null)")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), timeout=60)
    assert r.returncode == 11  # status 1 (stdout cannot take the results) and all three on /dev/null


def test_inputs_whose_names_lie_crosswise_do_not_clash(fixed, tmp_path, capsys):
    """a/x.jpg holding WebP bytes and b/x.webp holding JPEG bytes give x_1x1.webp and x_1x1.jpg: no clash
    (planned from the extensions, each took the other's planned name and both failed, writing nothing)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("RGB", (60, 40), (1, 2, 3)).save(tmp_path / "a" / "x.jpg", format="WEBP", lossless=True)
    Image.new("RGB", (60, 40), (9, 9, 9)).save(tmp_path / "b" / "x.webp", format="JPEG")
    out = tmp_path / "o"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "-a", "1:1", "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["x_1x1.jpg", "x_1x1.webp"]
    _assert_extensions_match(out)


def test_a_pattern_inside_a_folder_that_may_not_be_listed_says_why(fixed, shared_dir):
    """``'locked/*.png'`` matches nothing because the folder may not be listed: say so (the system's
    reason), not only "no file matches"."""
    d = shared_dir
    os.makedirs(os.path.join(d, "locked"))
    _photo(os.path.join(d, "locked", "x.png"))
    _photo(os.path.join(d, "good.png"), seed=1)
    os.chmod(os.path.join(d, "locked"), 0o700 if os.geteuid() == 0 else 0o000)
    try:
        rc, out, err = _as_nobody([os.path.join("locked", "*.png"), os.path.join("nothing", "*.png"),
                                   "good.png", "-a", "1:1"], d)
    finally:
        os.chmod(os.path.join(d, "locked"), 0o755)
    assert rc == 1 and "good.png" in out, err
    assert (f"{os.path.join('locked', '*.png')}: no file matches this pattern (cannot list folder locked: "
            f"Permission denied)") in err
    assert f"{os.path.join('nothing', '*.png')}: no file matches this pattern (cannot list folder nothing: " \
           f"No such file or directory)" in err


def test_32_bit_integer_images_can_be_written_as_png(tmp_path):
    """Mode ``I`` (a 32-bit TIFF, or a 16-bit PNG as older Pillow opens it) written as PNG: 16-bit grey when
    its values fit, else 8-bit (Pillow cannot write ``I`` as PNG)."""
    fits = Image.fromarray(np.array([[0, 300, 65535]], np.int32))
    write_image(fits, tmp_path / "a.png", "PNG")
    with Image.open(tmp_path / "a.png") as im:
        assert im.mode == "I;16" and np.asarray(im).tolist() == [[0, 300, 65535]]
    wide = Image.fromarray(np.array([[-5, 35000, 70000]], np.int32))
    write_image(wide, tmp_path / "b.png", "PNG")
    with Image.open(tmp_path / "b.png") as im:
        assert np.asarray(im.convert("L")).tolist() == [[0, 128, 255]]  # min-max scaled (gazecrop._image.to_rgb)


def test_an_input_failing_on_a_name_clash_writes_none_of_its_outputs(fixed, tmp_path, capsys):
    """a.bmp and a.tga share the heatmap name a_heatmap.jpg: a.tga fails before writing anything (its crop
    a_1x1.tga used to be written first, so a failed input left outputs behind)."""
    (tmp_path / "in").mkdir()
    _photo(tmp_path / "in" / "a.bmp", size=(40, 30))
    _photo(tmp_path / "in" / "a.tga", size=(40, 30), seed=1)
    out = tmp_path / "o"
    assert main([str(tmp_path / "in"), "-a", "1:1", "--out", str(out), "--heatmap"]) == 1
    assert "a.tga: output" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["a_1x1.bmp", "a_heatmap.jpg"]


def test_leftovers_of_an_earlier_process_with_our_pid_are_removed(fixed, tmp_path):
    """In a container every run may get the same PID (1 as the entry point): a temporary file left by a
    killed earlier run carries our own PID, is held by no writer, and must still be cleaned up; our own
    writes in progress stay (they are held)."""
    out = tmp_path / "o"
    out.mkdir()
    stale = out / f".old.png.gz{os.getpid()}_abc123.tmp"
    stale.write_bytes(b"partial")
    _atomic._CLEANED.add(os.path.realpath(out))  # no clean-up at this first write...
    with _atomic.atomic_open(out / "live.bin") as f:  # ...a write of ours in progress during the clean-up
        f.write(b"x")
        live = [n for n in os.listdir(out) if ".live.bin." in n]
        _atomic._CLEANED.discard(os.path.realpath(out))  # the CLI run's first write cleans the folder
        assert main([_photo(tmp_path / "q.png"), "-a", "1:1", "--out", str(out)]) == 0
        assert all(n in os.listdir(out) for n in live) and len(live) == 1
    assert sorted(os.listdir(out)) == ["live.bin", "q_1x1.png"]
