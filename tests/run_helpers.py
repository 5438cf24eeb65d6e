"""Training runs as killable subprocesses: start, watch progress on disk, kill at a phase, compare.

Shared by tests/test_chaos.py and benchmarks/chaos.py. Progress is read from the workdir, never
from stdout (tqdm and Python buffer it): step folders and orbax's in-flight
`<step>.orbax-checkpoint-tmp*` folders under checkpoints/, and the lines of metrics.jsonl. The loop
in `signlang_jax.training.train` logs the train line of an eval step, then validates, then logs
the val line,
then saves; a save runs asynchronously while the next steps train.

Phases a kill can land in, judged from the workdir (checked again after the kill, when nothing
writes any more):

    val      the last metrics line is the train line of an eval step: validation is running
    commit   less than 50 ms ago a step folder appeared (orbax renames the tmp folder into place,
             then deletes checkpoints the retention policy drops; the next save may start)
    save     an orbax tmp folder exists: a checkpoint is being written (while steps go on)
    step     none of these: the loop is training, no save in flight
    startup  the run has logged nothing yet

in that order of precedence (a save may be in flight during a validation, for instance).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TMP_MARK = ".orbax-checkpoint-tmp"
# Keys of the train lines that depend on wall-clock time, not on the computation.
TIMING_KEYS = ("train/images_per_sec", "train/data_wait_fraction")
PHASES = ("step", "save", "val")  # what the test must hit; the benchmark adds "commit"


def train_command(workdir: Path, data: Path, config: str, *overrides: str) -> list[str]:
    """`python -m signlang_jax.main` for `config` in `workdir` on the dataset `data`."""
    return [sys.executable, "-m", "signlang_jax.main", "--config", config, "--workdir",
            str(workdir), f"--config.data.root={data}", *overrides]


def start(command: list[str], log: Path) -> subprocess.Popen:
    """Start `command` in its own session (so its group can be killed), output into `log`.

    Unbuffered, so the log holds everything printed before a SIGKILL.
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    with log.open("ab") as out:  # a file, not a pipe: nobody would drain a pipe while polling
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@dataclasses.dataclass
class Progress:
    """What a workdir shows at one moment."""

    committed: list[int]  # complete step folders under checkpoints/, ascending
    saving: list[str]  # orbax tmp folders (checkpoints being written)
    records: list[dict]  # metrics.jsonl, one dict per line

    def last_step(self) -> int:
        """Step of the last metrics line (0 if none)."""
        return self.records[-1]["step"] if self.records else 0


def progress(workdir: Path) -> Progress:
    """Read the workdir's checkpoint folders and metrics lines (a torn last line is ignored)."""
    committed, saving = [], []
    try:
        names = os.listdir(workdir / "checkpoints")
    except FileNotFoundError:
        names = []
    for name in names:
        if TMP_MARK in name:
            saving.append(name)
        elif name.isdigit():
            committed.append(int(name))
    records = []
    try:
        text = (workdir / "metrics.jsonl").read_text()
    except FileNotFoundError:
        text = ""
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return Progress(sorted(committed), sorted(saving), records)


def in_validation(seen: Progress, eval_every: int, num_steps: int) -> bool:
    """True if the last metrics line is the train line of an eval step (its val line is due)."""
    if not seen.records or "train/loss" not in seen.records[-1]:
        return False
    step = seen.last_step()
    return step % eval_every == 0 or step == num_steps


def _tmp_step(name: str) -> int:
    return int(name.split(".", 1)[0]) if name.split(".", 1)[0].isdigit() else -1


@dataclasses.dataclass(frozen=True)
class KillPlan:
    """Kill in `phase` once it goes on at step >= `at_step`, `delay_s` after first seeing it.

    For save and commit, `at_step` is the step of the checkpoint being written or just written.
    """

    phase: str
    at_step: int
    delay_s: float


def phase_order(seed: int, kills: int, phases: tuple[str, ...] = PHASES) -> list[str]:
    """`kills` phases, each of `phases` in turn in an order shuffled by `seed`."""
    rng = random.Random(seed)
    order: list[str] = []
    while len(order) < kills:
        order += rng.sample(phases, len(phases))
    return order[:kills]


def plan_kill(rng: random.Random, phase: str, resumed: int, num_steps: int, eval_every: int
              ) -> KillPlan:
    """Where to kill a run that resumes from step `resumed`, chosen so the phase is sure to come.

    Measured on a 2-core CPU with the tiny config: a save takes 0.3-1 s (longer than 8 steps), a
    process's first validation 0.3-0.6 s (it loads the compiled eval step), a later one ~50 ms,
    less than the poller may be descheduled for under load. So: step kills land in the first
    stretch of steps after the restart (no save in flight yet), val kills in the process's first
    validation, save and commit kills at its second checkpoint when that is not the last (the
    first one is then committed: the next run resumes from further on).
    """
    saves = [s for s in range(resumed + 1, num_steps + 1) if s % eval_every == 0 or s == num_steps]
    first = saves[0]
    if phase == "step":
        return KillPlan(phase, rng.randint(resumed + 1, max(resumed + 1, (resumed + first) // 2)),
                        round(rng.uniform(0.0, 0.05), 3))
    if phase == "val":
        return KillPlan(phase, first, round(rng.uniform(0.0, 0.1), 3))
    if phase == "save":
        return KillPlan(phase, saves[1] if len(saves) > 1 else first,
                        round(rng.uniform(0.0, 0.3), 3))
    if phase == "commit":
        # Never the last checkpoint: a run resumed from the end trains no step to kill.
        if len(saves) < 2:
            return plan_kill(rng, "save", resumed, num_steps, eval_every)
        return KillPlan(phase, saves[1] if len(saves) > 2 else first,
                        round(rng.uniform(0.0, 0.02), 3))
    raise ValueError(f"unknown phase {phase!r}")


class _Watch:
    """Progress of one run seen by polling; knows which phase is going on."""

    def __init__(self, workdir: Path, eval_every: int, num_steps: int) -> None:
        self.workdir, self.eval_every, self.num_steps = workdir, eval_every, num_steps
        self.seen = progress(workdir)
        self.lines_before = len(self.seen.records)
        self.known = set(self.seen.committed)
        self.new_commit: tuple[int, float] = (-1, -1.0)  # (step, when) of the latest new folder
        self.first_line_at: float | None = None  # when this run logged its first line

    def poll(self) -> Progress:
        self.seen = progress(self.workdir)
        if self.first_line_at is None and len(self.seen.records) > self.lines_before:
            self.first_line_at = time.monotonic()
        new = set(self.seen.committed) - self.known
        if new:
            self.new_commit = (max(new), time.monotonic())
        self.known |= new
        return self.seen

    def phase(self, at: float | None = None) -> str:
        """val, save, commit (< 50 ms before `at` a step folder appeared), step or startup."""
        if len(self.seen.records) <= self.lines_before:
            return "startup"
        if in_validation(self.seen, self.eval_every, self.num_steps):
            return "val"
        at = time.monotonic() if at is None else at
        if self.new_commit[1] > at - 0.05:
            return "commit"
        return "save" if self.seen.saving else "step"

    def since(self, started: float) -> float | None:
        """Seconds from `started` to this run's first metrics line (None: none yet)."""
        return None if self.first_line_at is None else self.first_line_at - started

    def reached(self, plan: KillPlan) -> bool:
        """Whether the plan's phase goes on now, at its step or later."""
        if self.phase() != plan.phase:
            return False
        if plan.phase == "save":
            return max(map(_tmp_step, self.seen.saving)) >= plan.at_step
        if plan.phase == "commit":
            return self.new_commit[0] >= plan.at_step
        return self.seen.last_step() >= plan.at_step


@dataclasses.dataclass
class Kill:
    """What one kill did."""

    plan: KillPlan
    phase: str  # seen in the workdir at the kill ("finished": the run ended first)
    step: int  # last metrics step at the kill
    saving: list[str]  # orbax tmp folders left behind
    committed: list[int]  # step folders left behind
    children: dict[int, str]  # the trainer's descendants at the kill: {pid: command name}
    killed_after_s: float  # from `started`
    first_step_s: float | None  # from `started` to the run's first metrics line (first new step)


def kill_at(proc: subprocess.Popen, workdir: Path, plan: KillPlan, eval_every: int,
            num_steps: int, whole_group: bool = False, started: float | None = None,
            timeout_s: float = 300.0, poll_s: float = 0.002) -> Kill:
    """SIGKILL `proc` (or its whole process group) once `plan` is reached; report the phase hit.

    The phase is checked again after the delay, just before the kill: if it has passed, the
    kill waits for its next occurrence with no delay (the delay only varies the moment within a
    phase; a commit kill goes ahead: its point is the moments after the commit). The phase
    reported is read from the workdir after the kill, when nothing writes any more.
    """
    started = time.monotonic() if started is None else started
    watch = _Watch(workdir, eval_every, num_steps)
    delay = plan.delay_s
    deadline = time.monotonic() + timeout_s
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{plan} not reached in {timeout_s} s")
        watch.poll()
        if not watch.reached(plan):
            time.sleep(poll_s)
            continue
        if delay:
            time.sleep(delay)
            delay = 0.0
        # Listing the children reads all of /proc (tens of ms under load, time for several tiny
        # steps): list them first, then check the phase once more and kill at once.
        children = {pid: command_name(pid) for pid in descendants(proc.pid)}
        watch.poll()
        if plan.phase != "commit" and not watch.reached(plan):
            continue
        at = time.monotonic()
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)  # start() made the pid its group's id
        else:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        watch.poll()
        return Kill(plan, watch.phase(at), watch.seen.last_step(), watch.seen.saving,
                    watch.seen.committed, children, at - started, watch.since(started))
    watch.poll()
    return Kill(plan, "finished", watch.seen.last_step(), watch.seen.saving,
                watch.seen.committed, {}, time.monotonic() - started, watch.since(started))


def descendants(pid: int) -> list[int]:
    """Pids of every live process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def command_name(pid: int) -> str:
    """The process's command line, shortened ('' if it is gone)."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return ""
    return " ".join(w.decode(errors="replace") for w in words if w)[:80]


def session_members(session: int) -> dict[int, str]:
    """{pid: state letter} of the processes in a session (Z = exited, not yet reaped).

    `start` puts each run in its own session, so whatever a killed trainer left running (grain
    workers) is found here even after it was reparented.
    """
    members = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == session:
                members[int(entry)] = fields[0]
    return members


def first_step_s(proc: subprocess.Popen, workdir: Path, started: float, eval_every: int,
                 num_steps: int, timeout_s: float = 300.0) -> float | None:
    """Seconds from `started` to the first metrics line of a run not to be killed (None: none).

    A run resumes from the latest committed checkpoint, so its first line is a new step (with
    train.log_every_steps=1, the first step after the checkpoint).
    """
    watch = _Watch(workdir, eval_every, num_steps)
    deadline = time.monotonic() + timeout_s
    while watch.first_line_at is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
        watch.poll()
    return watch.since(started)


# ----------------------------------------------------------------------------- comparison


def checkpoint_arrays(step_dir: Path) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's model/optimizer state, as numpy, keyed by tree path.

    Read without a target tree (straight from the files' metadata), so the comparison does not
    depend on how the training code builds its state.
    """
    import jax
    import orbax.checkpoint as ocp

    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(step_dir / "state").item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    restored = checkpointer.restore(step_dir / "state",
                                    args=ocp.args.PyTreeRestore(restore_args=args))
    return {jax.tree_util.keystr(path): np.asarray(leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(restored)[0]}


def data_position(step_dir: Path) -> dict:
    """The data iterator state saved with a checkpoint (one JSON per process)."""
    return {p.name: json.loads(p.read_text())
            for p in sorted((step_dir / "data_iter").glob("process_*.json"))}


def logged_values(records: list[dict]) -> dict[tuple[int, str], dict]:
    """{(step, 'train' | 'val'): values} from metrics lines, the last line of each winning.

    A resumed run logs again the steps after its checkpoint; timing keys are dropped.
    """
    out = {}
    for record in records:
        kind = "train" if any(k.startswith("train/") for k in record) else "val"
        out[record["step"], kind] = {k: v for k, v in record.items() if k not in TIMING_KEYS}
    return out


def compare_runs(reference: Path, other: Path, step: int) -> list[str]:
    """Differences between two workdirs at checkpoint `step` and in their logs ([] = identical).

    Arrays are compared bitwise (same dtype, np.testing.assert_array_equal), the saved data
    position and every logged value (but timings) exactly.
    """
    problems = []
    a = checkpoint_arrays(reference / "checkpoints" / str(step))
    b = checkpoint_arrays(other / "checkpoints" / str(step))
    if a.keys() != b.keys():
        problems.append(f"state trees differ: {sorted(a.keys() ^ b.keys())[:5]}")
    for key in sorted(a.keys() & b.keys()):
        try:
            assert a[key].dtype == b[key].dtype, f"dtype {a[key].dtype} != {b[key].dtype}"
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        except AssertionError as e:
            problems.append(f"{key}: {str(e).strip().splitlines()[0]}")
    if data_position(reference / "checkpoints" / str(step)) != data_position(
            other / "checkpoints" / str(step)):
        problems.append("data iterator positions differ")
    logs = [progress(w).records for w in (reference, other)]
    if not logs[0] or not logs[1] or logs[0][-1] != logs[1][-1]:
        problems.append(f"final metrics lines differ: {logs[0][-1:]} vs {logs[1][-1:]}")
    values = [logged_values(r) for r in logs]
    for key in sorted(values[0].keys() | values[1].keys()):
        if values[0].get(key) != values[1].get(key):
            problems.append(f"logged {key} differs: {values[0].get(key)} vs {values[1].get(key)}")
    return problems
