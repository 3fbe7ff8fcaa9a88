"""Slurm's command-line layer (``execution/slurm/cli.py``) against a real single-node cluster.

One story (``arrays``, module-scoped) submits every array at once, from scripts that
``array_script`` wrote, then polls ``states()`` until every task has finished, acting from outside
when a task shows it is ready (``scancel`` of one task, ``scontrol requeue`` of another), and keeps
every snapshot it saw. The arrays run side by side (the node declares 16 CPUs), so the module
costs about as long as its slowest array. A task over its time limit (a minute and a half of
waiting: tests/slurm_cluster.py) is tested once, through the executor, in tests/test_slurm_faults.py.

Each task appends ``start <index>`` and ``end <index>`` to its array's log file (one ``echo >>`` a
line: O_APPEND, so lines never interleave): how many ran at once is read from that order, never
from clocks.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.config.slurm import SlurmResources as Resources
from pytest_mitosis.execution.slurm import cli
from pytest_mitosis.execution.slurm.cli import SlurmError, TaskState

from .conftest import PATIENCE, wait_until
from .slurm_cluster import SlurmCluster, _alive, _read_pid, own_cluster, slurm_cluster  # noqa: F401 - fixture

pytestmark = pytest.mark.slurm

#: a task of the concurrency arrays: log its start, wait until WANT tasks run at once (or every task
#: of the array has started: none is left to come), log its end. Arguments: LOG COUNT WANT INDEX.
MEET = """\
log=$1; count=$2; want=$3; index=$4
echo "start $index" >> "$log"
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
  starts=$(grep -c '^start' "$log"); ends=$(grep -c '^end' "$log")
  if [ $((starts - ends)) -ge "$want" ] || [ "$starts" -ge "$count" ]; then break; fi
  sleep 0.1
done
echo "end $index" >> "$log"
"""

#: a task that runs until it is stopped from outside (time limit, scancel); it says it started
WAIT = """\
echo "start $2" >> "$1"
sleep 600
"""

#: the first attempt says so and waits (to be requeued from outside); the second one ends at once
REQUEUE = """\
echo "attempt" >> "$1"
if [ "$(grep -c attempt "$1")" -ge 2 ]; then exit 0; fi
sleep 600
"""

#: fails on purpose, saying where it ran and what the setup lines left it
FAIL = """\
echo "failing on purpose in $PWD after $MITOSIS_SETUP" >&2
exit 3
"""


@dataclass
class Story:
    base: Path
    jobs: dict[str, str] = field(default_factory=dict)
    #: every distinct state each task was seen in, in order: {array: {index: [TaskState, ...]}}
    seen: dict[str, dict[int, list[TaskState]]] = field(default_factory=dict)
    final: dict[str, dict[int, TaskState]] = field(default_factory=dict)
    #: what the story did from outside (for failure messages)
    acts: list[str] = field(default_factory=list)
    #: seconds since the submissions at which each task was first seen in each state (measurements)
    timeline: list[tuple[float, str, int, str]] = field(default_factory=list)

    def log(self, array: str) -> list[str]:
        return (self.base / f"{array}.log").read_text().splitlines()

    def states_seen(self, array: str, index: int) -> list[str]:
        return [state.state for state in self.seen[array][index]]


def concurrency(lines: list[str]) -> int:
    """The most tasks between their ``start`` and ``end`` lines at once."""
    running = most = 0
    for line in lines:
        running += 1 if line.startswith("start") else -1 if line.startswith("end") else 0
        most = max(most, running)
    return most


@pytest.fixture(scope="module")
def arrays(slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Story]:  # noqa: F811
    cluster = slurm_cluster
    story = Story(tmp_path_factory.mktemp("slurm cli"))
    (story.base / "out").mkdir()
    (story.base / "work dir").mkdir()
    env = cluster.env

    def submit(array: str, body: str, count: int, *args: str, throttle: int | None = None, **kw: Any) -> None:
        task = story.base / f"{array}.sh"
        task.write_text(body)
        text = cli.array_script(
            ["bash", str(task), *args],
            count=count,
            throttle=throttle,
            resources=Resources(partition=cluster.partition, cpus=1, **kw),
            name=f"mitosis-{array}",
            output=story.base / "out",
            workdir=story.base / "work dir",
        )
        path = story.base / f"{array}.sbatch"
        path.write_text(text)
        story.jobs[array] = cli.submit(path, env)
        story.seen[array] = {}

    def log(array: str) -> str:
        return str(story.base / f"{array}.log")

    submit("throttled", MEET, 6, log("throttled"), "6", "2", throttle=2)
    submit("unthrottled", MEET, 6, log("unthrottled"), "6", "6")
    submit("cancelled", WAIT, 2, log("cancelled"))
    submit("requeued", REQUEUE, 1, log("requeued"))
    submit(
        "failing",
        FAIL,
        1,
        setup=("MITOSIS_SETUP=setup", 'export MITOSIS_SETUP="$MITOSIS_SETUP lines"'),
        sbatch=('--comment="a job of the story"', "#SBATCH --nice=10"),
    )

    counts = {"throttled": 6, "unthrottled": 6, "cancelled": 2, "requeued": 1, "failing": 1}
    began = time.monotonic()
    deadline = began + PATIENCE
    requeued = cancelled = settled = False
    while True:
        for array, job in story.jobs.items():
            now = cli.states(job, env, count=counts[array])
            story.final[array] = now
            for index, state in now.items():
                history = story.seen[array].setdefault(index, [])
                if not history or history[-1] != state:
                    history.append(state)
                    story.timeline.append((time.monotonic() - began, array, index, state.state))
        lines = {name: story.log(name) if (story.base / f"{name}.log").exists() else [] for name in story.jobs}
        if not cancelled and len([s for s in lines["cancelled"] if s.startswith("start")]) == 2:
            # one task from outside, as a user or an admin would; the other through cli.cancel
            cluster.run("scancel", f"{story.jobs['cancelled']}_1")
            cli.cancel(story.jobs["cancelled"], [0], env)
            story.acts.append(f"{time.monotonic() - began:.1f} s: cancelled both tasks of 'cancelled'")
            cancelled = True
        again = story.final["requeued"].get(0)
        if not requeued and lines["requeued"] == ["attempt"] and again is not None and again.state == "RUNNING":
            cluster.run("scontrol", "requeue", f"{story.jobs['requeued']}_0")
            story.acts.append(f"{time.monotonic() - began:.1f} s: requeued 'requeued'")
            requeued = True
        done = all(
            len(story.final[array]) == counts[array] and all(s.finished() for s in story.final[array].values())
            for array in story.jobs
        )
        if done and settled:  # finished in two snapshots in a row: a requeue's passing record is not an end
            break
        settled = done
        assert time.monotonic() < deadline, (
            f"the arrays did not all finish in {PATIENCE:.0f} s; acts: {story.acts}; states: "
            + "; ".join(f"{a}: {[s.state for s in st.values()]}" for a, st in story.final.items())
            + f"\nslurmctld.log:\n{cluster.log()[-3000:]}"
        )
        time.sleep(0.3)
    if os.environ.get("MITOSIS_SLURM_TIMELINE"):  # the measurements of tests/slurm_cluster.py's docstring
        print("".join(f"\n{at:6.1f} s {array}_{index} {state}" for at, array, index, state in story.timeline))
        print("\n".join(story.acts))
    yield story


def test_a_throttled_array_runs_at_most_its_throttle_at_once(arrays: Story) -> None:
    lines = arrays.log("throttled")
    assert sorted(lines) == sorted([f"start {i}" for i in range(6)] + [f"end {i}" for i in range(6)])
    assert concurrency(lines) == 2, lines
    # the same array without a throttle: all six at once (the node declares more CPUs than the host has)
    assert concurrency(arrays.log("unthrottled")) == 6, arrays.log("unthrottled")


def test_states_see_pending_tasks_with_a_reason_then_completed_with_where_they_ran(
    arrays: Story,
    slurm_cluster: SlurmCluster,  # noqa: F811
) -> None:
    pending = [
        state
        for index in range(6)
        for state in arrays.seen["throttled"][index]
        if state.state == "PENDING" and state.reason == "JobArrayTaskLimit"
    ]
    assert pending, {i: arrays.states_seen("throttled", i) for i in range(6)}
    assert pending[0].explanation() == "pending (JobArrayTaskLimit)"
    assert pending[0].node is None and pending[0].started is None and pending[0].allocation is None
    final = arrays.final["throttled"]
    assert sorted(final) == list(range(6))
    job = arrays.jobs["throttled"]
    for index, state in final.items():
        assert (state.job, state.task, state.name) == (job, index, f"{job}_{index}")
        assert state.state == "COMPLETED" and state.finished() and state.explanation() == "completed"
        assert state.node == slurm_cluster.node
        assert state.partition == slurm_cluster.partition
        assert state.allocation == "cpu=1,mem=100M,node=1,billing=1"
        assert state.exit_code == "0:0" and state.restarts == 0
        assert state.started and state.ended
    # A task of this array runs for as long as its pair takes to meet, which may be shorter than one round
    # of polls on a loaded machine (seen: every task only PENDING, then COMPLETED): whether one is seen
    # RUNNING depends on the machine's speed, so it is checked on the requeued task, which is requeued
    # only once it is seen running (test_a_running_task_says_where_it_runs).
    for index in range(6):  # each task's states only move forward: pending, (running,) completed
        seen = arrays.states_seen("throttled", index)
        assert seen[-1] == "COMPLETED"
        assert seen[: seen.count("PENDING")] == ["PENDING"] * seen.count("PENDING"), seen


def test_each_task_writes_its_output_where_the_script_says(arrays: Story) -> None:
    job = arrays.jobs["failing"]
    said = (arrays.base / "out" / f"{job}_0.out").read_text()
    assert said == f"failing on purpose in {arrays.base / 'work dir'} after setup lines\n"
    assert sorted(p.name for p in (arrays.base / "out").glob(f"{arrays.jobs['throttled']}_*.out")) == [
        f"{arrays.jobs['throttled']}_{i}.out" for i in range(6)
    ]


def test_a_task_cancelled_from_outside_is_cancelled(arrays: Story, slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    final = arrays.final["cancelled"]
    assert [s.state for s in final.values()] == ["CANCELLED", "CANCELLED"], arrays.acts
    assert final[1].explanation() == "cancelled (scancel, or an administrator)"
    # cancelling what already ended is no error: the whole array, then one task
    cli.cancel(arrays.jobs["cancelled"], env=slurm_cluster.env)
    cli.cancel(arrays.jobs["failing"], [0], env=slurm_cluster.env)
    assert cli.states(arrays.jobs["failing"], slurm_cluster.env, count=1)[0].state == "FAILED"


def test_a_requeued_task_runs_again_and_counts_a_restart(arrays: Story) -> None:
    state = arrays.final["requeued"][0]
    assert arrays.log("requeued") == ["attempt", "attempt"], (
        arrays.acts,
        [(s.state, s.reason, s.restarts) for s in arrays.seen["requeued"][0]],
    )
    assert (state.state, state.restarts, state.exit_code) == ("COMPLETED", 1, "0:0")
    seen = arrays.seen["requeued"][0]
    held = [s for s in seen if s.state == "PENDING" and s.restarts == 1]
    assert held and held[0].explanation() == "pending (BeginTime)", [(s.state, s.reason, s.restarts) for s in seen]
    assert [s.restarts for s in seen if s.state == "RUNNING"][:1] == [0]
    # both attempts wrote to the same output file (--open-mode=append): the first one's lines are kept
    assert (arrays.base / "out" / f"{arrays.jobs['requeued']}_0.out").exists()


def test_a_running_task_says_where_it_runs(arrays: Story, slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    """The requeued task was seen running before it was requeued (the story waits for that): where it runs."""
    running = [s for s in arrays.seen["requeued"][0] if s.state == "RUNNING"]
    assert running, [(s.state, s.reason) for s in arrays.seen["requeued"][0]]
    first = running[0]
    assert first.node == slurm_cluster.node and first.partition == slurm_cluster.partition
    assert first.started and not first.finished()
    assert first.explanation() == f"running on {slurm_cluster.node}"


def test_a_task_that_exits_3_fails_with_exit_code_3(arrays: Story, slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    state = arrays.final["failing"][0]
    assert (state.state, state.exit_code, state.reason) == ("FAILED", "3:0", "NonZeroExitCode")
    assert state.explanation() == "exited with code 3"
    # its extra #SBATCH lines reached Slurm as written
    shown = slurm_cluster.run("scontrol", "show", "job", "-o", arrays.jobs["failing"]).stdout
    assert " Nice=10 " in shown and " Comment=a job of the story " in shown, shown


def test_a_partition_sbatch_refuses_is_an_error_quoting_sbatch(
    slurm_cluster: SlurmCluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    text = cli.array_script(
        ["true"],
        count=2,
        throttle=None,
        resources=Resources(partition="nowhere"),
        name="mitosis-bad",
        output=tmp_path,
        workdir=tmp_path,
    )
    path = tmp_path / "bad.sbatch"
    path.write_text(text)
    with pytest.raises(SlurmError) as refused:
        cli.submit(path, slurm_cluster.env)
    assert str(refused.value) == (
        f"sbatch refused {path} (exit 1): sbatch: error: invalid partition specified: nowhere; "
        "sbatch: error: Batch job submission failed: Invalid partition name specified"
    )


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        (
            Resources(partition="x\n#SBATCH --wrap=rm"),
            "[tool.mitosis.slurm] partition: 'x\\n#SBATCH --wrap=rm' is not partition names (letters, digits, _ . + -), "
            "comma-separated; nothing was submitted",
        ),
        (
            Resources(partition="gpu nodes"),
            "[tool.mitosis.slurm] partition: 'gpu nodes' is not partition names (letters, digits, _ . + -), "
            "comma-separated; nothing was submitted",
        ),
        (
            Resources(time="1 hour"),
            '[tool.mitosis.slurm] time: \'1 hour\' is not a Slurm time: "MM", "MM:SS", "HH:MM:SS", "D-HH", '
            '"D-HH:MM" or "D-HH:MM:SS"; nothing was submitted',
        ),
        (
            Resources(mem="4G\n"),
            '[tool.mitosis.slurm] mem: \'4G\\n\' is not a size such as "4000", "500M" or "16G"; nothing was submitted',
        ),
        (
            Resources(cpus=0),
            "[tool.mitosis.slurm] cpus: expected a whole number of at least 1, found 0",
        ),
        (
            Resources(sbatch=("--qos=high\n#SBATCH --wrap=rm",)),
            "[tool.mitosis.slurm] sbatch: '--qos=high\\n#SBATCH --wrap=rm' must be one line of text "
            "(a line break would start a new line of the job script); nothing was submitted",
        ),
        (
            Resources(sbatch=("qos=high",)),
            "[tool.mitosis.slurm] sbatch: 'qos=high' is not an sbatch option: write one option a line, "
            'such as "--qos=high" or "#SBATCH --qos=high"',
        ),
        (
            Resources(setup=("module load python\nrm -rf ~",)),
            "[tool.mitosis.slurm] setup: 'module load python\\nrm -rf ~' must be one line of text "
            "(a line break would start a new line of the job script); nothing was submitted",
        ),
        (
            Resources(setup=("module load python \\",)),
            "[tool.mitosis.slurm] setup: 'module load python \\\\' ends with a backslash, which would join it to the "
            "next line of the job script (the command itself); write each setup line whole",
        ),
    ],
)
def test_a_resource_that_would_change_the_script_is_refused_before_anything_is_written(
    resources: Resources, message: str, tmp_path: Path
) -> None:
    with pytest.raises(SlurmError) as refused:
        cli.array_script(
            ["true"], count=1, throttle=None, resources=resources, name="m", output=tmp_path, workdir=tmp_path
        )
    assert str(refused.value) == message


def test_the_script_is_plain_text_a_user_can_read_and_resubmit(tmp_path: Path) -> None:
    text = cli.array_script(
        ["/venv/bin/python", "-m", "pytest_mitosis.job", "it's here"],
        count=16,
        throttle=4,
        resources=Resources(
            partition="gpu,short",
            time="1-00:30",
            cpus=4,
            mem="16G",
            gpus="a100:1",
            account="lab-1",
            sbatch=("--qos=high", "#SBATCH --constraint=avx2"),
            setup=("module load python/3.11", "source /venv/bin/activate"),
        ),
        name="mitosis-sweep",
        output=Path("/shared/my study/trials/.slurm"),
        workdir=Path("/shared/my study"),
    )
    assert text == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=mitosis-sweep\n"
        "#SBATCH --array=0-15%4\n"
        '#SBATCH --output="/shared/my study/trials/.slurm/%A_%a.out"\n'
        '#SBATCH --chdir="/shared/my study"\n'
        "#SBATCH --requeue\n"
        "#SBATCH --open-mode=append\n"
        "#SBATCH --partition=gpu,short\n"
        "#SBATCH --time=1-00:30\n"
        "#SBATCH --mem=16G\n"
        "#SBATCH --gpus=a100:1\n"
        "#SBATCH --account=lab-1\n"
        "#SBATCH --cpus-per-task=4\n"
        "#SBATCH --qos=high\n"
        "#SBATCH --constraint=avx2\n"
        "\n"
        "set -e\n"
        "module load python/3.11\n"
        "source /venv/bin/activate\n"
        "exec /venv/bin/python -m pytest_mitosis.job 'it'\"'\"'s here' \"$SLURM_ARRAY_TASK_ID\"\n"
    )


def test_a_missing_command_is_an_error_saying_where_to_run(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path), "SLURM_CONF": "/nonexistent/slurm.conf"}
    with pytest.raises(SlurmError) as refused:
        cli.submit(tmp_path / "job.sbatch", env)
    assert str(refused.value) == (
        "sbatch not found on PATH: the Slurm executor runs where Slurm's commands are (a login node); "
        f"PATH is {str(tmp_path)!r}"
    )


def test_a_job_slurm_no_longer_knows_has_no_tasks(slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    """scontrol says "Invalid job id", and sacct (no accounting here) has nothing: no tasks, no error."""
    # sacct checks its options before it asks for accounting: ours are all known to this Slurm (22.05 has no
    # --array, a pending range comes as one "77_[2-3%2]" row); its fields are checked only by a real database
    asked = slurm_cluster.run(*cli.sacct_argv("999999"), check=False)
    assert (asked.returncode, asked.stderr) == (1, "Slurm accounting storage is disabled\n")
    assert "unrecognized option" in slurm_cluster.run("sacct", "-j", "1", "--array", check=False).stderr
    assert cli.states("999999", slurm_cluster.env, count=3) == {}
    cli.cancel("999999", env=slurm_cluster.env)


def test_ranges_expand_as_slurm_prints_them() -> None:
    assert cli.expand("3") == [3]
    assert cli.expand("[2-5%2]") == [2, 3, 4, 5]
    assert cli.expand("4-5%2") == [4, 5]
    assert cli.expand("1,4-9:2%3") == [1, 4, 6, 8]


def test_sacct_rows_become_tasks_with_their_restarts() -> None:
    """What a cluster with accounting answers (``--duplicates``: a requeued task has one row an attempt)."""
    text = (
        "77_0|COMPLETED|node1|short|0:0|00:10:00|billing=1,cpu=1,mem=1G,node=1|2026-12-07T10:00:00|"
        "2026-12-07T10:01:00|None\n"
        "77_1|NODE_FAIL|node2|short|0:0|00:10:00|cpu=1,mem=1G,node=1|2026-12-07T10:00:00|2026-12-07T10:00:30|"
        "None\n"
        "77_1|CANCELLED by 1000|node3|short|0:15|00:10:00|cpu=1,mem=1G,node=1|2026-12-07T10:00:40|"
        "2026-12-07T10:00:50|None\n"
        "77_[2-3%2]|PENDING|None assigned|short|0:0|00:10:00||Unknown|Unknown|JobArrayTaskLimit\n"
        "78_0|COMPLETED|node1|short|0:0|00:10:00||2026-12-07T10:00:00|2026-12-07T10:01:00|None\n"
    )
    found = cli.parse_sacct("77", text)
    assert sorted(found) == [0, 1, 2, 3]
    assert (found[0].state, found[0].node, found[0].allocation) == (
        "COMPLETED",
        "node1",
        "billing=1,cpu=1,mem=1G,node=1",
    )
    assert (found[1].state, found[1].node, found[1].restarts, found[1].exit_code) == ("CANCELLED", "node3", 1, "0:15")
    assert (found[2].state, found[2].reason, found[2].node, found[2].started) == (
        "PENDING",
        "JobArrayTaskLimit",
        None,
        None,
    )
    assert found[2].explanation() == "pending (JobArrayTaskLimit)"


def test_two_clusters_run_side_by_side(slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    """A second cluster on the same host (own ports, munge socket, node name) runs its own jobs; stopped, it leaves nothing."""
    runner = own_cluster()
    other = next(runner)
    try:
        assert other.node != slurm_cluster.node
        daemons = [
            other.munged_pid,
            _read_pid(other.base / "slurmctld.pid"),
            _read_pid(other.base / f"slurmd-{other.node}.pid"),
        ]
        jobs = {}
        for cluster in (slurm_cluster, other):
            done = cluster.run("sbatch", "--parsable", "--array=0", "--output=/dev/null", "--wrap=true")
            jobs[cluster.node] = (done.stdout.strip(), cluster.env)
        for node, (job, env) in jobs.items():
            ended = wait_until(
                f"job {job} on {node}",
                lambda job=job, env=env: [s for s in cli.states(job, env, count=1).values() if s.finished()],
            )
            assert [(s.state, s.node) for s in ended] == [("COMPLETED", node)]
        # a job still running when the cluster stops is ended with it
        other.run("sbatch", "--output=/dev/null", "--wrap=sleep 600")
        wait_until("the job to start", lambda: other._job_processes())
        other.stop()
        # its commands give up sooner than the module's cluster's would (MessageTimeout=5): a second, not ten
        other.conf.write_text(other.conf.read_text().replace("MessageTimeout=5", "MessageTimeout=1"))
        # a controller that is gone: Slurm's own words, after its retries, as an error naming the command
        with pytest.raises(SlurmError) as gone:
            cli.states("1", env=other.env)
        assert str(gone.value) == (
            "scontrol show job 1 failed (exit 1): "
            "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"
        )
    finally:
        next(runner, None)
    assert not other.base.exists()
    assert None not in daemons
    assert [pid for pid in daemons if pid is not None and _alive(pid)] == []
    assert other._job_processes() == []


def test_scontrol_records_parse_with_spaces_and_empty_values() -> None:
    """Values with spaces (a folder "my study", a job name), and Slurm's empty spellings: (null), None, Unknown."""
    text = (
        "JobId=12 ArrayJobId=10 ArrayTaskId=2 ArrayTaskThrottle=0 JobName=my sweep UserId=ann(1000) "
        "Account=(null) JobState=RUNNING Reason=None Requeue=1 Restarts=2 ExitCode=0:0 TimeLimit=01:00:00 "
        "StartTime=2026-12-07T10:00:00 EndTime=Unknown Partition=short AllocNode:Sid=login1:4242 "
        "NodeList=node7 BatchHost=node7 TRES=cpu=4,mem=16G,node=1,billing=4 "
        "Command=/shared/my study/trials/.slurm/sweep.sbatch WorkDir=/shared/my study Power=\n"
        "JobId=10 ArrayJobId=10 ArrayTaskId=3-5,7%2 JobName=my sweep JobState=PENDING "
        "Reason=ReqNodeNotAvail,_UnavailableNodes:node[1-3] Restarts=0 ExitCode=0:0 TimeLimit=01:00:00 "
        "StartTime=2026-12-07T11:00:00 EndTime=Unknown Partition=short NodeList=(null) TRES=cpu=4,mem=16G,node=1\n"
        "JobId=9 ArrayJobId=(null) JobName=other JobState=RUNNING\n"
    )
    found = cli.parse_scontrol("10", text)
    assert sorted(found) == [2, 3, 4, 5, 7]
    running = found[2]
    assert (running.state, running.node, running.partition, running.restarts, running.reason) == (
        "RUNNING",
        "node7",
        "short",
        2,
        None,
    )
    assert (running.allocation, running.time_limit, running.started, running.ended) == (
        "cpu=4,mem=16G,node=1,billing=4",
        "01:00:00",
        "2026-12-07T10:00:00",
        None,
    )
    assert running.explanation() == "running on node7"
    pending = found[7]
    assert (pending.state, pending.node, pending.allocation, pending.started, pending.exit_code) == (
        "PENDING",
        None,
        None,
        None,
        None,
    )
    assert pending.explanation() == "pending (ReqNodeNotAvail,_UnavailableNodes:node[1-3])"


def test_a_command_that_does_not_answer_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A controller that hangs: a stand-in ``scontrol`` that never answers, and a one-second limit."""
    hanging = tmp_path / "scontrol"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    monkeypatch.setattr(cli, "TIMEOUT", 1.0)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "SLURM_CONF": "/etc/slurm/test.conf"}
    with pytest.raises(SlurmError) as silent:
        cli.states("5", env=env)
    assert str(silent.value) == (
        "scontrol show job -o 5 did not answer within 1 s: is slurmctld up? "
        "(scontrol ping says; SLURM_CONF=/etc/slurm/test.conf)"
    )


def test_explanations_say_what_slurm_did() -> None:
    def state(name: str, **kw: object) -> TaskState:
        return TaskState(job="1", task=0, state=name, **kw)  # type: ignore[arg-type]

    assert state("OUT_OF_MEMORY", allocation="cpu=1,mem=1G,node=1").explanation() == (
        "out of memory (allocated cpu=1,mem=1G,node=1)"
    )
    assert state("NODE_FAIL", node="node3").explanation() == "node node3 failed"
    assert state("PREEMPTED").explanation() == "preempted (another job took its resources)"
    assert state("FAILED", exit_code="0:9").explanation() == "killed by signal 9"
    assert state("SUSPENDED").explanation() == "suspended"
    assert [state(s).finished() for s in ("PENDING", "RUNNING", "REQUEUED", "COMPLETING")] == [False] * 4
    assert all(state(s).finished() for s in ("COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"))


def test_a_long_pending_range_is_read_whole(slurm_cluster: SlurmCluster) -> None:  # noqa: F811
    """Slurm cuts a task range to 64 characters ("1,4,9,...") unless SLURM_BITSTR_LEN says otherwise."""
    squares = [i * i for i in range(1, 21)]
    done = slurm_cluster.run(
        "sbatch", "--parsable", "--hold", f"--array={','.join(map(str, squares))}", "--output=/dev/null", "--wrap=true"
    )
    job = done.stdout.strip()
    try:
        cut = slurm_cluster.run("scontrol", "show", "job", "-o", job).stdout
        assert "ArrayTaskId=1,4,9," in cut and "..." in cut  # what a plain call would have seen
        found = cli.states(job, env=slurm_cluster.env)
        assert sorted(found) == squares
        assert {(s.state, s.reason) for s in found.values()} == {("PENDING", "JobHeldUser")}
    finally:
        cli.cancel(job, env=slurm_cluster.env)
    assert {s.state for s in cli.states(job, env=slurm_cluster.env).values()} == {"CANCELLED"}


def test_a_command_or_folder_that_would_change_the_script_is_refused(tmp_path: Path) -> None:
    def script(command: list[str], output: Path = tmp_path, name: str = "m") -> str:
        return cli.array_script(
            command, count=1, throttle=None, resources=Resources(), name=name, output=output, workdir=tmp_path
        )

    with pytest.raises(SlurmError) as refused:
        script(["python", "-c", "1\nrm -rf ~"])
    assert str(refused.value) == (
        "the Slurm job's command: '1\\nrm -rf ~' must be one line of text "
        "(a line break would start a new line of the job script); nothing was submitted"
    )
    with pytest.raises(SlurmError) as refused:
        script(["true"], output=Path("/shared/100%/out"))
    assert str(refused.value) == (
        "the Slurm job's output folder '/shared/100%/out' must be an absolute path without line breaks, "
        "quotes, backslashes or % (sbatch reads % as a file name pattern); nothing was submitted"
    )
    with pytest.raises(SlurmError) as refused:
        script(["true"], name="my sweep")
    assert str(refused.value) == (
        "the Slurm job's name: 'my sweep' is not a job name (letters, digits, _ . + -); nothing was submitted"
    )
