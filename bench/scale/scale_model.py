"""A discrete-event model of one mpmux session at scale (bench/scale/README in docs/design.md,
"The scale model"): ranks claiming guided or fixed chunks from their job's counter, each outcome
reported to the job's rank 0 (receive, journal, group commit), and jobs claiming batches of
elements from the session's store, as src/claim/rma_claimer.cpp, src/run/run.cpp and
src/run/run_feed.cpp do. Standard library only.

Aggregation, so that 100,000 ranks simulate in a second: a job is simulated through a sample of
its ranks (Scenario.sample_ranks in all), each standing for `weight` ranks that claim alike; the
shared servers (the counter, rank 0, the store) are charged for every rank represented. The tail
is then corrected: a sampled rank's last chunk ends at the latest of `weight` independent draws
of its duration. Of many equal jobs a few are simulated, each standing for the others at the
store. Rank 0 is a fluid queue: the work of a chunk's records arrives spread over the chunk, and
rank 0 works it off at one second per second, so its backlog grows only while it is saturated.
"""

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field, fields

# Rules of the code (docs/design.md), not measurements.
OUTBOX_AGE_S = 0.05  # a worker sends its outbox when 50 ms have passed ...
OUTBOX_BYTES = 256 * 1024  # ... or it holds 256 KiB
SEND_AT_ONCE_S = 0.005  # an outcome of an element that took 5 ms or more is sent at once
COMMIT_MIN_S, COMMIT_MAX_S = 0.010, 0.2  # group commit: a quarter of the median task, within these
STORE_TOUCHES_PER_S = 2.0  # a store batch lasts half a second at the job's rate
MAX_BATCH = 65536
STORE_AHEAD = 2  # batches the participant's store thread claims ahead
UNTIMED_GROWTH, TIMED_GROWTH = 4, 16  # a batch before any was timed, and after, against the last
GUIDED_MAX = 1024  # --chunk-max's default


@dataclass
class Calibration:
    """Costs measured by the benchmarks; the defaults were measured on the 2-core development
    machine under a load of 12 (Dec 2026: bench_claim --reps 3 --claims 50000, bench_overhead
    50000 3, bench_io_journal --syncs, bench_store_claims DIR 2 2000 1; medians)."""

    claim_us: float = 0.43  # claim + read of a chunk on rank 0's node (bench/claim, node-shared)
    claim_remote_us: float = 28.2  # the same from another node (bench/claim, remote path)
    atomic_us: float = 0.81  # what one fetch-and-op holds the counter for (bench/claim, bare)
    root_us_per_record: float = 1.62  # rank 0's CPU per outcome, outcomes batched (bench/overhead)
    root_us_per_message: float = 4.04  # rank 0's CPU per message of one outcome (bench/overhead)
    journal_sync_ms: float = 3.05  # one fdatasync of the journal (bench/io)
    store_claim_ms: float = 3.41  # one batch claim + its done commit, file:// with fsync (bench/store)
    worker_us_per_element: float = 13.8  # a worker's cost per element besides its task (bench/overhead)
    record_bytes: float = 48.0  # one framed outcome with a short result

    # Calibration field -> (keys of the benchmark drivers' name=value output, conversion).
    SOURCES = {
        "claim_us": (("scale_claim_us", "claim_us", "claimer_us"), float),
        "claim_remote_us": (("scale_claim_remote_us", "claim_remote_us", "claimer_remote_us"), float),
        "atomic_us": (("scale_atomic_us", "atomic_us", "bare_us"), float),
        "root_us_per_record": (("root_us_per_record",), float),
        "root_us_per_message": (("root_us_per_message",), float),
        "journal_sync_ms": (("journal_syncs_per_s",), lambda v: 1000.0 / float(v)),
        "store_claim_ms": (("file_claims_per_s_fsync",), lambda v: 1000.0 / float(v)),
        "worker_us_per_element": (("overhead_us_per_element",), float),
    }

    @classmethod
    def from_lines(cls, lines):
        """Reads name=value lines (the benchmark drivers' output); returns the calibration and,
        per field, the key it came from or "default"."""
        values = {}
        for line in lines:
            name, sep, value = line.strip().partition("=")
            if sep and name and value:
                values[name] = value
        cal, origin = cls(), {}
        for f in fields(cls):
            keys, convert = cls.SOURCES.get(f.name, ((), float))
            origin[f.name] = "default"
            for key in keys:
                try:
                    v = convert(values[key])
                except (KeyError, ValueError, ZeroDivisionError):
                    continue
                if math.isfinite(v) and v > 0:
                    setattr(cal, f.name, v)
                    origin[f.name] = key
                    break
        return cal, origin


@dataclass
class Scenario:
    ranks: int
    task_s: float  # mean task length
    sigma: float = 0.5  # spread: the standard deviation of the task length's logarithm (lognormal)
    elements: int = 0  # 0: elements_per_worker for each worker
    elements_per_worker: int = 50
    chunk: int = 0  # 0: guided chunks (min 1, max 1024); else every chunk has this many elements
    ranks_per_job: int = 0  # 0: one job holds every rank; else jobs of this many ranks share the store
    ranks_per_node: int = 64  # ranks on rank 0's node claim through shared memory
    sample_ranks: int = 1000  # ranks simulated in all; each stands for ranks / sample_ranks
    sample_jobs: int = 4
    seed: int = 1


@dataclass
class Result:
    makespan_s: float  # the first claim to the last outcome journaled
    ideal_s: float  # total task time over the working ranks
    root_load: float  # rank 0's work over the makespan (the busiest job's); near 1: saturated
    root_drain_s: float  # how long rank 0 still journals after the last task ended
    claim_wait_us: float  # mean wait per claim for the counter (serialized fetch-and-op)
    claims: float  # claims made, all ranks
    store_claims: float  # batches claimed from the store, all jobs
    store_load: float  # the store's busy time over the makespan
    jobs: int
    workers: int

    @property
    def imbalance(self):
        return self.makespan_s / self.ideal_s


def lognormal_mu(task_s, sigma):
    """The log-mean of a lognormal whose mean is task_s."""
    return math.log(task_s) - sigma * sigma / 2


def fraction_sent_at_once(task_s, sigma):
    """The fraction of elements that take SEND_AT_ONCE_S or more: their outcomes travel alone."""
    if sigma <= 0:
        return 1.0 if task_s >= SEND_AT_ONCE_S else 0.0
    z = (math.log(SEND_AT_ONCE_S) - lognormal_mu(task_s, sigma)) / (sigma * math.sqrt(2))
    return 0.5 * math.erfc(z)


def messages_per_record(task_s, sigma, chunk, chunk_s, record_bytes):
    """Messages to rank 0 per outcome for a chunk of `chunk` elements lasting chunk_s: long
    elements alone, the rest in the outbox, sent every 50 ms, at 256 KiB and before each claim."""
    at_once = fraction_sent_at_once(task_s, sigma)
    batched = max(1.0 / chunk, chunk_s / chunk / OUTBOX_AGE_S, record_bytes / OUTBOX_BYTES)
    return at_once + (1 - at_once) * min(1.0, batched)


def root_seconds_per_record(cal, task_s, sigma, chunk, chunk_s):
    m = messages_per_record(task_s, sigma, chunk, chunk_s, cal.record_bytes)
    per_message = max(0.0, cal.root_us_per_message - cal.root_us_per_record)
    return (cal.root_us_per_record + m * per_message) * 1e-6


def commit_interval_s(cal, task_s, sigma):
    """The journal's fdatasync interval (JournalWriter): a quarter of the median element."""
    median = math.exp(lognormal_mu(task_s, sigma))
    return min(COMMIT_MAX_S, max(median / 4, COMMIT_MIN_S, 10 * cal.journal_sync_ms * 1e-3))


def steady_guided_chunk(task_s):
    """Guided chunks in steady state: the window holds about one store batch (the job's rate
    over STORE_TOUCHES_PER_S), shared out in chunks of that over twice the workers."""
    return min(GUIDED_MAX, max(1, math.ceil(1 / (2 * STORE_TOUCHES_PER_S * task_s))))


def root_load_steady(cal, workers, task_s, sigma, chunk=0):
    """Rank 0's busy fraction with `workers` ranks running tasks of task_s without pause."""
    c = chunk or steady_guided_chunk(task_s)
    per_record = root_seconds_per_record(cal, task_s, sigma, c, c * task_s)
    syncs = cal.journal_sync_ms * 1e-3 / commit_interval_s(cal, task_s, sigma)
    return workers / task_s * per_record + syncs


def coordinator_limit_s(cal, workers, sigma, chunk=0, lo=1e-6, hi=3600.0):
    """The longest task length at which one rank 0 serving `workers` ranks is saturated (load
    >= 1); below it one coordinator per job no longer suffices. 0 when it never saturates."""
    grid = [lo * (hi / lo) ** (i / 400) for i in range(401)]
    saturated = [t for t in grid if root_load_steady(cal, workers, t, sigma, chunk) >= 1]
    if not saturated:
        return 0.0
    a = max(saturated)
    b = min((t for t in grid if t > a), default=a)
    for _ in range(60):  # the load falls with the task length around the limit
        mid = math.sqrt(a * b)
        if root_load_steady(cal, workers, mid, sigma, chunk) >= 1:
            a = mid
        else:
            b = mid
    return a


class FluidServer:
    """One FIFO server fed by many clients (a counter's fetch-and-op, the store). An arrival of
    weight w stands for w clients and occupies the server w service times; a client waits for
    the backlog ahead of it. The start's burst and saturation queue up; the random queueing of
    independent arrivals below saturation (a few service times) is left out."""

    def __init__(self, service_s):
        self.service_s = service_s
        self.free = 0.0
        self.busy = 0.0

    def enter(self, t, weight):
        start = max(t, self.free)
        self.free = start + weight * self.service_s
        self.busy += weight * self.service_s
        return start - t


def fluid_queue(segments, extra_rate_when_busy):
    """Rank 0 as a fluid queue. segments: (t0, t1, work_s), work arriving evenly over [t0, t1];
    extra_rate_when_busy: work per second added while anything arrives (the fdatasyncs).
    Returns (total work, time the last work is done)."""
    points = []
    for t0, t1, work in segments:
        if t1 > t0:
            rate = work / (t1 - t0)
            points.append((t0, rate, 0.0))
            points.append((t1, -rate, 0.0))
        else:
            points.append((t0, 0.0, work))
    points.sort()
    rate = backlog = total = 0.0
    active = 0
    t_prev = points[0][0] if points else 0.0
    for t, d_rate, jump in points:
        dt = t - t_prev
        r = rate + (extra_rate_when_busy if active > 0 else 0.0)
        total += r * dt
        backlog = max(0.0, backlog + (r - 1.0) * dt)
        backlog += jump
        total += jump
        rate += d_rate
        active += 1 if d_rate > 0 else (-1 if d_rate < 0 else 0)
        if abs(rate) < 1e-12:
            rate = 0.0
        t_prev = t
    return total, t_prev + backlog


@dataclass
class _Job:
    workers: int  # ranks that run tasks
    sampled: int
    weight: float  # ranks each sampled one stands for
    counter: FluidServer
    left: float = 0.0  # published, not claimed
    ready: deque = field(default_factory=deque)  # claimed from the store, not published
    inflight: int = 0
    last_batch: float = 0.0
    last_size: float = 0.0
    done: float = 0.0
    rate: float = 0.0  # elements/s, from the batches timed so far (SharedStoreClaimer::commit)
    # (elements done when it is, count, handed out at, elements the job had done then)
    open: deque = field(default_factory=deque)
    published: float = 0.0
    waiters: list = field(default_factory=list)
    segments: list = field(default_factory=list)
    claims: float = 0.0
    wait_sum: float = 0.0


def simulate(sc, cal):
    rng = random.Random(sc.seed)
    mu = lognormal_mu(sc.task_s, sc.sigma)

    def task():
        return math.exp(rng.gauss(mu, sc.sigma)) if sc.sigma > 0 else sc.task_s

    def chunk_time(c):
        # A sum of more than 16 lognormal elements is drawn as a normal (central limit).
        if c <= 16:
            return sum(task() for _ in range(c))
        sd = sc.task_s * math.sqrt(math.expm1(sc.sigma * sc.sigma) * c)
        return max(0.0, rng.gauss(c * sc.task_s, sd))

    if sc.ranks < 2:
        raise ValueError("a run needs 2 ranks or more: rank 0 coordinates")
    n_jobs = 1 if sc.ranks_per_job <= 0 else max(1, round(sc.ranks / sc.ranks_per_job))
    job_ranks = sc.ranks // n_jobs
    workers = job_ranks - 1
    total_workers = workers * n_jobs
    elements = sc.elements or sc.elements_per_worker * total_workers
    sampled_jobs = min(n_jobs, sc.sample_jobs)
    job_weight = n_jobs / sampled_jobs
    per_job = min(workers, max(1, sc.sample_ranks // sampled_jobs))
    chunk_min, chunk_max = (sc.chunk, sc.chunk) if sc.chunk else (1, GUIDED_MAX)
    store = FluidServer(cal.store_claim_ms * 1e-3)
    store_left = float(elements)
    jobs = [
        _Job(workers, per_job, workers / per_job, FluidServer(cal.atomic_us * 1e-6))
        for _ in range(sampled_jobs)
    ]
    events = []
    seq = 0

    def push(t, kind, j, payload):
        nonlocal seq
        seq += 1
        heapq.heappush(events, (t, seq, kind, j, payload))

    def batch_size(job):
        if job.rate <= 0:  # the first gives each worker an element, the next grow 4x
            size = job.workers if job.last_size == 0 else UNTIMED_GROWTH * job.last_size
        else:
            size = round(job.rate / STORE_TOUCHES_PER_S)
            if job.last_size:
                size = min(size, TIMED_GROWTH * job.last_size)
        size = min(max(size, 1), MAX_BATCH)
        size = min(size, max(math.ceil(store_left / (2 * n_jobs) - 1e-9), 1))
        job.last_size = size
        return size

    def top_up(j, t):
        nonlocal store_left
        job = jobs[j]
        while len(job.ready) + job.inflight < STORE_AHEAD and store_left > 1e-9:
            size = min(batch_size(job), store_left / job_weight)
            store_left -= size * job_weight
            wait = store.enter(t, job_weight)
            job.inflight += 1
            push(t + wait + store.service_s, "batch", j, size)

    def closed(job):
        return store_left <= 1e-9 and not job.ready and job.inflight == 0 and job.left <= 1e-9

    def refill(job, t):
        want = max(2 * job.workers * chunk_min, job.last_batch)
        while job.left < want and job.ready:
            # A batch is timed from its hand-out to its last outcome (SessionParticipant::claim).
            job.last_batch = job.ready.popleft()
            job.left += job.last_batch
            job.published += job.last_batch
            job.open.append((job.published, job.last_batch, t, job.done))

    def note_done(job, taken, t):
        # A batch is timed when its elements are done (they end about in the order handed out),
        # and its rate is every element the job finished meanwhile over that time
        # (SharedStoreClaimer::commit): a batch smaller than the job's ranks, timed by its slowest
        # element, would say the job runs at a fraction of its rate.
        job.done += taken
        while job.open and job.done >= job.open[0][0] - 1e-6:
            _, count, handed_out, done_then = job.open.popleft()
            if t > handed_out:
                sample = max(count, job.done - done_then) / (t - handed_out)
                job.rate = sample if job.rate <= 0 else 0.5 * job.rate + 0.5 * sample

    def wake(j, t):
        # As many waiting ranks wake as the published elements can serve; all once nothing is left.
        job = jobs[j]
        n = len(job.waiters) if closed(job) else math.ceil(job.left / job.weight - 1e-9)
        for i in job.waiters[:n]:
            push(t, "claim", j, (i, 0.0))
        del job.waiters[:n]

    finish = []  # (start of the last chunk, its elements, ranks it stands for, its end)
    last_chunk = {}

    for j, job in enumerate(jobs):
        top_up(j, 0.0)
        for i in range(job.sampled):
            push(0.0, "claim", j, (i, 0.0))
    while events:
        t, _, kind, j, payload = heapq.heappop(events)
        job = jobs[j]
        if kind == "batch":
            job.inflight -= 1
            job.ready.append(payload)
            refill(job, t)
            top_up(j, t)
            wake(j, t)
            continue
        i, taken_before = payload
        note_done(job, taken_before, t)
        refill(job, t)
        top_up(j, t)
        wake(j, t)
        if job.left <= 1e-9:
            if closed(job):
                if (j, i) in last_chunk:
                    finish.append(last_chunk[(j, i)] + (job.weight,))
            else:
                job.waiters.append(i)
            continue
        if sc.chunk:
            c = sc.chunk
        else:
            c = min(chunk_max, max(chunk_min, math.ceil(job.left / (2 * job.workers))))
        c = max(1, min(c, math.ceil(job.left / job.weight - 1e-9)))
        taken = min(c * job.weight, job.left)
        job.left -= taken
        wake(j, t)  # the last elements are taken: the waiting ranks end
        wait = job.counter.enter(t, job.weight)
        job.claims += job.weight
        job.wait_sum += wait * job.weight
        on_root_node = i * job.weight < sc.ranks_per_node - 1
        start = t + wait + (cal.claim_us if on_root_node else cal.claim_remote_us) * 1e-6
        end = start + chunk_time(c) + c * cal.worker_us_per_element * 1e-6
        per_record = root_seconds_per_record(cal, sc.task_s, sc.sigma, c, end - start)
        job.segments.append((start, end, taken * per_record))
        last_chunk[(j, i)] = (start, c, end)
        push(end, "claim", j, (i, taken))

    # The tail of the ranks a sampled one stands for: each ends its last chunk on its own draw.
    task_end = 0.0
    for start, c, end, weight in finish:
        if weight > 1:
            end = max(end, max(start + chunk_time(c) for _ in range(math.ceil(weight) - 1)))
        task_end = max(task_end, end)
    sync_rate = cal.journal_sync_ms * 1e-3 / commit_interval_s(cal, sc.task_s, sc.sigma)
    root_work, drain_end = 0.0, 0.0
    for job in jobs:
        work, end = fluid_queue(job.segments, sync_rate)
        root_work = max(root_work, work)
        drain_end = max(drain_end, end)
    makespan = max(task_end, drain_end)
    claims = sum(job.claims for job in jobs) * job_weight
    wait_sum = sum(job.wait_sum for job in jobs) * job_weight
    return Result(
        makespan_s=makespan,
        ideal_s=elements * sc.task_s / total_workers,
        root_load=root_work / makespan,
        root_drain_s=max(0.0, drain_end - task_end),
        claim_wait_us=wait_sum / claims * 1e6 if claims else 0.0,
        claims=claims,
        store_claims=store.busy / store.service_s if store.service_s else 0.0,
        store_load=store.busy / makespan,
        jobs=n_jobs,
        workers=total_workers,
    )
