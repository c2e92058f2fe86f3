"""Local launcher (utils/local.sh), launcher argument grammar, slurm.conf mapping, split/merge helpers.

The Slurm back end itself is tested on a real cluster in test_slurm.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asdlib.io.ark import read_vectors, write_vectors
from asdlib.launch.cli import LaunchError, join_command, parse_launch_args
from asdlib.launch.jobs import JobArray, ranges
from asdlib.launch.merge_ark import merge_arks
from asdlib.launch.scp_lines import ScpError
from asdlib.launch.slurm import sbatch_argv
from asdlib.launch.slurm_conf import SlurmConf
from asdlib.launch.split_scp import split_even, split_scp

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "egs" / "TEMPLATE" / "utils"
TEMPLATE_CONF = REPO / "egs" / "TEMPLATE" / "conf" / "slurm.conf"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def sh(cwd: Path, script: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a utils/ script the way a recipe does (venv python first in PATH)."""
    return subprocess.run(
        [str(UTILS / script), *args], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=60
    )


def counts(d: Path, n: int) -> list[int]:
    return [len((d / f"count.{i}").read_text().split()) if (d / f"count.{i}").exists() else 0 for i in range(1, n + 1)]


# ---------------------------------------------------------------- argument grammar


def test_parse_full_call():
    req = parse_launch_args(
        ["--gpu", "1", "--mem=4G", "--num-threads", "2", "--max_jobs_run", "3", "--config", "c.conf",
         "JOB=1:4", "log/x.JOB.log", "python", "-m", "m", "--keys", "k.JOB.scp"]
    )  # fmt: skip
    assert (req.job_var, req.start, req.end, req.log) == ("JOB", 1, 4, "log/x.JOB.log")
    assert req.options == {"gpu": "1", "mem": "4G", "num_threads": "2"}
    assert (req.max_jobs_run, req.config, req.num_threads) == (3, "c.conf", 2)
    assert req.command == "python -m m --keys k.JOB.scp"


def test_parse_other_variable_and_non_array_form():
    req = parse_launch_args(["SPLIT=2:5", "log/s.SPLIT.log", "echo", "SPLIT"])
    assert (req.job_var, req.start, req.end) == ("SPLIT", 2, 5)
    req = parse_launch_args(["log/one.log", "echo", "JOB"])
    assert (req.job_var, req.start, req.end, req.command) == (None, 1, 1, "echo JOB")


def test_join_command_like_run_pl():
    assert join_command(["echo", "a", "|", "tr", "a", "b"]) == "echo a | tr a b"
    assert join_command(["prog", "ark:cmd x |", ""]) == "prog 'ark:cmd x |' ''"
    assert join_command(["echo a | wc -l"]) == "echo a | wc -l"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no log file"),
        (["JOB=1:3"], "no log file"),
        (["JOB=1:3", "log/x.JOB.log"], "no command"),
        (["JOB=1:", "log/x.JOB.log", "echo"], "bad job range"),
        (["JOB=0:3", "log/x.JOB.log", "echo"], "bad job range"),
        (["JOB=3:2", "log/x.JOB.log", "echo"], "bad job range"),
        (["JOB=1:3", "log/x.log", "echo"], "does not contain JOB"),
        (["--gpu"], "needs a value"),
        (["--gpu", "x", "log", "echo"], "--gpu needs an integer"),
        (["--num_threads", "0", "log", "echo"], "--num_threads needs an integer >= 1"),
        (["--max-jobs-run", "-1", "log", "echo"], "--max_jobs_run needs an integer"),
    ],
)
def test_malformed_calls(argv, message):
    with pytest.raises(LaunchError, match=message):
        parse_launch_args(argv)


def test_ranges():
    assert ranges([1, 2, 3, 5, 7, 8]) == "1-3,5,7-8"
    assert ranges([4]) == "4"


def test_call_id_depends_on_range_log_and_command():
    a = JobArray("x/l.JOB.log", "echo JOB", "JOB", 1, 4, "/d")
    assert a.call_id == JobArray("x/l.JOB.log", "echo JOB", "JOB", 1, 4, "/d").call_id
    assert a.call_id != JobArray("x/l.JOB.log", "echo JOB", "JOB", 1, 8, "/d").call_id
    assert a.call_id != JobArray("x/l.JOB.log", "echo JOB x", "JOB", 1, 4, "/d").call_id
    assert a.call_id != JobArray("x/l.JOB.log", "echo JOB", "JOB", 1, 4, "/e").call_id
    assert a.name == "l" and a.status(3) == Path("/d/x/q/l.3.log.status") and a.script == Path("/d/x/q/l.sh")


def test_job_variable_in_the_working_directory_is_left_alone(tmp_path):
    cwd = tmp_path / "JOB dir"
    cwd.mkdir()
    proc = sh(cwd, "local.sh", "JOB=1:2", "log/x.JOB.log", "echo", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert "2" in (cwd / "log" / "x.2.log").read_text().splitlines()


# ---------------------------------------------------------------- local launcher


def test_job_array_logs_header_footer(tmp_path):
    proc = sh(tmp_path, "local.sh", "JOB=1:3", "log/x.JOB.log", "echo", "job", "JOB")
    assert proc.returncode == 0, proc.stderr
    for i in (1, 2, 3):
        lines = (tmp_path / "log" / f"x.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo job {i}"
        assert lines[1].startswith("# Started at ")
        assert f"job {i}" in lines
        assert lines[-2].startswith("# Accounting: time=") and lines[-2].endswith("threads=1")
        assert lines[-1].startswith("# Ended (code 0) at ")
    # all succeeded: no status files are left, so the next identical call runs everything again
    assert not list((tmp_path / "log" / "q").glob("*.status"))


def test_pipes_redirections_and_quoted_arguments(tmp_path):
    proc = sh(tmp_path, "local.sh", "JOB=1:2", "log/p.JOB.log",
              "echo", "abcJOB", "|", "tr", "a-z", "A-Z", ">", "out.JOB.txt", "&&", "printf", "'%s\\n'", "a  b")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.2.txt").read_text() == "ABC2\n"
    assert "a  b" in (tmp_path / "log" / "p.1.log").read_text().splitlines()
    # a single argument is a whole command line
    proc = sh(tmp_path, "local.sh", "log/single.log", "echo one two | wc -w")
    assert proc.returncode == 0, proc.stderr
    assert "2" in (tmp_path / "log" / "single.log").read_text().splitlines()


def test_non_array_form_and_other_job_variable(tmp_path):
    proc = sh(tmp_path, "local.sh", "log/one.log", "echo", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert "JOB" in (tmp_path / "log" / "one.log").read_text().splitlines()
    proc = sh(tmp_path, "local.sh", "SPLIT=1:2", "log/s.SPLIT.log", "echo", "part", "SPLIT", "JOB")
    assert proc.returncode == 0, proc.stderr
    assert "part 2 JOB" in (tmp_path / "log" / "s.2.log").read_text().splitlines()


def test_resource_options_are_accepted_locally(tmp_path):
    proc = sh(tmp_path, "local.sh", "--gpu", "1", "--mem", "2G", "--num_threads", "2", "--time", "1:00:00",
              "--config", "conf/none.conf", "log/g.log", "echo", "ok")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "# Accounting: time=0 threads=2" in (tmp_path / "log" / "g.log").read_text()


def test_gpu_slots():
    from asdlib.launch.local import gpu_slots

    assert gpu_slots(["0", "1", "2"], 1) == ["0", "1", "2"]
    assert gpu_slots(["4", "5", "6", "7", "8"], 2) == ["4,5", "6,7"]  # the odd one out stays idle
    with pytest.raises(LaunchError, match=r"^--gpu 3: only 2 GPU\(s\) are visible .*CUDA_VISIBLE_DEVICES"):
        gpu_slots(["0", "1"], 3)


def test_local_gpu_jobs_get_their_own_gpu(tmp_path):
    """Five one-GPU jobs on two visible GPUs: two at a time, each alone on its CUDA_VISIBLE_DEVICES
    entry (a job finding its GPU's busy marker fails), and the mapping in the launcher's log."""
    job = "mkdir busy.$CUDA_VISIBLE_DEVICES && echo $CUDA_VISIBLE_DEVICES > gpu.JOB && sleep 0.3 && rmdir busy.$CUDA_VISIBLE_DEVICES"
    env = {**ENV, "CUDA_VISIBLE_DEVICES": "3,5"}
    proc = sh(tmp_path, "local.sh", "--gpu", "1", "--max_jobs_run", "8", "JOB=1:5", "log/g.JOB.log", job, env=env)
    assert proc.returncode == 0, proc.stderr
    assert {(tmp_path / f"gpu.{i}").read_text().strip() for i in range(1, 6)} == {"3", "5"}
    assert proc.stderr.count("on CUDA_VISIBLE_DEVICES=") == 5
    proc = sh(tmp_path, "local.sh", "--gpu", "2", "log/two.log", "echo $CUDA_VISIBLE_DEVICES", env=env)
    assert proc.returncode == 0 and (tmp_path / "log" / "two.log").read_text().count("\n3,5\n") == 1
    proc = sh(tmp_path, "local.sh", "--gpu", "4", "log/four.log", "true", env=env)
    assert proc.returncode == 2 and "--gpu 4: only 2 GPU(s) are visible (CUDA_VISIBLE_DEVICES=3,5)" in proc.stderr


def test_failed_job_is_reported_with_its_log(tmp_path):
    proc = sh(tmp_path, "local.sh", "JOB=1:3", "log/f.JOB.log", "echo output of JOB; exit $((JOB == 1 ? 0 : JOB - 1))")
    assert proc.returncode == 1
    log2 = tmp_path / "log" / "f.2.log"
    assert "2 of 3 job(s) failed" in proc.stderr
    assert f"job 2: exit code 1; log: {log2}" in proc.stderr
    assert "job 1:" not in proc.stderr and "job 3: exit code 2" in proc.stderr
    assert "output of 2" in proc.stderr  # the last lines of the failed log are shown
    assert "# Ended (code 1)" in log2.read_text()


def test_rerun_repeats_only_failed_jobs(tmp_path):
    args = ["JOB=1:3", "log/r.JOB.log", "echo x >> count.JOB; test ! -e fail.JOB"]
    (tmp_path / "fail.2").touch()
    assert sh(tmp_path, "local.sh", *args).returncode == 1
    assert counts(tmp_path, 3) == [1, 1, 1]
    assert sh(tmp_path, "local.sh", *args).returncode == 1  # still failing: only job 2 again
    assert counts(tmp_path, 3) == [1, 2, 1]
    (tmp_path / "fail.2").unlink()
    proc = sh(tmp_path, "local.sh", *args)
    assert proc.returncode == 0, proc.stderr
    assert "not rerunning 2 of 3 jobs" in proc.stderr
    assert counts(tmp_path, 3) == [1, 3, 1]
    # the call fully succeeded, so the same call later runs every job again
    assert sh(tmp_path, "local.sh", *args).returncode == 0
    assert counts(tmp_path, 3) == [2, 4, 2]


def test_rerun_repeats_unfinished_jobs(tmp_path):
    # job 2 kills its task script: no footer, no status file
    args = [
        "JOB=1:2",
        "log/k.JOB.log",
        'echo x >> count.JOB; if [ JOB = 2 ] && [ -n "${KILL:-}" ]; then kill -9 $PPID; fi',
    ]
    proc = sh(tmp_path, "local.sh", *args, env={**ENV, "KILL": "1"})
    assert proc.returncode == 1
    assert "job 2: did not finish" in proc.stderr
    assert sh(tmp_path, "local.sh", *args).returncode == 0
    assert counts(tmp_path, 2) == [1, 2]


def test_changed_call_or_input_reruns_every_job(tmp_path):
    (tmp_path / "model.txt").write_text("v1")
    (tmp_path / "fail.2").touch()
    args = ["JOB=1:3", "log/c.JOB.log", "cat model.txt >> count.JOB; echo >> count.JOB; test ! -e fail.JOB"]
    assert sh(tmp_path, "local.sh", *args).returncode == 1
    (tmp_path / "fail.2").unlink()
    # a file named in the command changed after the jobs succeeded: they are rerun too
    (tmp_path / "model.txt").write_text("v2")
    future = os.stat(tmp_path / "model.txt").st_mtime + 5
    os.utime(tmp_path / "model.txt", (future, future))
    assert sh(tmp_path, "local.sh", *args).returncode == 0
    assert counts(tmp_path, 3) == [2, 2, 2]
    # a different job range is a different call: nothing is skipped
    (tmp_path / "fail.2").touch()
    assert sh(tmp_path, "local.sh", *args).returncode == 1
    (tmp_path / "fail.2").unlink()
    assert sh(tmp_path, "local.sh", "JOB=1:2", *args[1:]).returncode == 0
    assert counts(tmp_path, 3) == [4, 4, 3]


def test_bounded_parallelism(tmp_path):
    cmd = "date +%s.%N > t.JOB.start; sleep 0.4; date +%s.%N > t.JOB.end"
    proc = sh(tmp_path, "local.sh", "--max_jobs_run", "2", "JOB=1:5", "log/t.JOB.log", cmd)
    assert proc.returncode == 0, proc.stderr
    spans = [(float((tmp_path / f"t.{i}.start").read_text()), float((tmp_path / f"t.{i}.end").read_text()))
             for i in range(1, 6)]  # fmt: skip
    most = max(sum(s <= t < e for s, e in spans) for t, _ in spans)
    assert most == 2


def test_help_and_usage_error(tmp_path):
    proc = sh(tmp_path, "local.sh", "--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: utils/local.sh")
    proc = sh(tmp_path, "local.sh", "JOB=1:2", "log/x.log", "echo")
    assert proc.returncode == 2 and "local.sh: error:" in proc.stderr and not (tmp_path / "log").exists()


# ---------------------------------------------------------------- slurm.conf grammar


def test_template_slurm_conf_mapping():
    conf = SlurmConf.load(str(TEMPLATE_CONF))
    assert conf.submit_command({}) == ["sbatch", "--export=PATH"]
    assert conf.submit_command({"num_threads": "4", "mem": "2G", "time": "1:00:00"}) == [
        "sbatch", "--export=PATH", "--cpus-per-task", "4", "--mem-per-cpu", "2G", "--time", "1:00:00"
    ]  # fmt: skip
    assert conf.submit_command({"num_threads": "1", "mem": "0"}) == ["sbatch", "--export=PATH", "--cpus-per-task", "1"]
    assert conf.submit_command({"gpu": "2"}) == ["sbatch", "--export=PATH", "-p", "gpu", "--gres=gpu:2"]
    with pytest.raises(LaunchError, match="option --mme 4G is not described"):
        conf.submit_command({"mme": "4G"})


def test_slurm_conf_errors(tmp_path):
    with pytest.raises(LaunchError, match=r"x\.conf:2: cannot parse"):
        SlurmConf.parse("command sbatch\nopton mem=* --mem $0\n", "x.conf")
    with pytest.raises(LaunchError, match="no 'command sbatch"):
        SlurmConf.parse("option mem=* --mem $0\n", "x.conf")
    with pytest.raises(LaunchError, match="not found"):
        SlurmConf.load(str(tmp_path / "missing.conf"))
    conf = SlurmConf.parse("command sbatch -A a  # trailing comment\ndefault queue=fast\n", "x.conf")
    with pytest.raises(LaunchError, match="--queue fast is not described"):
        conf.submit_command({})


def test_sbatch_command_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text(TEMPLATE_CONF.read_text())
    req = parse_launch_args(["--max_jobs_run", "2", "--num_threads", "2", "JOB=1:9", "log/e.JOB.log", "echo"])
    array = JobArray.from_request(req)
    argv = sbatch_argv(req, array, [1, 2, 3, 7], "/s.sh")
    assert argv == ["sbatch", "--job-name", "e", "--export=PATH", "--cpus-per-task", "2", "--wait", "--array=1-3,7%2",
                    "--output", f"{tmp_path}/log/e.%a.log", "--open-mode=append", "/s.sh"]  # fmt: skip


# ---------------------------------------------------------------- split / merge


def write_scp(path: Path, keys: list[str]) -> None:
    path.write_text("".join(f"{k} /wav/{k}.wav\n" for k in keys))


KEYS = [f"fan-00-{i:03d}" for i in (7, 3, 11, 0, 5, 9, 2, 8, 1, 10)] + ["ToyCar-01-x"]


@pytest.mark.parametrize("nj", [1, 2, 3, 4, 11])
def test_split_is_contiguous_even_and_sorted(tmp_path, nj):
    write_scp(tmp_path / "wav.scp", KEYS)
    outs = [tmp_path / f"keys.{i}.scp" for i in range(1, nj + 1)]
    split_scp(tmp_path / "wav.scp", outs)
    parts = [[line.split()[0] for line in o.read_text().splitlines()] for o in outs]
    assert sum(parts, []) == sorted(KEYS, key=str.encode)  # "ToyCar" < "fan" in C order
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_split_errors_and_unchanged_outputs(tmp_path):
    write_scp(tmp_path / "wav.scp", KEYS[:3])
    with pytest.raises(ScpError, match="cannot split 3 line"):
        split_scp(tmp_path / "wav.scp", [tmp_path / f"o.{i}" for i in range(4)])
    write_scp(tmp_path / "dup.scp", ["a", "b", "a"])
    with pytest.raises(ScpError, match="dup.scp:3: duplicate key 'a'"):
        split_scp(tmp_path / "dup.scp", [tmp_path / "o.1"])
    split_scp(tmp_path / "wav.scp", [tmp_path / "o.1", tmp_path / "o.2"])
    os.utime(tmp_path / "o.1", (1, 1))
    split_scp(tmp_path / "wav.scp", [tmp_path / "o.1", tmp_path / "o.2"])
    assert os.stat(tmp_path / "o.1").st_mtime == 1  # same content: not rewritten


def test_split_even():
    assert split_even(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]


def per_job_arks(d: Path, nj: int, vectors: dict[str, np.ndarray]) -> list[Path]:
    """Simulate nj extraction jobs: split the keys, each job writes its own ark/scp."""
    write_scp(d / "keys.scp", list(vectors))
    split = [d / f"keys.{i}.scp" for i in range(1, nj + 1)]
    split_scp(d / "keys.scp", split)
    scps = []
    for i, part in enumerate(split, 1):
        keys = [line.split()[0] for line in part.read_text().splitlines()]
        write_vectors(d / f"emb.{i}.ark", d / f"emb.{i}.scp", {k: vectors[k] for k in keys})
        scps.append(d / f"emb.{i}.scp")
    return scps


def test_merge_is_identical_for_any_nj(tmp_path):
    rng = np.random.default_rng(0)
    vectors = {k: rng.standard_normal(5).astype(np.float32) for k in KEYS}
    out_ark, out_scp = tmp_path / "out" / "embeddings.ark", tmp_path / "out" / "embeddings.scp"
    results = []
    for nj in (1, 2, 3, 7):
        d = tmp_path / f"nj{nj}"
        d.mkdir()
        scps = per_job_arks(d, nj, vectors)
        assert merge_arks(scps, out_ark, out_scp, keys_file=d / "keys.scp") == len(KEYS)
        results.append((out_ark.read_bytes(), out_scp.read_text()))
    assert all(r == results[0] for r in results)
    keys = [line.split()[0] for line in results[0][1].splitlines()]
    assert keys == sorted(KEYS, key=str.encode)
    merged = read_vectors(out_scp)
    assert all(np.array_equal(merged[k], vectors[k]) for k in KEYS)


def test_merge_errors(tmp_path):
    v = {k: np.zeros(2, np.float32) for k in ("a", "b", "c")}
    write_vectors(tmp_path / "x.ark", tmp_path / "x.scp", {"a": v["a"], "b": v["b"]})
    write_vectors(tmp_path / "y.ark", tmp_path / "y.scp", {"b": v["b"], "c": v["c"]})
    with pytest.raises(ScpError, match=r"key 'b' is in both .*x\.scp and .*y\.scp"):
        merge_arks([tmp_path / "x.scp", tmp_path / "y.scp"], tmp_path / "o.ark", tmp_path / "o.scp")
    write_scp(tmp_path / "keys", ["a", "b", "z"])
    with pytest.raises(ScpError, match=r"1 missing \(e\.g\. \['z'\]\)"):
        merge_arks([tmp_path / "x.scp"], tmp_path / "o.ark", tmp_path / "o.scp", keys_file=tmp_path / "keys")
    assert not (tmp_path / "o.scp").exists()


def test_split_and_merge_scripts(tmp_path):
    rng = np.random.default_rng(1)
    vectors = {k: rng.standard_normal(3).astype(np.float32) for k in KEYS}
    write_scp(tmp_path / "wav.scp", KEYS)
    assert sh(tmp_path, "split_scp.sh", "--nj", "3", "wav.scp", "split/keys.JOB.scp").returncode == 0
    for i in (1, 2, 3):
        keys = [line.split()[0] for line in (tmp_path / "split" / f"keys.{i}.scp").read_text().splitlines()]
        write_vectors(tmp_path / f"e.{i}.ark", tmp_path / f"e.{i}.scp", {k: vectors[k] for k in keys})
    proc = sh(tmp_path, "merge_ark.sh", "--nj", "3", "--keys", "wav.scp", "m.ark", "m.scp", "e.JOB.scp")
    assert proc.returncode == 0, proc.stderr
    assert list(read_vectors(tmp_path / "m.scp")) == sorted(KEYS, key=str.encode)
    proc = sh(tmp_path, "split_scp.sh", "--nj", "12", "wav.scp", "split/keys.JOB.scp")
    assert proc.returncode == 1 and "use at most 11 jobs" in proc.stderr
    proc = sh(tmp_path, "merge_ark.sh", "m2.ark", "m2.scp", "e.1.scp", "e.1.scp")
    assert proc.returncode == 1 and "is in both" in proc.stderr
